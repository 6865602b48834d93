"""Files and folders lwcl writes in a workdir, never through a symbolic link.

A link planted at a name lwcl writes (``WORKDIR/.lwcl.lock``, ``results.json``, a figure or its temporary
file, the TensorBoard events file, a checkpoint's folder, a ``seed<s>/`` or sweep candidate's folder) would
have lwcl truncate or overwrite the link's target, any file the user can write. So:

* :func:`check_tree` refuses a workdir that holds a link anywhere below it, before a run reads or writes
  anything else in it (``lwcl.runs.driver.run``; the workdir itself may be a link, e.g. to a scratch disk);
* new files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (:func:`create_new`): a temporary file of a
  random name (:func:`write_atomic`), or the events file, never an existing name;
* a temporary file is renamed over its final name only when that name is not a link (:func:`refuse_link`
  just before ``os.replace``), and a folder lwcl creates or writes into must not be one
  (:func:`make_folder`).

Each refusal is one line naming the path (:func:`link_error`); the link and its target are left as they are.
Limit: a link planted *during* a run in a folder above a file's folder (between the workdir and the file)
is not seen until the next run's :func:`check_tree`.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable

from lwcl.errors import LwclError

# Flags of a new file: created here or refused, never an existing file's name, never through a link.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def link_error(path: str) -> LwclError:
  """The one-line error for a symbolic link at ``path``, where lwcl writes."""
  return LwclError(f"{path} is a symbolic link, and lwcl never writes through a link in a workdir (it would "
                   "overwrite the link's target); remove the link (its target is not touched) or pass another "
                   "--workdir")


def refuse_link(path: str) -> None:
  """Raises :func:`link_error` when ``path`` is a symbolic link (``os.lstat``; a missing path is fine)."""
  if os.path.islink(path):
    raise link_error(path)


def check_tree(workdir: str) -> None:
  """Refuses a workdir that holds a symbolic link anywhere below it (files and folders; links to folders
  are not entered). ``workdir`` itself may be a link; a missing workdir holds none.

  Raises:
    LwclError: one line naming the first link found (:func:`link_error`).
  """
  for folder, dirs, files in os.walk(workdir):  # followlinks=False: a link to a folder is listed, not entered
    for name in sorted(dirs + files):
      refuse_link(os.path.join(folder, name))


def make_folder(path: str) -> str:
  """Creates the folder ``path`` (and missing parents; an existing folder is fine) and returns it.

  Raises:
    LwclError: ``path`` is a symbolic link (:func:`link_error`), a file, or cannot be created (one line with
      the OS's reason).
  """
  refuse_link(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise LwclError(f"{path} is a file, not a folder; pass the path of a folder (it is created if missing)")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise LwclError(f"cannot create the folder {path} ({e.strerror}); pass a path where you may create a "
                    "folder") from None
  return path


def create_new(path: str, mode: int = 0o666) -> int:
  """Opens a new file ``path`` for writing (``O_CREAT | O_EXCL | O_NOFOLLOW``; ``mode`` less the umask) and
  returns its descriptor.

  Raises:
    LwclError: ``path`` is a symbolic link, or already exists (one line naming it).
  """
  try:
    return os.open(path, _NEW_FILE, mode)
  except FileExistsError:
    if os.path.islink(path):
      raise link_error(path) from None
    raise LwclError(f"{path} already exists, and lwcl writes a new file there; move it away or pass another "
                    "--workdir") from None


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def write_atomic(path: str, write: Callable, binary: bool = False) -> None:
  """Writes ``path`` through a new temporary file of a random name in its folder and a rename, so a crash
  never leaves a half-written file in place of a good one, and no write follows a link.

  Args:
    path: the final file; its folder is created when missing (the folder itself may be a link: a workdir
      on another disk; lwcl's own folders below a workdir are made by :func:`make_folder`).
    write: called with the open temporary file (text, or bytes with ``binary``) to fill it.
    binary: open the temporary file in binary mode.
  Raises:
    LwclError: ``path`` is a symbolic link (nothing is replaced; the temporary file is removed).
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)  # O_EXCL | O_NOFOLLOW
  try:
    os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it (mkstemp's file is 0600)
    with os.fdopen(fd, "wb" if binary else "w") as f:
      write(f)
    refuse_link(path)
    os.replace(tmp, path)
  except BaseException:
    if os.path.lexists(tmp):
      os.unlink(tmp)
    raise


def write_text_atomic(path: str, text: str) -> None:
  """:func:`write_atomic` of ``text`` (a table, a markdown file)."""
  write_atomic(path, lambda f: f.write(text))
