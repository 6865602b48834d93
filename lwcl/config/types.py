"""Checking every value of a config against ``configs/default.py`` before anything is built.

The locked ml_collections config already refuses unknown keys and some mistyped overrides, but not all:
``--config.model.hidden='(100,abc)'`` is not a valid tuple literal, so ml_collections stores the whole
text as a one-element tuple ``('(100,abc)',)``; a model that reads the key then fails with a traceback,
and one that does not carries the bad value into results.json. :func:`check_config` walks every key of
the config and compares its value's type with the value of the same key in the reference config (the
unmodified ``get_config()`` of ``configs/default.py``):

- ``bool`` keys take ``True`` / ``False`` only; ``int`` keys take integers (not booleans, not floats);
  ``float`` keys take integers or floats; ``str`` keys take strings.
- tuple keys take tuples (or lists) whose elements have the type :data:`TUPLE_ELEMENTS` gives for the key
  (``model.conv_stages`` is a tuple of tuples of ints); for a tuple key not in the table the element
  type is that of the reference tuple's elements, and an empty reference tuple takes numbers or strings.
  A string element that looks like a tuple literal (what ml_collections keeps of an override it could not
  parse) is rejected, naming the piece that is not of the element type.

Every key of the reference must be in the config (a config file starts from ``configs/default.py``; one
that builds a partial config would fail, or silently use nothing, where a missing key is read). Keys a
config file adds beyond the reference have no type to compare with, but must hold what ``results.json``
can record (numbers, strings, booleans, None, tuples and sections of them): a ``Path`` or another object
is refused before the run, not when its results are written. Every bad value is an error whether or not
the chosen model or method reads the key.
"""

from __future__ import annotations

import os
import re

import numpy as np

from lwcl.config import files as config_files
from lwcl.errors import ConfigError

# Element types of the tuple keys of configs/default.py, with an example of a correct value. An element
# type ``(int,)`` is itself a tuple of ints. Where each is read: model.hidden, model.dense,
# model.conv_stages: lwcl/models/__init__.py and convnet.py (int(...) of every element);
# layerwise.aux_hidden: lwcl/layerwise/fns.py (int sizes); scenario.class_order: data/scenarios.py (int
# classes); scenario.angles: data/scenarios.py (degrees); sweep.candidates: lwcl/runs/sweep.py (numbers cast
# to the swept key's type).
TUPLE_ELEMENTS = {
    "model.hidden": (int, "(256,256)"),
    "model.dense": (int, "(128,)"),
    "model.conv_stages": ((int,), "((32,),(64,))"),
    "layerwise.aux_hidden": (int, "(256,)"),
    "scenario.class_order": (int, "(1,0,3,2,5,4,7,6,9,8)"),
    "scenario.task_order": (int, "(4,3,2,1,0)"),
    "scenario.angles": (float, "(0.,45.,90.,135.,180.)"),
    "sweep.candidates": (float, "(1.,10.,100.)"),
}

_SCALARS = (bool, int, float, str)
_ANY_SCALAR = "number or string"  # element type of an empty reference tuple that is not in the table
_LITERAL = re.compile(r"^\s*[(\[].*[)\]]\s*$|,", re.S)
_NAMES = {bool: ("a boolean", "booleans"), int: ("an integer", "integers"),
          float: ("a number", "numbers"), str: ("a string", "strings"),
          _ANY_SCALAR: ("a number or a string", "numbers or strings")}


def default_reference(config_path: str | None = None):
  """The unmodified ``get_config()`` of ``configs/default.py``: the checkout's ``configs/default.py``
  (beside the ``lwcl`` package), else ``default.py`` in the folder of ``config_path``.

  Raises:
    ConfigError: neither file exists.
  """
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  candidates = [os.path.join(root, "configs", "default.py")]
  if config_path:
    candidates.append(os.path.join(os.path.dirname(os.path.abspath(config_path)), "default.py"))
  for path in candidates:
    if os.path.isfile(path):
      return config_files.load(path).get_config()
  raise ConfigError(f"cannot find configs/default.py to check the config against (looked at "
                    f"{', '.join(candidates)}); run lwcl from its checkout")


def check_config(config, reference) -> None:
  """Checks the type of every value of ``config`` against the same key of ``reference``.

  Args:
    config: the config to run (``ml_collections.ConfigDict`` or nested dict), overrides applied.
    reference: the unmodified default config (:func:`default_reference`), same nesting.
  Raises:
    ConfigError: keys of ``reference`` missing from ``config`` (one line naming them), else the first bad
      value, in key order, as one line: the key, the value, what is wrong and an example of a correct value
      (``--config.model.hidden='(256,256)'``), or an added key whose value ``results.json`` cannot hold.
  """
  check_complete(config, reference)
  _check_section(config, reference, "")


def check_complete(config, reference) -> None:
  """Refuses a config that lacks keys of ``reference`` (a config file that does not start from
  ``configs/default.py``).

  Raises:
    ConfigError: one line naming the first three missing dotted keys (a missing section: its name).
  """
  missing = _missing(config, reference, "")
  if missing:
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    raise ConfigError(f"the config lacks {', '.join(missing[:3])}{more} of configs/default.py's keys; start the "
                      "config from the default one (config_files.default_config(__file__), as configs/*.py "
                      "do) and change values")


def override_message(key: str, text: str, reference) -> str | None:
  """The one-line message for an override ``--config.KEY=TEXT`` that ml_collections could not convert
  (``--config.train.epochs_per_task=1.5``), in the words of :func:`check_config`; ``None`` when ``key`` is
  not a key of ``reference`` (the caller keeps the flag parser's message)."""
  try:
    ref_value = config_files.get_key(reference, key)
  except KeyError:
    return None
  if ref_value is None or _is_section(ref_value):
    return None
  spec = _spec(key, ref_value)
  return (f"bad config value {key}={text}: {text!r} is not {_describe(spec)}; give {_describe(spec)}, e.g. "
          f"{_example(key, ref_value)}")


def _is_section(value) -> bool:
  return hasattr(value, "items") and not isinstance(value, (str, bytes))


def _missing(node, ref, prefix: str) -> list:
  """Dotted keys of ``ref`` (a section) that ``node`` lacks, in key order (a missing section: its name)."""
  if not _is_section(node):
    return []  # a value where a section belongs: _check_section names it
  out = []
  for name in ref.keys():
    if name not in node:
      out.append(prefix + name)
    elif _is_section(ref[name]):
      out += _missing(node[name], ref[name], f"{prefix}{name}.")
  return out


def _recordable(value) -> bool:
  """Whether results.json can record ``value`` (:func:`lwcl.io.report.write_json_atomic`): None, a bool,
  number or string (NumPy's too), or a tuple, list, array or section of such values."""
  if value is None or isinstance(value, (bool, int, float, str, np.bool_, np.number)):
    return True
  if isinstance(value, (tuple, list, np.ndarray)):
    return all(_recordable(v) for v in value)
  if _is_section(value):
    return all(isinstance(k, str) and _recordable(v) for k, v in value.items())
  return False


def _check_section(node, ref, prefix: str) -> None:
  for name, value in list(node.items()):
    key = prefix + name
    try:
      ref_value = ref[name]
    except (KeyError, AttributeError, TypeError):  # a key the config file added: no type to compare with
      if not _recordable(value):
        raise ConfigError(f"config key {key} (not in configs/default.py) holds a {type(value).__name__}, which "
                          "results.json cannot record; give it a number, string, boolean or a tuple of them "
                          "(str(...) of a path), or remove it from the config file") from None
      continue
    if _is_section(ref_value) or _is_section(value):
      if not (_is_section(ref_value) and _is_section(value)):
        what = "a section" if _is_section(ref_value) else "a single value"
        raise ConfigError(f"config key {key} must be {what} as in configs/default.py, got {_show(value)}; "
                          "see configs/default.py")
      _check_section(value, ref_value, key + ".")
    elif ref_value is not None:
      _check_value(key, value, _spec(key, ref_value), _example(key, ref_value))


def _spec(key: str, ref_value):
  """The type a value of ``key`` must have: a scalar type, or ``(element_spec,)`` for a tuple."""
  if key in TUPLE_ELEMENTS:
    return (TUPLE_ELEMENTS[key][0],)
  if isinstance(ref_value, (tuple, list)):
    specs = {_spec(key, v) for v in ref_value}
    if len(specs) == 1:
      return (specs.pop(),)
    if not specs:
      return (_ANY_SCALAR,)
    return (float,) if specs <= {int, float} else (_ANY_SCALAR,)
  for t in _SCALARS:  # bool before int: True is an int
    if isinstance(ref_value, t):
      return t
  return type(ref_value)


def _example(key: str, ref_value) -> str:
  if key in TUPLE_ELEMENTS:
    return f"--config.{key}='{TUPLE_ELEMENTS[key][1]}'"
  if isinstance(ref_value, bool):
    return f"--config.{key}=True or --config.{key}=False"
  if isinstance(ref_value, (tuple, list)):
    return f"--config.{key}='{_show(tuple(ref_value)).replace(' ', '')}'"
  if isinstance(ref_value, str):
    return f"--config.{key}={ref_value or 'TEXT'}"
  return f"--config.{key}={ref_value!r}"


def _describe(spec, plural: bool = False) -> str:
  """``spec`` in words: ``an integer``, ``a tuple of integers``; ``integers``, ``tuples of integers``."""
  if isinstance(spec, tuple):
    return ("tuples of " if plural else "a tuple of ") + _describe(spec[0], plural=True)
  name = getattr(spec, "__name__", str(spec))
  return _NAMES.get(spec, (f"a {name}", f"{name} values"))[int(plural)]


def _show(value) -> str:
  """``value`` as the user wrote it: the text of an unparsed override, else a Python literal."""
  if isinstance(value, (tuple, list)) and len(value) == 1 and isinstance(value[0], str) and \
      _LITERAL.search(value[0]):
    return value[0]
  if isinstance(value, list):
    value = tuple(value)
  return repr(value)


def _matches(value, spec) -> bool:
  if isinstance(spec, tuple):
    return isinstance(value, (tuple, list)) and all(_matches(v, spec[0]) for v in value)
  if spec is bool:
    return isinstance(value, bool)
  if spec is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if spec is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if spec == _ANY_SCALAR:
    return isinstance(value, (int, float, str)) and not isinstance(value, bool) and \
        not (isinstance(value, str) and _LITERAL.search(value))
  return isinstance(value, spec)


def _token_matches(token: str, spec) -> bool:
  """Whether one piece of an unparsed tuple literal is a value of the (innermost) element type."""
  while isinstance(spec, tuple):
    spec = spec[0]
  if spec is str or spec == _ANY_SCALAR:
    return True
  if spec is bool:
    return token in ("True", "False")
  try:
    (float if spec is float else int)(token)
  except ValueError:
    return False
  return True


def _bad_piece(value, spec) -> str:
  """What is wrong inside a bad tuple value, e.g. ``'abc' is not an integer``."""
  leaf = spec
  while isinstance(leaf, tuple):
    leaf = leaf[0]
  for element in value:
    if isinstance(element, str) and leaf is not str:
      tokens = [t for t in (t.strip("'\"") for t in re.split(r"[()\[\],\s]+", element)) if t]
      bad = [t for t in tokens if not _token_matches(t, spec)]
      if bad:
        return f"{bad[0]!r} is not {_describe(leaf)}"
      if leaf == _ANY_SCALAR:
        return f"{element!r} is not a valid tuple literal"
      return f"{element!r} is text, not {_describe(spec[0])} (drop the inner quotes)"  # "'(100,200)'"
    if not _matches(element, spec[0]):
      return f"{_show(element)} is not {_describe(spec[0])}"
  return f"{_show(value)} is not {_describe(spec)}"


def _check_value(key: str, value, spec, example: str) -> None:
  if _matches(value, spec):
    return
  if isinstance(spec, tuple) and isinstance(value, (tuple, list)):
    problem = _bad_piece(value, spec)
  else:
    problem = f"{_show(value)} is not {_describe(spec)}"
  raise ConfigError(f"bad config value {key}={_show(value)}: {problem}; give {_describe(spec)}, e.g. "
                    f"{example}")
