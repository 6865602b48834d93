"""The finished runs' ``results.json`` files a study reads, checked before anything is computed from them.

A study's folders may hold partial outputs: a run stopped before it wrote its results, a file truncated or
edited, ``orders`` still empty, an accuracy ``null`` (NaN written by another tool), another program's JSON.
Every value a study uses is read through :class:`Results`, which refuses a missing or unreadable file, a
file that is not a JSON object, a missing entry or one of the wrong kind with one line naming the file,
the entry and the fix (:class:`StudyInputError`); an accuracy that is not a finite number is never
averaged into a table (NumPy would turn ``null`` into NaN, or the string ``"0.8"`` into 0.8).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from lwcl.errors import LwclError

_MISSING = object()


class StudyInputError(LwclError, ValueError):
  """A study's input (a run's results, a command-line value) is missing or wrong; one line with the fix.
  A ``ValueError`` too, as the studies raised before."""


def _finite(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _all_finite(v) -> bool:
  """Whether ``v`` is a finite number or a (nested) list of them."""
  return all(_all_finite(x) for x in v) if isinstance(v, list) else _finite(v)


# kind: (what it must be, in the error line; the check)
KINDS = {
    "number": ("a finite number", _finite),
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "strs": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "list": ("a non-empty list", lambda v: isinstance(v, list) and len(v) > 0),
    "numbers": ("a list of finite numbers (nested, rectangular)", lambda v: isinstance(v, list) and _all_finite(v)),
    "any": ("present", lambda v: True),
}


class Results:
  """One run's results dict (``data``) read from ``path``; :meth:`get` returns checked values, and every
  error names ``path`` and ends with ``fix``."""

  def __init__(self, path: str, data: dict, fix: str):
    self.path, self.data, self.fix = path, data, fix

  def error(self, what: str) -> StudyInputError:
    return StudyInputError(f"{self.path}: {what}; {self.fix}")

  def get(self, key: str, kind: str = "any", default=_MISSING):
    """The value at the dotted ``key`` (list positions as numbers: ``orders.0.acc``), checked to be of
    ``kind`` (:data:`KINDS`; ``numbers`` returns a float64 array); ``default`` when it is absent, if given.

    Raises:
      StudyInputError: absent without a default, or not of ``kind``.
    """
    value, parts = self.data, key.split(".")
    for i, part in enumerate(parts):
      if not isinstance(value, (dict, list)):  # e.g. an order that is null
        raise self.error(f"{'.'.join(parts[:i])} is {json.dumps(value)[:60]}, not an object")
      if isinstance(value, dict) and part in value:
        value = value[part]
      elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
        value = value[int(part)]
      elif default is not _MISSING:
        return default
      else:
        raise self.error(f"{key} is missing")
    what, ok = KINDS[kind]
    if not ok(value):
      raise self.error(f"{key} is {json.dumps(value)[:60]}, not {what}")
    if kind == "numbers":
      try:
        return np.asarray(value, np.float64)
      except ValueError:  # ragged
        raise self.error(f"{key} is a ragged list, not {what}") from None
    return value


def read(path: str, fix: str) -> Results:
  """The results dict in ``path`` (a ``results.json``).

  Raises:
    StudyInputError: the file is missing (or a folder), unreadable, not UTF-8 JSON, or not an object.
  """
  if not os.path.isfile(path):
    raise StudyInputError(f"{path} {'is a folder' if os.path.isdir(path) else 'not found'}; {fix}")
  try:
    with open(path, "rb") as f:
      data = json.loads(f.read().decode("utf-8"))
  except OSError as e:
    raise StudyInputError(f"{path} is unreadable ({e.strerror or type(e).__name__}); {fix}") from None
  except ValueError as e:  # not UTF-8, or not JSON (e.g. truncated)
    raise StudyInputError(f"{path} is not valid JSON ({' '.join(str(e).split())[:80]}); {fix}") from None
  if not isinstance(data, dict):
    raise StudyInputError(f"{path} holds a JSON {type(data).__name__}, not a run's results object; {fix}")
  return Results(path, data, fix)


def at_least(flag: str, value: int, minimum: int) -> None:
  """Refuses a command-line integer below ``minimum`` (StudyInputError naming ``--flag=value``)."""
  if value < minimum:
    raise StudyInputError(f"--{flag}={value} must be at least {minimum}; pass --{flag}=N with N >= {minimum}")
