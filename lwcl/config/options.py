"""Every component's options, collected: what :func:`lwcl.config.values.check_values` checks, what
``configs/default.py`` is tested against, and what ``python -m lwcl.main --options NAME`` prints.

Each component declares the keys it reads as :class:`~lwcl.core.options.Option` next to its code:

==================  ===========================================================================
section             declared in
==================  ===========================================================================
top level           :mod:`lwcl.config.sections` (read by :mod:`lwcl.runs`)
optimizer           :mod:`lwcl.config.sections` (:mod:`lwcl.engine.optim`'s ``OPTIONS``)
train, eval         :mod:`lwcl.config.sections` (read by :mod:`lwcl.engine`)
sweep               :mod:`lwcl.config.sections` (:mod:`lwcl.runs.sweep`'s ``OPTIONS``)
checkpoint          :mod:`lwcl.io.checkpoint`
devices             :mod:`lwcl.platform.devices`
data                :mod:`lwcl.data.sources`, :mod:`lwcl.data.pipeline`, :mod:`lwcl.data.stream_loader`
scenario            :mod:`lwcl.data.scenarios` (shared keys, and each kind's in ``SCENARIOS``)
model               :mod:`lwcl.models` (``model.name``), :mod:`lwcl.models.conv` (``model.conv_impl``),
                    each model's module (its entry of ``MODELS``)
layerwise           :mod:`lwcl.layerwise.fns`, :mod:`lwcl.layerwise.readouts`
method              ``method.name`` here (the names of ``METHODS``); each method class's ``OPTIONS``
==================  ===========================================================================

The config sections (:mod:`lwcl.config.sections`) sit below the engine, which imports :mod:`lwcl.config`,
so this module imports no engine or run code.
"""

from __future__ import annotations

import functools
import types

from lwcl import layerwise, methods, models
from lwcl.config import sections
from lwcl.core.options import Option
from lwcl.data import pipeline, scenarios, sources, stream_loader
from lwcl.errors import ConfigError
from lwcl.io import checkpoint
from lwcl.platform import devices

_BOUNDS = ("default", "minimum", "strict", "maximum", "choices")


def method_name_option() -> Option:
  """``method.name``: one of the methods of :data:`lwcl.methods.METHODS`."""
  return Option("method.name", "finetune", "the continual-learning method: " + " | ".join(sorted(methods.METHODS)),
                choices=tuple(sorted(methods.METHODS)))


def components() -> dict:
  """Every component's options: ``{name: (Option, ...)}``, sections first (``top-level``, ``optimizer``,
  ``train``, ``eval``, ``sweep``, ``checkpoint``, ``devices``, ``data``, ``scenario``, ``model``,
  ``layerwise``, ``method``), then each scenario kind (``split`` ...), model (``resnet`` ...) and method
  (``ewc`` ...) by name with the keys only it reads."""
  out = {"top-level": sections.TOP_LEVEL, "optimizer": sections.OPTIMIZER, "train": sections.TRAIN,
         "eval": sections.EVAL, "sweep": sections.SWEEP, "checkpoint": checkpoint.OPTIONS,
         "devices": devices.OPTIONS, "data": sources.OPTIONS + pipeline.OPTIONS + stream_loader.OPTIONS,
         "scenario": scenarios.OPTIONS, "model": models.OPTIONS, "layerwise": layerwise.OPTIONS,
         "method": (method_name_option(),)}
  for name, kind in scenarios.SCENARIOS.items():
    out[name] = kind.options
  for name, model in models.MODELS.items():
    out[name] = model.options
  for name in sorted(methods.METHODS):
    out[name] = tuple(getattr(methods.METHODS[name], "OPTIONS", ()))
  return out


def declared() -> dict:
  """``{key: Option}`` over every component (:func:`components`), in declaration order. A key several
  components read (``model.width``, ``model.conv_stages``, a method key) is declared by each with its own
  doc; the first declaration is returned.

  Raises:
    ValueError: two declarations of one key differ in default, bounds or choices (a programming error).
  """
  out = {}
  for name, options in components().items():
    for option in options:
      first = out.setdefault(option.key, option)
      if any(getattr(first, f) != getattr(option, f) for f in _BOUNDS):
        raise ValueError(f"option {option.key} is declared with other defaults or bounds by {name}: "
                         f"{option} vs {first}")
  return out


@functools.cache
def defaults() -> types.MappingProxyType:
  """``{dotted key: default}`` of every declared option (:func:`declared`), read-only: what a config that
  lacks a key (written by an lwcl before the key existed) ran as (:func:`lwcl.io.checkpoint.config_differences`)."""
  return types.MappingProxyType({key: option.default for key, option in declared().items()})


def section_names() -> tuple:
  """What ``--options`` takes: the section and component names of :func:`components`."""
  return tuple(components())


def describe(name: str) -> str:
  """The options of a section (``model``: every ``model.*`` key, each model's own meaning of a shared
  key included) or a component (``resnet``, ``ewc``, ``split``), one :meth:`Option.describe` line each.

  Raises:
    ConfigError: ``name`` is no section or component (one line listing them).
  """
  parts = components()
  if name not in parts:
    raise ConfigError(f"--options={name} names no config section or component; use one of "
                      f"{', '.join(parts)}")
  if name in ("top-level", "checkpoint", "devices", "optimizer", "train", "eval", "sweep") or name in (
      scenarios.SCENARIOS) or name in models.MODELS or name in methods.METHODS:
    options = parts[name]
    title = f"{name}: the keys it reads beside its section's shared ones" if name in (
        *scenarios.SCENARIOS, *models.MODELS, *methods.METHODS) else name
  else:  # a section: every key below it, each component's declaration (a shared key: one line per meaning)
    options, seen = [], set()
    for opts in parts.values():
      for option in opts:
        if option.key.startswith(name + ".") and (option.key, option.doc) not in seen:
          seen.add((option.key, option.doc))
          options.append(option)
    title = f"{name}.*"
  lines = [f"{title} ({len(options)} option{'s' if len(options) != 1 else ''}):"]
  lines += ["  " + option.describe() for option in options] or ["  (none declared)"]
  return "\n".join(lines)
