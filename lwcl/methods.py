"""Continual-learning methods: what each adds to plain fine-tuning.

A method is an object with hooks the runner and the jitted train step call. It holds only configuration
(hyper-parameters) and the model functions; all of its state lives in ``TrainState.method_state``, a pytree
that is checkpointed and passed through every step, never frozen into compiled code.

Hooks (the base class implements fine-tuning, where every hook does nothing):

* ``training_data(scenario, t)``: the examples trained on during task ``t`` (host).
* ``init_state(params, batch_stats)``: the initial method state (host, once).
* ``transformation()``: an ``optax.GradientTransformationExtraArgs`` chained in front of the base optimizer
  (projection methods: A-GEM/GEM/LGD; importance penalties: EWC/MAS/SI/NAI).
* ``step_args(method_state, params, batch_stats, batch, rng)``: the keyword arguments the transformation's
  ``update`` receives at this step (traced inside the train step). ``rng`` is the key the step's loss
  uses (augmentation); a method that samples derives its own with ``jax.random.fold_in(rng, CONSTANT)``.
* ``after_step(method_state, params_before, params_after, grads, batch)``: the state after a step (traced).
* ``end_task(method_state, params, batch_stats, task, data)``: the state after task ``task`` (host; may call
  jitted functions), e.g. importances and anchors.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import optax

from lwcl.data.pipeline import Examples
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


class Method:
  """Fine-tuning: train on each task in turn with the base optimizer alone (the lower bound)."""

  name = "finetune"

  def __init__(self, method_config, scenario, fns):
    self.config = method_config
    self.scenario = scenario
    self.fns = fns

  def training_data(self, scenario, task: int) -> Examples:
    """The examples of task ``task`` alone."""
    return Examples.from_tasks([scenario.tasks[task]])

  def init_state(self, params, batch_stats) -> Any:
    """No state."""
    return {}

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    """The identity."""
    return optax.with_extra_args_support(optax.identity())

  def step_args(self, method_state, params, batch_stats, batch, rng) -> dict:
    """No extra arguments."""
    return {}

  def after_step(self, method_state, params_before, params_after, grads, batch) -> Any:
    """State unchanged."""
    return method_state

  def end_task(self, method_state, params, batch_stats, task: int, data: Examples) -> Any:
    """State unchanged."""
    return method_state


class Joint(Method):
  """Joint training (the upper bound): during task ``t`` train on the union of tasks ``0..t``.

  This is the cumulative form (Avalanche's ``Cumulative``), so the accuracy matrix is a real ``T x T``
  matrix; after the last task the model has been trained on all tasks' data together.
  """

  name = "joint"

  def training_data(self, scenario, task: int) -> Examples:
    return Examples.from_tasks(scenario.tasks[: task + 1])


METHODS: dict[str, Callable] = {"finetune": Method, "joint": Joint}


def register(name: str, cls: Callable) -> None:
  """Makes ``config.method.name = name`` build ``cls(method_config, scenario, fns)``."""
  METHODS[name] = cls


# Modules that register further methods when imported (importance penalties, gradient projection).
PLUGIN_MODULES = ("lwcl.regularization", "lwcl.projection")


def _load_plugins() -> None:
  import importlib  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  for module in PLUGIN_MODULES:
    if importlib.util.find_spec(module) is not None:
      importlib.import_module(module)


def build_method(method_config, scenario, fns) -> Method:
  """The method ``config.method.name`` names.

  Raises:
    ConfigError: unknown method name.
  """
  _load_plugins()
  name = method_config.name
  if name not in METHODS:
    raise ConfigError(f"unknown method.name '{name}'; use one of {', '.join(sorted(METHODS))}")
  return METHODS[name](method_config, scenario, fns)
