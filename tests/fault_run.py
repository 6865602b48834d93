"""``python -m lwcl.main`` with a fault injected right after a given global train step.

    python tests/fault_run.py STEP[:FAULT] --config=... --workdir=... [--config.a.b=value ...]

``FAULT`` is ``KILL`` (the default: SIGKILL, as a preempted job dies: no cleanup, no flush), ``INT``
(SIGINT, as Ctrl-C in the terminal), ``STOP`` (SIGSTOP: the process hangs, every thread of it), ``FILL`` (the
workdir's filesystem is filled up with a file ``filler`` beside the workdir: the next write finds the disk
full) or ``CORRUPT`` (the shards in ``--config.data.record_dir`` are damaged in place, as by a failing disk:
the next read meets it). The fault comes through :func:`lwcl.main.run`'s ``on_step`` hook, so the production
loop has no test-only code.
"""

import errno
import os
import signal
import sys

# Started as a script: this checkout's lwcl, not whichever an editable install in the venv points at.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lwcl import main  # noqa: E402


def fill_disk(path: str) -> None:
  """Writes ``path`` until its filesystem is full (ENOSPC)."""
  chunk = b"\0" * (1 << 16)
  with open(path, "wb", buffering=0) as f:
    try:
      while True:
        f.write(chunk)
    except OSError as e:
      if e.errno != errno.ENOSPC:
        raise


def corrupt_records(record_dir: str) -> None:
  """Inverts one byte in every 64 of the ArrayRecord shards in ``record_dir``, past their first 4 KB."""
  for name in os.listdir(record_dir):
    if ".array_record-" in name and not name.endswith(".npy"):
      with open(os.path.join(record_dir, name), "r+b") as f:
        data = bytearray(f.read())
        for i in range(4096, len(data), 64):
          data[i] ^= 0xFF
        f.seek(0)
        f.write(data)


def _fault_after(step: int, fault: str, workdir: str, record_dir: str):
  def on_step(global_step: int) -> None:
    if global_step != step:
      return
    if fault == "FILL":
      fill_disk(os.path.join(os.path.dirname(os.path.abspath(workdir)), "filler"))
    elif fault == "CORRUPT":
      corrupt_records(record_dir)
    else:
      os.kill(os.getpid(), getattr(signal, "SIG" + fault))
  return on_step


if __name__ == "__main__":
  # Ctrl-C reaches a run in a terminal as Python's KeyboardInterrupt. A suite started as a background job
  # of a non-interactive shell (nohup ... &) hands its children SIGINT ignored, and Python then installs no
  # handler: restore it, so INT is the terminal's Ctrl-C however the tests were started.
  signal.signal(signal.SIGINT, signal.default_int_handler)
  at, _, kind = sys.argv.pop(1).partition(":")
  workdir = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--workdir=")][-1]
  record_dir = ([a.split("=", 1)[1] for a in sys.argv if a.startswith("--config.data.record_dir=")] or [""])[-1]
  main.run(on_step=_fault_after(int(at), kind or "KILL", workdir, record_dir))
