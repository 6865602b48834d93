"""Marks every test under tests/e2e as ``e2e``: the end-to-end tier, which ``bin/test --fast`` leaves out."""

import pathlib

import pytest

_HERE = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if _HERE in pathlib.Path(str(item.fspath)).parents:
      item.add_marker(pytest.mark.e2e)
