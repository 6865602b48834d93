"""Worker processes that end with the run that started them (issue 32), and how many a run may start.

grain starts its worker processes (``data.stream.workers``) with multiprocessing's ``spawn``. Issue 32 found
that a ``kill -9`` of a streamed run with ``workers=1`` left the worker (about 210 MB resident: it imports
grain, which imports JAX) and multiprocessing's resource tracker alive for over 5 minutes, 3 times of 3: the
worker waits on its full output queue for a reader that is gone, and the tracker lives as long as any
process holds its pipe, the worker included. Measured here: killing the worker alone ends the tracker within
0.1 s. So :func:`exit_with_parent`, grain's ``worker_init_fn`` for every worker, is enough for both: the
worker ends at once when its parent is already gone (a kill during the worker's start-up), and otherwise
a daemon thread ends it within :data:`POLL_S` seconds of its parent's death (``os.getppid()`` changes when
the kernel re-parents an orphan); the tracker follows.

Not ``prctl(PR_SET_PDEATHSIG)``: the kernel sends that signal when the *thread* that started the child
ends, and grain starts its workers from a pool of its iterator-building threads
(``InterleaveDatasetIterator``), whose lifetime grain does not promise. With grain 0.2.18 they outlive the
workers (a run with the signal set trained to the end), but a grain that ended them early would have the
kernel kill healthy workers mid-epoch. Watching ``os.getppid()`` depends on the process tree alone.

:func:`usable_cpus` bounds ``data.stream.workers`` (:mod:`lwcl.config.values`): every worker is a fresh
Python process that imports grain and JAX (about 2.5-3 s of one core and 210 MB each, measured on 2 busy
cores) and grain starts them anew for every epoch, so ``workers=64`` on a 2-core machine spent minutes
starting workers (a tiny run had not finished after 120 s) and asked for about 13 GB; more workers than
CPUs cannot decode faster.
"""

from __future__ import annotations

import os
import threading
import time

POLL_S = 0.25  # how often a worker checks that its parent is alive
EXIT_ORPHANED = 1  # a worker's exit status when its parent is gone (nobody reads it)


def usable_cpus() -> int:
  """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def exit_with_parent(parent_pid: int, *worker) -> None:
  """Ends this process when the process ``parent_pid`` (its parent) is gone: at once if it already is, else
  within :data:`POLL_S` seconds of its death, from a daemon thread. grain's ``worker_init_fn`` (bind the
  parent's pid with ``functools.partial``; ``worker`` takes grain's worker index and count, unused).
  The exit is ``os._exit``: no clean-up can wait on the parent that is gone."""
  del worker
  if os.getppid() != parent_pid:
    os._exit(EXIT_ORPHANED)  # pylint: disable=protected-access
  threading.Thread(target=_watch, args=(parent_pid,), name="lwcl-parent-watch", daemon=True).start()


def _watch(parent_pid: int) -> None:
  while True:
    time.sleep(POLL_S)
    if os.getppid() != parent_pid:
      os._exit(EXIT_ORPHANED)  # pylint: disable=protected-access
