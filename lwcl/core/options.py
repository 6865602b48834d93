"""A component's options: what each method, model, scenario and data source declares about the config keys
it reads (type, default, bounds or choices, one line of doc), next to its code.

A component lists its options as a tuple of :class:`Option` (``OPTIONS`` in its module or class); one
validator (:mod:`lwcl.config.options`) walks every registry's options, ``configs/default.py`` is checked
against them (same keys, same defaults), and ``python -m lwcl.main --options NAME`` prints them.

This module sits at the bottom of the package (it imports only :mod:`lwcl.errors`), so every component can
declare its options without importing the config machinery above it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from lwcl.errors import ConfigError

_TYPES = (bool, int, float, str, tuple)


@dataclasses.dataclass(frozen=True)
class Option:
  """One config key a component reads.

  Attributes:
    key: the dotted key below the config root, e.g. ``method.strength``.
    default: the value ``configs/default.py`` gives it; its type (bool, int, float, str or tuple) is the
      key's type.
    doc: one line: what it means, its unit, and what special values (``0 = off``) mean.
    minimum: for numbers, the smallest allowed value (None: unbounded below); strict: ``> minimum``. For a
      tuple of numbers (layer sizes), the bound of every number in it (the validator checks those).
    maximum: for numbers, the value it must stay below (None: unbounded above).
    choices: for strings, the allowed values (empty: any string).
  """
  key: str
  default: Any
  doc: str
  minimum: float | None = None
  strict: bool = False
  maximum: float | None = None
  choices: tuple = ()

  def __post_init__(self):
    if type(self.default) not in _TYPES:
      raise TypeError(f"option {self.key}: default {self.default!r} is not one of bool, int, float, str, tuple")
    if self.choices and self.default not in self.choices:
      raise ValueError(f"option {self.key}: default {self.default!r} is not one of its choices {self.choices}")

  @property
  def type(self) -> type:
    """The key's type: the type of :attr:`default`."""
    return type(self.default)

  def check(self, value) -> Any:
    """``value`` if it is allowed for this key (an int is allowed for a float key), else an error.

    Raises:
      ConfigError: one line naming the key, the value and the fix (a number of the wrong kind, not finite,
        out of bounds, or a string not among the choices).
    """
    fix = f"fix --config.{self.key}"
    if self.type in (int, float):
      if isinstance(value, bool) or not isinstance(value, (int, float)) or (
          self.type is int and not isinstance(value, int)):
        kind = "an integer" if self.type is int else "a number"
        raise ConfigError(f"{self.key}={value!r} is not {kind}; {fix}")
      ok = math.isfinite(value) and (self.minimum is None or (
          value > self.minimum if self.strict else value >= self.minimum))
      ok = ok and (self.maximum is None or value < self.maximum)
      if not ok:
        raise ConfigError(f"{self.key}={value} must be {self.bounds()}; {fix}")
    elif self.choices and value not in self.choices:
      raise ConfigError(f"{self.key}='{value}' is not one of {', '.join(map(str, self.choices))}; {fix}")
    return value

  def bounds(self) -> str:
    """The allowed values in words: ``>= 0``, ``> 0 and < 1``, ``finite``, ``one of a | b``,
    ``every element >= 1`` (a tuple of sizes), or ``any``."""
    if self.choices:
      return "one of " + " | ".join(map(str, self.choices))
    if self.type is tuple:
      return f"every element >= {bound_text(self.minimum)}" if self.minimum is not None else "any"
    if self.type not in (int, float):
      return "any"
    parts = []
    if self.minimum is not None:
      parts.append(f"{'>' if self.strict else '>='} {bound_text(self.minimum)}")
    if self.maximum is not None:
      parts.append(f"< {bound_text(self.maximum)}")
    return " and ".join(parts) or "finite"

  def describe(self) -> str:
    """One line for ``--options``: ``key (type, default, bounds): doc``."""
    return f"{self.key} ({self.type.__name__}, default {self.default!r}, {self.bounds()}): {self.doc}"


def bound_text(x: float) -> str:
  """A bound ``x`` for a message: whole numbers in full (``4294967296``, not ``4.29497e+09``), others as ``%g``."""
  return str(int(x)) if float(x).is_integer() and abs(x) < 1e18 else f"{x:g}"


def pick(registry, key: str, name: str):
  """``registry[name]``: the entry a config names (a model, a scenario kind, ...), for the code that builds it.

  Raises:
    ConfigError: ``name`` is not in ``registry``: ``unknown KEY 'NAME'; use one of A, B`` (the message the
      config validator gives for a value outside an option's choices).
  """
  if name not in registry:
    raise ConfigError(unknown_message(key, name, tuple(registry)))
  return registry[name]


def unknown_message(key: str, value, choices: tuple) -> str:
  """The one line for a value of ``key`` outside ``choices``."""
  return f"unknown {key} '{value}'; use one of {', '.join(map(str, choices))}"
