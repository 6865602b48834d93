"""The files a study writes: its markdown table and its JSON result, each through a temporary file and a
rename (a crash never leaves half a table in place of a good one)."""

from __future__ import annotations

import os

from lwcl.errors import LwclError
from lwcl.io.report import write_json_atomic
from lwcl.io.safe_files import write_text_atomic


def check_out(out: str) -> None:
  """Refuses an ``--out`` that is a file (LwclError), before a study computes anything."""
  if os.path.exists(out) and not os.path.isdir(out):
    raise LwclError(f"--out {out} is a file, not a folder; pass the path of a folder (it is created when missing)")


def write_study(out: str, stem: str, markdown: str, result: dict) -> None:
  """Writes ``out/<stem>.md`` and ``out/<stem>.json`` (creating ``out``) and prints the table.

  Args:
    out: the output folder.
    stem: the files' name without extension, e.g. ``order_spread``.
    markdown: the table (text).
    result: JSON-serializable dict (non-finite floats become ``null``).
  Raises:
    LwclError: ``out`` is a file or cannot be created, or a file cannot be written (the one in place, if
      any, is kept).
  """
  check_out(out)
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise LwclError(f"cannot create --out {out} ({e.strerror or type(e).__name__}); pass a writable folder") \
        from None
  for name, write, data in ((f"{stem}.md", write_text_atomic, markdown), (f"{stem}.json", write_json_atomic, result)):
    try:
      write(os.path.join(out, name), data)
    except OSError as e:
      raise LwclError(f"cannot write {os.path.join(out, name)} ({e.strerror or type(e).__name__}); free space "
                      "or pass another --out (a file already there is kept)") from None
  print(markdown, flush=True)
