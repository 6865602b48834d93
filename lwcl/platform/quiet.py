"""What lwcl keeps off stderr, so that a failure a user can fix ends in its one line (:mod:`lwcl.errors`).

Three sources of noise around that line, each dropped only where it repeats what the line already says or
says nothing the user can act on:

* Echoes of a failed checkpoint write (:func:`install`, called by the command-line entry points). When
  orbax's save fails (a full disk: ``ENOSPC`` from TensorStore's writes), the error reaches lwcl, which
  reports it in one line (:func:`lwcl.runs.driver.run`); meanwhile orbax logs the same exception of each
  of its writer threads with its traceback, asyncio logs each failed write task that nobody awaited any
  more ("Task exception was never retrieved"), and TensorStore's writes still in flight complete after
  orbax's event loop has closed, each callback's ``RuntimeError('Event loop is closed')`` printed as an
  unraisable traceback (also after a restore of a corrupt checkpoint fails, :mod:`lwcl.io.checkpoint`).
  Measured on ``bin/compare`` with its ``--out`` on a 3 MB tmpfs: 216 lines, 12 tracebacks, around the
  one line. Records whose exception did not pass through orbax, and other unraisable errors, are printed
  as before.
* TensorFlow's C++ start-up lines (:func:`import_tensorflow`; TensorFlow is imported by
  tensorflow-datasets only). TensorFlow 2.21 prints its oneDNN notice (twice, each after absl's
  "WARNING: All log messages before absl::InitializeLog() ..." line) whatever ``TF_CPP_MIN_LOG_LEVEL``
  says, and a GPU machine adds CUDA factory-registration lines: written to the file descriptor during
  ``import tensorflow``, they are captured there and dropped, or written out when the import fails. And
  tensorflow-datasets' warnings while lwcl looks a data set up (:func:`warnings_of`: "Variant folder ...
  has no dataset_info.json" above lwcl's own line saying the data set is not prepared there).
* The resource tracker's warning about shared memory it frees at exit (:data:`RESOURCE_TRACKER_FILTER`,
  set by :func:`install`): a streamed run with grain workers that stops on an error while batches are
  queued (seen once in a clean-clone suite under load: the line, then 2 lines of the warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from typing import Callable, Iterator

_ORBAX = f"{os.sep}orbax{os.sep}"
# A -W option for the children multiprocessing starts (it passes them this interpreter's sys.warnoptions):
# the resource tracker's "resource_tracker: There appear to be N leaked shared_memory objects to clean up at
# shutdown", printed after lwcl's error line when a run with grain workers stops while batches are still
# queued in shared memory (grain does not free them when it stops its workers); the tracker then frees
# them, so the warning says nothing the user can act on.
RESOURCE_TRACKER_FILTER = "ignore:resource_tracker:UserWarning"
_INSTALLED = []


def _through_orbax(record: logging.LogRecord) -> bool:
  """Whether the record carries an exception raised in orbax's code or is logged from it."""
  if not record.exc_info:
    return False
  if _ORBAX in record.pathname:
    return True
  tb = record.exc_info[2]
  while tb is not None:
    if _ORBAX in tb.tb_frame.f_code.co_filename:
      return True
    tb = tb.tb_next
  return False


def drop_orbax_echo(record: logging.LogRecord) -> bool:
  """A logging filter (absl's and asyncio's loggers): False for a record of an exception from orbax's
  writer threads or write tasks, which orbax also raises to its caller (there it becomes one error line)."""
  return not _through_orbax(record)


def drop_closed_loop_callbacks(default: Callable) -> Callable:
  """A ``sys.unraisablehook`` that drops ``RuntimeError('Event loop is closed')`` (TensorStore's callbacks
  completing after orbax's event loop closed) and passes any other unraisable error to ``default``."""
  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
      return
    default(unraisable)
  hook.lwcl_quiet = True
  return hook


def install() -> None:
  """Installs the filters of failed writes' echoes (above) in this process. Idempotent; call it first
  thing in a command-line entry point (``lwcl.main``, ``bin/compare``, the studies that train)."""
  if _INSTALLED:
    return
  _INSTALLED.append(True)
  for name in ("absl", asyncio.log.logger.name):
    logging.getLogger(name).addFilter(drop_orbax_echo)
  if not getattr(sys.unraisablehook, "lwcl_quiet", False):
    sys.unraisablehook = drop_closed_loop_callbacks(sys.unraisablehook)
  if RESOURCE_TRACKER_FILTER not in sys.warnoptions:  # read when multiprocessing starts a child (the tracker)
    sys.warnoptions.append(RESOURCE_TRACKER_FILTER)


@contextlib.contextmanager
def _fd2_captured() -> Iterator[None]:
  """Writes to file descriptor 2 (stderr, C++ included) go to a temporary file for the block; they are
  written out if the block raises, dropped otherwise."""
  sys.stderr.flush()
  saved, failed = os.dup(2), False
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    except BaseException:
      failed = True
      raise
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      if failed:
        captured.seek(0)
        os.write(2, captured.read())


def import_tensorflow():
  """``import tensorflow`` without its C++ start-up lines on stderr (above), with ``TF_CPP_MIN_LOG_LEVEL=2``
  for its later logs unless the user set it. Returns the module.

  Raises:
    ImportError: TensorFlow is not installed (what it printed while failing is written out).
  """
  if "tensorflow" in sys.modules:
    return sys.modules["tensorflow"]
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read when TensorFlow's library loads
  with _fd2_captured():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


@contextlib.contextmanager
def warnings_of(package: str) -> Iterator[None]:
  """For the block, drops the warnings (and lower) that the modules of ``package`` (e.g.
  ``tensorflow_datasets``) log through absl's logging; their errors still show."""
  where = f"{os.sep}{package}{os.sep}"

  def keep(record: logging.LogRecord) -> bool:
    return record.levelno > logging.WARNING or where not in record.pathname

  absl_logger = logging.getLogger("absl")
  absl_logger.addFilter(keep)
  try:
    yield
  finally:
    absl_logger.removeFilter(keep)
