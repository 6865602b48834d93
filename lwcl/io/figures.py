"""Matplotlib figures saved atomically: the one place lwcl turns a figure into a PNG file."""

from __future__ import annotations

from lwcl.io.safe_files import write_atomic


def pyplot():
  """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save_figure(fig, path: str, dpi: int = 100) -> None:
  """Writes ``fig`` as PNG to ``path`` through a new temporary file of a random name and a rename
  (:func:`lwcl.io.safe_files.write_atomic`), then closes it.

  A crash while drawing or writing never leaves a half-written image in place of a good one, and no write
  follows a symbolic link.

  Args:
    fig: a ``matplotlib.figure.Figure``.
    path: the PNG file.
    dpi: resolution in dots per inch.
  Raises:
    LwclError: ``path`` is a symbolic link (nothing is written).
  """
  try:
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi), binary=True)
  finally:
    pyplot().close(fig)
