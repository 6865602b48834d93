"""Ctrl-C honoured from the first second of a command, never lost, never a crash.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be. During lwcl's
start-up that is often inside JAX's import, XLA's compiler or a garbage-collection callback: issue 32 found
Ctrl-C there ending in a 70-line traceback, a segmentation fault or an abort, or swallowed ("Exception
ignored in: _xla_gc_callback") with the run going on to exit 0 (9 times of 12). The command-line entry
points therefore :func:`install` a handler first, which only records the press; lwcl raises
``KeyboardInterrupt`` itself at safe points (:func:`check`: before and after the start-up, every train step,
every task end), where the train loop turns it into one ``stopped:`` line naming the checkpoint a rerun
resumes from. A second Ctrl-C before a safe point is reached (a long compilation) ends the process at once
with one line and status 130; checkpoints are written atomically, so nothing complete is lost.

Library use (no :func:`install`) keeps Python's own behaviour; :func:`check` is then a no-op.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

_state = {"installed": False, "pressed": False}


def _handler(signum, frame) -> None:  # pylint: disable=unused-argument
  if _state["pressed"]:
    sys.stderr.write("stopped: interrupted twice (Ctrl-C) before lwcl reached a safe point; rerun the same "
                     "command to resume from the last checkpoint, if any\n")
    sys.stderr.flush()
    os._exit(130)  # pylint: disable=protected-access  (128 + SIGINT)
  _state["pressed"] = True


def install() -> bool:
  """Routes SIGINT (Ctrl-C) to the recording handler; returns whether it did. Not from a thread other than
  the main one, and not where SIGINT is ignored (a background job of a non-interactive shell: it stays
  ignored, as Python leaves it). Idempotent."""
  if _state["installed"]:
    return True
  if threading.current_thread() is not threading.main_thread():
    return False
  if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    return False
  signal.signal(signal.SIGINT, _handler)
  _state["installed"] = True
  return True


def pressed() -> bool:
  """Whether Ctrl-C was pressed since :func:`install` (always False without it)."""
  return _state["pressed"]


def check() -> None:
  """A safe point: raises ``KeyboardInterrupt`` if Ctrl-C was pressed (once per press).

  Raises:
    KeyboardInterrupt: Ctrl-C was pressed and not yet raised.
  """
  if _state["pressed"]:
    _state["pressed"] = False
    raise KeyboardInterrupt
