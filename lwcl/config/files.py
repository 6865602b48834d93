"""Loading config files (``configs/*.py``) from other config files and from code.

Config files are plain Python files with ``get_config()``, loaded by path (``--config=configs/x.py``), so
they are not a package; a config that builds on another (every config starts from ``configs/default.py``)
loads it with :func:`sibling`. :func:`get_key` and :func:`set_key` (from :mod:`lwcl.core.keys`) read and
write a dotted key (``method.strength``) of a config. :func:`load_spec` loads a
``--config`` argument (``path[:arg]``) with every failure as one :class:`~lwcl.errors.ConfigError` line.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import types

import ml_collections

from lwcl.core.keys import close_key, get_key, pop_key, set_key  # noqa: F401  (the config key helpers)
from lwcl.errors import ConfigError


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


def load_spec(spec: str):
  """The config of a ``--config`` argument ``path[:arg]``: ``get_config()`` of the file at ``path``, or
  ``get_config(arg)`` (the text after the first ``:``, as ml_collections passes it).

  Returns:
    ml_collections.ConfigDict: the file's config (its keys are checked against ``configs/default.py`` by
    :func:`lwcl.config.types.check_config`, before a run).
  Raises:
    ConfigError: no such file, a file that does not load or that ends the process (``sys.exit``, any code),
      a file without a callable ``get_config``, an argument the file does not take or refuses, or a
      ``get_config`` that returns something else than a ``ConfigDict`` (one line naming the fix; the file's
      own message is kept, flattened).
  """
  path, colon, arg = spec.partition(":")
  if not os.path.isfile(path):
    what = "is a folder" if os.path.isdir(path) else "not found"
    raise ConfigError(f"config file {path} {what}; pass a config file, e.g. --config=configs/default.py")
  try:
    get_config = load(path).get_config
  except (Exception, SystemExit) as e:  # pylint: disable=broad-except  (the file's own error, or its exit)
    raise ConfigError(f"config file {path} does not load ({_flat(e)}); fix the file or pass another "
                      "--config") from None
  if not callable(get_config):
    raise ConfigError(f"config file {path} has a get_config that is not a function; define def get_config(): "
                      "returning an ml_collections.ConfigDict (see configs/default.py)")
  takes_arg = bool(inspect.signature(get_config).parameters)
  if colon and not takes_arg:
    raise ConfigError(f"config file {path} takes no argument, got ':{arg}'; pass --config={path}")
  try:
    config = get_config(arg) if colon else get_config()
  except (Exception, SystemExit) as e:  # pylint: disable=broad-except
    fix = f"fix the argument after ':' (see get_config in {path})" if colon else "fix the file"
    raise ConfigError(f"{spec} does not load ({_flat(e)}); {fix}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{spec}: get_config() returned {type(config).__name__}, not an ml_collections.ConfigDict; "
                      "start from the default config (config_files.default_config(__file__), as configs/*.py do)")
  return config


def _flat(e: BaseException) -> str:
  """An exception as one line: ``Type: message``; a ``SystemExit`` as ``it called sys.exit(CODE)``."""
  if isinstance(e, SystemExit):
    return f"it called sys.exit({e.code!r}) while loading"
  return f"{type(e).__name__}: {' '.join(str(e).split())}".rstrip(": ")


def sibling(this_file: str, name: str) -> types.ModuleType:
  """The config file ``name``.py in the folder of ``this_file`` (pass ``__file__``)."""
  return load(os.path.join(os.path.dirname(os.path.abspath(this_file)), name + ".py"))


def default_config(this_file: str):
  """``get_config()`` of ``default.py`` beside ``this_file``: the full, unlocked default config."""
  return sibling(this_file, "default").get_config()
