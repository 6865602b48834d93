"""Reading a method's keys from ``config.method``: present, of the right type, within bounds.

Every method reads its hyper-parameters through these three functions, so a bad value always ends in the
same one-line :class:`~lwcl.errors.ConfigError` naming the key and the fix.
"""

from __future__ import annotations

import jax
import numpy as np

from lwcl.errors import ConfigError

_MISSING = object()


def option(cfg, key: str, default=_MISSING):
  """``cfg[key]`` of a ``config.method`` section; ``default`` when given and the key is absent.

  Raises:
    ConfigError: the key is absent and no default is given.
  """
  present = key in cfg if hasattr(cfg, "__contains__") else hasattr(cfg, key)
  if not present:
    if default is not _MISSING:
      return default
    raise ConfigError(f"method.{key} is missing; start the config from configs/default.py, which "
                      "defines every method key")
  return cfg[key] if hasattr(cfg, "__getitem__") else getattr(cfg, key)


def choice(cfg, key: str, allowed: tuple, default=_MISSING) -> str:
  """``option`` that must be one of ``allowed``; raises ConfigError naming the key otherwise."""
  value = option(cfg, key, default)
  if value not in allowed:
    raise ConfigError(f"method.{key}='{value}' is not one of {', '.join(allowed)}; fix "
                      f"--config.method.{key}")
  return value


def number(cfg, key: str, cast, minimum, *, strict: bool = False, maximum=None, default=_MISSING):
  """``option`` as ``cast`` (int or float), finite, ``>= minimum`` (``> minimum`` when ``strict``) and
  ``< maximum`` when given; raises ConfigError naming the key and the bound otherwise."""
  value = option(cfg, key, default)
  if isinstance(value, jax.core.Tracer):  # a swept candidate traced into a replica's step, checked on the host
    return value
  try:
    if isinstance(value, bool) or cast(value) != value and cast is int:
      raise ValueError
    value = cast(value)
  except (TypeError, ValueError):
    kind = "an integer" if cast is int else "a number"
    raise ConfigError(f"method.{key}={value!r} is not {kind}; fix --config.method.{key}") from None
  ok = (value > minimum if strict else value >= minimum) and np.isfinite(value)
  if maximum is not None:
    ok = ok and value < maximum
  if not ok:
    bound = f"> {minimum}" if strict else f">= {minimum}"
    bound += f" and < {maximum}" if maximum is not None else ""
    raise ConfigError(f"method.{key}={value} must be {bound}; fix --config.method.{key}")
  return value
