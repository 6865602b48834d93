"""The repository passes ``ruff check`` with the configuration in pyproject.toml (when ruff is installed:
the ``test`` extra installs it)."""

import os
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT

PATHS = ("lwcl", "tests", "configs", "bin", "docs/studies")


def _ruff():
  """The ruff beside this Python (the virtual environment's), else the one on PATH, else None."""
  beside = os.path.join(os.path.dirname(sys.executable), "ruff")
  return beside if os.path.exists(beside) else shutil.which("ruff")


def test_ruff_check_finds_nothing():
  ruff = _ruff()
  if ruff is None:
    pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
  proc = subprocess.run([ruff, "check", "--no-cache", "--output-format=concise", *PATHS], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
