"""Matplotlib figures saved atomically: the one place lwcl turns a figure into a PNG file."""

from __future__ import annotations

import os


def pyplot():
  """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save_figure(fig, path: str, dpi: int = 100) -> None:
  """Writes ``fig`` as PNG to ``path`` through a temporary file and a rename, then closes it.

  A crash while drawing or writing never leaves a half-written image in place of a good one.

  Args:
    fig: a ``matplotlib.figure.Figure``.
    path: the PNG file; its folder must exist.
    dpi: resolution in dots per inch.
  """
  tmp = path + ".tmp.png"
  try:
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, path)
  finally:
    pyplot().close(fig)
    if os.path.exists(tmp):
      os.unlink(tmp)
