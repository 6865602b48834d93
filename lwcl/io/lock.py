"""One run per workdir: an exclusive lock on ``WORKDIR/.lwcl.lock`` held for the whole run.

Two runs on the same workdir (a job resubmitted while the first still runs) would write the same
checkpoints and results.json; which one survives would be luck. :func:`hold` takes a non-blocking
``fcntl.flock`` on ``WORKDIR/.lwcl.lock`` and writes the holder's pid, host name and start time into it;
a second run finds the lock taken and raises :class:`WorkdirLockedError` naming that process, before it
reads or writes anything else in the workdir. A run whose workdir lies inside the workdir of a running
run (a task-order study's ``order<r>/``, a replica's ``seed<s>/``, a sweep candidate) is refused the same
way: the study writes there under its own lock.

A lock left by a killed run (SIGKILL, a preempted job, a crashed host process) is not a problem: the
kernel releases a ``flock`` when the process holding it dies, so the next run simply takes the lock over
(the file itself stays and is rewritten). Limit: ``flock`` locks are only reliable on one host. On some
network filesystems (older NFS, some Lustre / GPFS mounts) they are local to each client or not
supported, so two runs on different hosts may both get the lock; give each run its own workdir there.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import socket
from typing import Iterator

from lwcl.errors import LwclError
from lwcl.io import safe_files

LOCK_FILE = ".lwcl.lock"


class WorkdirLockedError(LwclError):
  """Another live process holds the workdir's lock."""


def _holder(fd: int) -> str:
  """The holder described in the lock file (``pid 123 on host, started ...``), or ``unknown``."""
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace")
  except OSError:
    return "an unknown process"
  info = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
  if "pid" not in info:
    return "another process (it has not yet written its pid)"
  return (f"pid {info['pid']} on {info.get('host', 'an unknown host')}, started "
          f"{info.get('started', 'at an unknown time')}")


def _enclosing_holder(workdir: str) -> tuple[str, str] | None:
  """``(folder, holder)`` of the nearest folder above ``workdir`` whose lock a live run holds (a study
  writes ``order<r>/``, ``seed<s>/`` and sweep candidates inside its workdir under its one lock), else
  None. Probes with a shared, non-blocking ``flock`` released at once; creates nothing."""
  folder = os.path.dirname(os.path.abspath(workdir))
  while True:
    try:
      fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
      fd = None
    if fd is not None:
      try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
      except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
          return folder, _holder(fd)
      finally:
        os.close(fd)
    parent = os.path.dirname(folder)
    if parent == folder:
      return None
    folder = parent


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[str]:
  """Holds the exclusive lock of ``workdir`` (created when missing) for the ``with`` block.

  Usage: ``with workdir_lock.hold(workdir): ...``. The lock file ``WORKDIR/.lwcl.lock`` holds
  ``pid=``, ``host=`` and ``started=`` (local ISO time) lines of the current holder; it is left in
  place afterwards (a stale file means nothing: the ``flock``, not the file, is the lock). A workdir this
  call created that holds nothing but the lock file at the end (a run refused before writing anything)
  is removed again, with the empty folders above it that this call created.

  Yields:
    The lock file's path.
  Raises:
    WorkdirLockedError: another process holds the lock of ``workdir``, or of a folder above it (the
      workdir of a running study: its ``order<r>/``, ``seed<s>/`` and sweep folders are its own); the
      message names its pid, host and start time; nothing in the workdir is touched.
    LwclError: ``workdir`` is a file, the workdir or its lock file cannot be created (e.g. no
      permission), or the lock file's name is a symbolic link (never followed: its target is left as it is).
  """
  path = os.path.join(workdir, LOCK_FILE)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise LwclError(f"--workdir {workdir} is a file, not a folder; pass the path of a folder (it is created "
                    "when missing)")
  enclosing = _enclosing_holder(workdir)
  if enclosing is not None:
    raise WorkdirLockedError(
        f"workdir {workdir} is inside {enclosing[0]}, the workdir of a running lwcl run ({enclosing[1]}); "
        "wait for it to finish, or pass a --workdir outside it")
  created, folder = [], os.path.abspath(workdir)  # the folders this call creates, deepest first
  while not os.path.exists(folder) and folder != os.path.dirname(folder):
    created.append(folder)
    folder = os.path.dirname(folder)
  try:
    os.makedirs(workdir, exist_ok=True)
    safe_files.refuse_link(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # never truncates a link's target
  except OSError as e:
    if os.path.islink(path):
      raise safe_files.link_error(path) from None
    raise LwclError(f"cannot create the lock file {path} ({e.strerror}); pass a writable --workdir") \
        from None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise LwclError(f"cannot lock {path} ({e.strerror}); the filesystem may not support flock: "
                        "use a local --workdir") from None
      raise WorkdirLockedError(
          f"workdir {workdir} is in use by another lwcl run ({_holder(fd)}); wait for it to finish or stop "
          "it, or pass another --workdir") from None
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid={os.getpid()}\nhost={socket.gethostname()}\nstarted={started}\n".encode(), 0)
    os.fsync(fd)
    try:
      yield path
    finally:
      if created:
        _remove_if_only_the_lock(created, path)
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


def _remove_if_only_the_lock(created: list, path: str) -> None:
  """Removes the workdir (``created[0]``) when it holds nothing but its lock file ``path`` (still locked by
  the caller), then the other folders in ``created`` (deepest first) while they are empty."""
  try:
    if os.listdir(created[0]) != [LOCK_FILE]:
      return
    os.unlink(path)
    for folder in created:
      os.rmdir(folder)
  except OSError:
    pass
