"""Checking the values of a config that its types cannot (ranges, names, combinations), before anything runs:
the one place for every check of a config that needs no data.

:func:`check_values` runs after :func:`lwcl.config.types.check_config` (so every value has its key's type)
and before the workdir is created or locked (``driver.check``), so a refused config leaves no trace on
disk; :class:`~lwcl.engine.build.Setup` runs it again for configs built in code. Its rules:

- every ``float`` value is finite, and every number of a tuple of floats (``scenario.angles``,
  ``sweep.candidates``: :data:`lwcl.config.types.TUPLE_ELEMENTS`);
- every key a component declares (:mod:`lwcl.config.options`: each model, scenario kind, data source,
  the engine's sections, layer-wise training, devices, checkpoints, methods) is within its declaration's
  bounds (``0`` means "off", "all" or "automatic" where its doc says so; a tuple of sizes: every size)
  and among its choices (``model.name``, ``method.name``, ``eval.split``, ``data.source``, ...);
- the combinations (:data:`RULES`): streamed data runs one step per dispatch and at most one grain worker
  process per usable CPU (:mod:`lwcl.platform.workers`); ``eval.split = 'valid'``
  needs held-out data; ``scenario.max_tasks`` is 0 or at least ``num_tasks``; a rotated stream's angles
  are one per task; ``layerwise.aux_head = 'cnn'`` needs a conv; the seeds ``seed .. seed + num_seeds - 1``
  are 32-bit PRNG seeds; a sweep (``sweep.key``) has held-out data and candidates, each listed once, of a
  key that holds a number (whole numbers for an integer key), and is not combined with ``num_orders`` (the
  kinds of run: :mod:`lwcl.runs.kinds`).

What needs more than the config stays where it is known: each sweep candidate's config
(:func:`lwcl.runs.sweep.validate`), classes per task against the data set's classes, a batch larger than
a task (:mod:`lwcl.data.scenarios`), strides and depths against a model's blocks (:mod:`lwcl.models`),
cuts against the network (:mod:`lwcl.layerwise.cuts`), devices against those visible
(:mod:`lwcl.platform.devices`).
"""

from __future__ import annotations

import math

from lwcl.config import files as config_files
from lwcl.config import options as config_options
from lwcl.config import types as config_check
from lwcl.core.options import bound_text, unknown_message
from lwcl.data.sources import STREAMED
from lwcl.errors import ConfigError
from lwcl.platform import workers as workers_of_host


def check_values(config) -> None:
  """Checks the values of a type-checked config (the rules of the module docstring).

  Args:
    config: an ``ml_collections.ConfigDict`` (or nested dict) with the keys of ``configs/default.py``;
      keys it lacks are not checked.
  Raises:
    ConfigError: the first bad value, as one line naming the key, the value and a valid example (or the
      fix of a combination).
  """
  _check_floats(config, "")
  for key, (element, _) in config_check.TUPLE_ELEMENTS.items():
    values = _get(config, key)
    for v in (values or ()) if element is float else ():
      if isinstance(v, (int, float)) and not math.isfinite(v):
        _refuse(key, tuple(values), f"{v} is not a finite number", "finite numbers")
  for option in config_options.declared().values():
    _check_option(option, _get(config, option.key))
  for rule in RULES:
    rule(config)


def _check_option(option, value) -> None:
  """``value`` within ``option``'s bounds and choices (``None``: the config lacks the key)."""
  if value is None:
    return
  key, low = option.key, option.minimum
  if option.choices:
    if value not in option.choices:
      raise ConfigError(unknown_message(key, value, option.choices))
  elif option.type is tuple:  # sizes: every one (nested: model.conv_stages) at least the bound
    if low is not None and any(s < low for s in _flat(value)):
      _refuse(key, tuple(value), f"every layer size must be at least {bound_text(low)}", "positive sizes",
              f"'{config_check.TUPLE_ELEMENTS[key][1]}'")
  elif not isinstance(value, (int, float)) or isinstance(value, bool):
    return  # a bool or a string key: its type is checked by lwcl.config.types
  else:
    _check_number(option, value)


def _check_number(option, value) -> None:
  key, low, high = option.key, option.minimum, option.maximum
  lo, hi = (None if b is None else bound_text(b) for b in (low, high))
  if option.strict and low is not None and value <= low:
    what = key.rsplit(".", 1)[-1].replace("_", " ")
    if low == 0:
      _refuse(key, value, f"the {what} must be positive", "a positive number", option.default)
    _refuse(key, value, f"the {what} must be above {lo}", f"a number above {lo}", option.default)
  elif high is not None and not ((low is None or low <= value) and value < high):
    interval = (f"[{lo}, {hi})" if not option.strict else f"({lo}, {hi})") if low is not None else None
    if interval is None:
      _refuse(key, value, f"must be below {hi}", f"a number below {hi}", option.default)
    _refuse(key, value, f"must be in {interval}", f"a number in {interval}", option.default)
  elif low is not None and value < low:
    _refuse(key, value, f"must be at least {low}", f"{low} or more", low)


def _streamed(config) -> bool:
  """Whether the config's data is streamed from disk (``data.stream.*`` apply)."""
  source = _get(config, "data.source")
  return bool(source in STREAMED or (source == "auto" and _get(config, "data.record_dir")))


def _streamed_data_one_step_per_dispatch(config) -> None:
  if _streamed(config) and (_get(config, "train.steps_per_dispatch") or 1) > 1:
    raise ConfigError("streamed data (data.source arrayrecord / tfds_stream, or data.record_dir set) cannot "
                      "be placed on the device whole; it needs train.steps_per_dispatch=1")


def _stream_workers_within_cpus(config) -> None:
  workers, cpus = _get(config, "data.stream.workers") or 0, workers_of_host.usable_cpus()
  if _streamed(config) and isinstance(workers, int) and workers > cpus:
    raise ConfigError(f"data.stream.workers={workers} is more than the {cpus} CPUs this process may use: every "
                      "worker is a process importing grain and JAX (about 3 s of one core and 210 MB), started "
                      "anew every epoch, and more cannot decode faster; set --config.data.stream.workers="
                      f"{cpus} or fewer (0: grain's read threads decode)")


def _valid_split_needs_held_out_data(config) -> None:
  if _get(config, "eval.split") == "valid" and not _get(config, "scenario.validation_fraction"):
    raise ConfigError("eval.split=valid needs held-out data; set --config.scenario.validation_fraction "
                      "(e.g. 0.1)")


def _max_tasks_at_least_num_tasks(config) -> None:
  max_tasks, num_tasks = _get(config, "scenario.max_tasks"), _get(config, "scenario.num_tasks")
  if max_tasks and num_tasks is not None and max_tasks < num_tasks:
    raise ConfigError(f"scenario.max_tasks={max_tasks} is smaller than num_tasks={num_tasks}; raise it or "
                      "set 0")


def _one_angle_per_task(config) -> None:
  angles, num_tasks = _get(config, "scenario.angles"), _get(config, "scenario.num_tasks")
  if _get(config, "scenario.kind") == "rotated" and angles and len(angles) != num_tasks:
    raise ConfigError(f"scenario.angles lists {len(angles)} angles for {num_tasks} tasks; give one per task")


def _cnn_head_has_a_conv(config) -> None:
  if _get(config, "layerwise.aux_head") == "cnn" and (_get(config, "layerwise.aux_convs") or 0) < 1:
    raise ConfigError("layerwise.aux_convs must be >= 1 for aux_head='cnn'; fix --config.layerwise.aux_convs")


def _seeds_fit_a_prng_key(config) -> None:
  seed, replicas = _get(config, "seed"), _get(config, "num_seeds") or 1
  if isinstance(seed, int) and isinstance(replicas, int) and seed + replicas > 2**32:
    raise ConfigError(f"seeds {seed}..{seed + replicas - 1} (seed={seed}, num_seeds={replicas}) pass 2**32 - 1, "
                      "the largest 32-bit PRNG seed (JAX's key of seed + 2**32 is the key of seed); give a "
                      "smaller --config.seed")


def _sweep_settings(config) -> None:
  if not _get(config, "sweep.key"):
    return
  if _get(config, "num_orders"):
    raise ConfigError("sweep.key cannot be combined with num_orders (a sweep selects on one task order); "
                      "select with --config.num_orders=0, then run the selected value with num_orders")
  if (_get(config, "scenario.validation_fraction") or 0) <= 0:
    raise ConfigError("a sweep selects on held-out data; set --config.scenario.validation_fraction "
                      "(e.g. 0.1)")
  candidates = _get(config, "sweep.candidates")
  if not candidates:
    raise ConfigError("sweep.key is set but sweep.candidates is empty; give candidates, e.g. "
                      "--config.sweep.candidates='(1.,10.,100.)'")
  key = _get(config, "sweep.key")
  current = _get(config, key)
  if isinstance(current, bool) or not isinstance(current, (int, float)):
    raise ConfigError(f"sweep.key '{key}' is not a numeric config key; use a dotted key of configs/default.py "
                      "that holds a number, such as method.strength")
  values = [float(v) for v in candidates if isinstance(v, (int, float))]
  twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
  if twice is not None:
    raise ConfigError(f"sweep.candidates lists {number_text(twice)} more than once: {_show(candidates)}; give each "
                      "candidate once")
  if isinstance(current, int):
    fractional = [v for v in values if v != int(v)]
    if fractional:
      bad = fractional[0]
      raise ConfigError(f"sweep.candidates {_show(candidates)} for the integer key {key}: {number_text(bad)} is not "
                        f"a whole number (it would train with {int(bad)}); give whole numbers, e.g. "
                        f"--config.sweep.candidates='({', '.join(f'{int(v)}.' for v in values)})'")


# The combinations, checked in this order after every key's own bounds.
RULES = (_streamed_data_one_step_per_dispatch, _stream_workers_within_cpus, _valid_split_needs_held_out_data,
         _max_tasks_at_least_num_tasks, _one_angle_per_task, _cnn_head_has_a_conv, _seeds_fit_a_prng_key,
         _sweep_settings)


def _get(config, key: str):
  try:
    return config_files.get_key(config, key)
  except KeyError:
    return None


def _flat(value) -> list:
  if isinstance(value, (tuple, list)):
    return [x for v in value for x in _flat(v)]
  return [value]


def _check_floats(node, prefix: str) -> None:
  for name, value in node.items():
    if hasattr(value, "items"):
      _check_floats(value, f"{prefix}{name}.")
    elif isinstance(value, float) and not math.isfinite(value):
      _refuse(prefix + name, value, f"{value} is not a finite number", "a finite number",
              _get(config_check.default_reference(), prefix + name))


def number_text(value) -> str:
  """A number as short as it reads back exactly: ``f"{value:g}"`` (``0.01``, ``10``, ``1e-05``) when
  ``float`` of it is ``value``, else ``repr(value)`` (``0.010000001``, which ``:g`` rounds to ``0.01``).
  Distinct numbers give distinct texts (``float(text) == float(value)``): a sweep candidate's folder name
  (:func:`lwcl.runs.axis.candidate_name`)."""
  value = float(value)
  short = f"{value:g}"
  return short if float(short) == value else repr(value)


def _show(values) -> str:
  """A tuple of numbers as written: ``(32.9, 64.7)``."""
  return "(" + ", ".join(number_text(v) if isinstance(v, (int, float)) else repr(v) for v in values) + ")"


def _refuse(key: str, value, problem: str, wanted: str, example=None):
  example = f", e.g. --config.{key}={example}" if example is not None else ""
  raise ConfigError(f"bad config value {key}={value}: {problem}; give {wanted}{example}")
