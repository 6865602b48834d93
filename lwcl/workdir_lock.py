"""One run per workdir: an exclusive lock on ``WORKDIR/.lwcl.lock`` held for the whole run.

Two runs on the same workdir (a job resubmitted while the first still runs) would write the same
checkpoints and results.json; which one survives would be luck. :func:`hold` takes a non-blocking
``fcntl.flock`` on ``WORKDIR/.lwcl.lock`` and writes the holder's pid, host name and start time into it;
a second run finds the lock taken and raises :class:`WorkdirLockedError` naming that process, before it
reads or writes anything else in the workdir.

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


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[str]:
  """Holds the exclusive lock of ``workdir`` (created when missing) for the ``with`` block.

  Usage: ``with workdir_lock.hold(workdir): ...``. The lock file ``WORKDIR/.lwcl.lock`` holds
  ``pid=``, ``host=`` and ``started=`` (local ISO time) lines of the current holder; it is left in
  place afterwards (a stale file means nothing: the ``flock``, not the file, is the lock).

  Yields:
    The lock file's path.
  Raises:
    WorkdirLockedError: another process holds the lock (the message names its pid, host and start
      time); nothing in the workdir is touched.
    LwclError: the workdir or its lock file cannot be created (e.g. no permission).
  """
  path = os.path.join(workdir, LOCK_FILE)
  try:
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
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
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)
