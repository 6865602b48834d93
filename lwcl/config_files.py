"""Loading config files (``configs/*.py``) from other config files and from code.

Config files are plain Python files with ``get_config()``, loaded by path (``--config=configs/x.py``), so
they are not a package; a config that builds on another (every config starts from ``configs/default.py``)
loads it with :func:`sibling`.
"""

from __future__ import annotations

import importlib.util
import os
import types


def load(path: str) -> types.ModuleType:
  """Executes the config file at ``path`` and returns it as a module.

  Raises:
    FileNotFoundError: if there is no such file.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path} not found")
  name = "lwcl_config_" + os.path.splitext(os.path.basename(path))[0].lstrip("_")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def sibling(this_file: str, name: str) -> types.ModuleType:
  """The config file ``name``.py in the folder of ``this_file`` (pass ``__file__``)."""
  return load(os.path.join(os.path.dirname(os.path.abspath(this_file)), name + ".py"))


def default_config(this_file: str):
  """``get_config()`` of ``default.py`` beside ``this_file``: the full, unlocked default config."""
  return sibling(this_file, "default").get_config()
