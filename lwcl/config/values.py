"""Checking the values of a config that its types cannot (ranges, names, combinations), before anything runs.

:func:`check_values` runs after :func:`lwcl.config.types.check_config` (so every value has its key's type)
and before the workdir is created or locked (``driver.check``), so a refused config leaves no trace on
disk; :class:`~lwcl.engine.build.Setup` runs it again for configs built in code. Its rules:

- every ``float`` value (and every number in ``scenario.angles`` and ``sweep.candidates``) is finite;
  ``optimizer.learning_rate`` is also positive;
- the keys of :data:`AT_LEAST` are at least their bound (counts, sizes, steps; ``0`` means "off", "all" or
  "automatic" where ``configs/default.py`` says so), every layer size in :data:`LAYER_SIZES` is at least 1;
- ``scenario.validation_fraction`` is in ``[0, 1)``, and ``eval.split = 'valid'`` needs it above 0;
- ``model.name``, ``method.name`` and ``eval.split`` name something that exists;
- ``data.source`` is a known source, and streamed data runs one step per dispatch.

Combinations of run modes (``num_seeds``, ``num_orders``, ``sweep.key``) are :mod:`lwcl.runs.kinds`'s.

Data-dependent checks (classes per task against the data set's classes, a batch larger than a task) stay
where the data is known (:mod:`lwcl.data.scenarios`).
"""

from __future__ import annotations

import math

from lwcl.config import files as config_files
from lwcl.config import types as config_check
from lwcl.errors import ConfigError

# Smallest allowed value of integer keys (configs/default.py explains what 0 means where it is allowed).
AT_LEAST = {
    "train.epochs_per_task": 1, "train.batch_size": 1, "train.eval_batch_size": 1,
    "train.log_every_steps": 1, "train.steps_per_dispatch": 1, "scenario.num_tasks": 1, "checkpoint.keep": 1,
    "num_orders": 0, "num_seeds": 0, "scenario.samples_per_task": 0, "scenario.classes_per_task": 0,
    "scenario.max_tasks": 0, "checkpoint.every_steps": 0, "eval.lca_batches": 0, "devices.num_devices": 0,
    "model.width": 0, "model.shallow_blocks": 0, "model.shallow_width": 0,
    "method.memory_per_task": 0, "method.importance_samples": 0, "method.importance_batch_size": 1,
    "method.memory_grad_chunk": 0, "method.agem_ref_batch": 1, "method.lgd_top_k": 0,
    "layerwise.greedy_epochs_per_block": 0, "layerwise.linear_probe.train_examples": 1,
    "layerwise.linear_probe.steps": 1, "data.stream.threads": 1, "data.stream.prefetch": 1,
    "data.stream.workers": 0, "data.image_size": 0,
}
# Tuples of layer sizes (nested for model.conv_stages): every size is at least 1.
LAYER_SIZES = ("model.hidden", "model.dense", "model.conv_stages", "layerwise.aux_hidden")
FINITE_TUPLES = ("scenario.angles", "sweep.candidates")
EVAL_SPLITS = ("test", "valid")
DATA_SOURCES = ("auto", "idx", "tfds", "arrayrecord", "tfds_stream")


def check_values(config) -> None:
  """Checks the values of a type-checked config (the rules of the module docstring).

  Args:
    config: an ``ml_collections.ConfigDict`` (or nested dict) with the keys of ``configs/default.py``;
      keys it lacks are not checked.
  Raises:
    ConfigError: the first bad value, as one line naming the key, the value and a valid example.
  """
  _check_floats(config, "")
  for key in FINITE_TUPLES:
    values = _get(config, key)
    for v in values or ():
      if isinstance(v, (int, float)) and not math.isfinite(v):
        _refuse(key, tuple(values), f"{v} is not a finite number", "finite numbers")
  lr = _get(config, "optimizer.learning_rate")
  if lr is not None and lr <= 0:
    _refuse("optimizer.learning_rate", lr, "the learning rate must be positive", "a positive number", 0.01)
  for key, bound in AT_LEAST.items():
    value = _get(config, key)
    if value is not None and value < bound:
      _refuse(key, value, f"must be at least {bound}", f"{bound} or more" if bound else "0 or more", bound)
  for key in LAYER_SIZES:
    value = _get(config, key)
    if value is not None and any(s < 1 for s in _flat(value)):
      _refuse(key, tuple(value), "every layer size must be at least 1", "positive sizes",
              f"'{config_check.TUPLE_ELEMENTS[key][1]}'")
  _check_names_and_combinations(config)


def _check_names_and_combinations(config) -> None:
  fraction = _get(config, "scenario.validation_fraction")
  if fraction is not None and not 0.0 <= fraction < 1.0:
    _refuse("scenario.validation_fraction", fraction, "the held-out share must be in [0, 1)",
            "a fraction in [0, 1)", 0.1)
  source = _get(config, "data.source")
  if source is not None and source not in DATA_SOURCES:
    raise ConfigError(f"unknown data.source '{source}'; use one of {', '.join(DATA_SOURCES)}")
  streams = source in ("arrayrecord", "tfds_stream") or (source == "auto" and _get(config, "data.record_dir"))
  if streams and (_get(config, "train.steps_per_dispatch") or 1) > 1:
    raise ConfigError("streamed data (data.source arrayrecord / tfds_stream, or data.record_dir set) cannot "
                      "be placed on the device whole; it needs train.steps_per_dispatch=1")
  split = _get(config, "eval.split")
  if split is not None and split not in EVAL_SPLITS:
    raise ConfigError(f"unknown eval.split '{split}'; use --config.eval.split=test or valid")
  if split == "valid" and not fraction:
    raise ConfigError("eval.split=valid needs held-out data; set --config.scenario.validation_fraction "
                      "(e.g. 0.1)")
  from lwcl.methods import METHODS  # pylint: disable=g-import-not-at-top  (jax; after the cheap checks)
  from lwcl.models import MODELS  # pylint: disable=g-import-not-at-top
  for key, names in (("model.name", MODELS), ("method.name", sorted(METHODS))):
    value = _get(config, key)
    if value is not None and value not in names:
      raise ConfigError(f"unknown {key} '{value}'; use one of {', '.join(names)}")


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


def _refuse(key: str, value, problem: str, wanted: str, example=None):
  example = f", e.g. --config.{key}={example}" if example is not None else ""
  raise ConfigError(f"bad config value {key}={value}: {problem}; give {wanted}{example}")
