"""The files a study writes: its markdown table and its JSON result, each through a temporary file and a
rename (a crash never leaves half a table in place of a good one)."""

from __future__ import annotations

import os

from lwcl.io.report import write_json_atomic
from lwcl.io.safe_files import write_text_atomic


def write_study(out: str, stem: str, markdown: str, result: dict) -> None:
  """Writes ``out/<stem>.md`` and ``out/<stem>.json`` (creating ``out``) and prints the table.

  Args:
    out: the output folder.
    stem: the files' name without extension, e.g. ``order_spread``.
    markdown: the table (text).
    result: JSON-serializable dict (non-finite floats become ``null``).
  """
  os.makedirs(out, exist_ok=True)
  write_text_atomic(os.path.join(out, stem + ".md"), markdown)
  write_json_atomic(os.path.join(out, stem + ".json"), result)
  print(markdown, flush=True)
