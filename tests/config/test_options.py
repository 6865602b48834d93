"""Components' option declarations (issue 28): configs/default.py against them, the one validator
(every kind of rule is one line), ``--options``, and the model and scenario registries."""

import dataclasses
import subprocess
import sys
import types

import pytest

from lwcl.config import options as config_options
from lwcl.config import types as config_check
from lwcl.config import values as config_values
from lwcl.core.options import Option
from lwcl.errors import ConfigError
from lwcl.models import MODELS, build_model

from helpers import ROOT, assert_one_line_error, small_config


def _flat(node, prefix=""):
  for k, v in node.items():
    if hasattr(v, "items"):
      yield from _flat(v, prefix + k + ".")
    else:
      yield prefix + k, v


def test_default_config_has_exactly_the_declared_keys_and_defaults():
  """configs/default.py holds exactly the union of every component's declarations (methods included),
  with the declared defaults (same type: a float key's default is a float)."""
  defaults = dict(_flat(config_check.default_reference()))
  declared = config_options.declared()
  assert sorted(defaults) == sorted(declared)
  for key, option in declared.items():
    assert (defaults[key], type(defaults[key])) == (option.default, option.type), key


def test_a_key_declared_twice_must_agree_on_default_and_bounds(monkeypatch):
  widths = [o for opts in config_options.components().values() for o in opts if o.key == "model.width"]
  assert len({o.doc for o in widths}) == 3 and {o.minimum for o in widths} == {0}  # one meaning per model
  assert any("0 = 16" in o.doc for o in widths) and any("0 = 20" in o.doc for o in widths)
  bad = dataclasses.replace(MODELS["mlp"], options=(Option("model.width", 0, "x", minimum=1),))
  monkeypatch.setitem(MODELS, "mlp", bad)
  with pytest.raises(ValueError, match="model.width"):
    config_options.declared()


@pytest.mark.parametrize("overrides,fragments", [
    # bounds of a count (the former AT_LEAST table)
    ({"train.batch_size": 0}, ["bad config value train.batch_size=0: must be at least 1", "e.g. --config."]),
    ({"data.stream.workers": -1}, ["data.stream.workers=-1: must be at least 0"]),
    ({"layerwise.aux_pool": -1}, ["layerwise.aux_pool=-1: must be at least 0"]),
    ({"model.shallow_convs": 0}, ["model.shallow_convs=0: must be at least 1"]),
    ({"method.importance_batch_size": 0}, ["method.importance_batch_size=0: must be at least 1"]),
    # strict bound, interval, sizes, finite
    ({"optimizer.learning_rate": 0.0}, ["optimizer.learning_rate=0.0: the learning rate must be positive"]),
    ({"scenario.validation_fraction": 1.0}, ["scenario.validation_fraction=1.0: must be in [0, 1)"]),
    ({"model.conv_stages": ((8,), (0,))}, ["model.conv_stages", "every layer size must be at least 1",
                                          "((32,),(64,))"]),
    ({"scenario.angles": (0.0, float("nan"))}, ["scenario.angles", "nan is not a finite number"]),
    ({"optimizer.momentum": float("inf")}, ["optimizer.momentum=inf: inf is not a finite number"]),
    # issue 32: values that make training meaningless (signs, zero divisors, factors in [0, 1))
    ({"optimizer.momentum": -5.0}, ["optimizer.momentum=-5.0: must be in [0, 1)",
                                    "e.g. --config.optimizer.momentum=0.9"]),
    ({"optimizer.momentum": 1.0}, ["optimizer.momentum=1.0: must be in [0, 1)"]),
    ({"optimizer.b1": -0.1}, ["optimizer.b1=-0.1: must be in [0, 1)"]),
    ({"optimizer.b2": 1.0}, ["optimizer.b2=1.0: must be in [0, 1)"]),
    ({"optimizer.eps": 0.0}, ["optimizer.eps=0.0: the eps must be positive"]),
    ({"optimizer.schedule": "step", "optimizer.decay_every_epochs": 0},
     ["optimizer.decay_every_epochs=0: must be at least 1"]),
    ({"optimizer.decay_factor": 0.0}, ["optimizer.decay_factor=0.0: the decay factor must be positive"]),
    ({"optimizer.weight_decay": -1e-4}, ["optimizer.weight_decay=-0.0001: must be at least 0"]),
    ({"optimizer.grad_clip_norm": -1.0}, ["optimizer.grad_clip_norm=-1.0: must be at least 0"]),
    ({"optimizer.warmup_epochs": -1.0}, ["optimizer.warmup_epochs=-1.0: must be at least 0"]),
    ({"data.augment.random_crop": True, "data.augment.crop_padding": -3},
     ["data.augment.crop_padding=-3: must be at least 0"]),
    ({"seed": -1}, ["bad config value seed=-1: must be in [0, 4294967296)"]),
    ({"scenario.seed": -1}, ["scenario.seed=-1: must be at least 0"]),
    ({"scenario.order_seed": -2}, ["scenario.order_seed=-2: must be at least -1"]),
    ({"scenario.max_angle": 0.0}, ["scenario.max_angle=0.0: the max angle must be positive"]),
    ({"model.stem_stride": 0}, ["model.stem_stride=0: must be at least 1"]),
    ({"model.depth": 2}, ["model.depth=2: must be at least 8"]),
    ({"devices.num_processes": -1}, ["devices.num_processes=-1: must be at least 0"]),
    ({"devices.process_id": -2}, ["devices.process_id=-2: must be at least -1"]),
    ({"layerwise.linear_probe.learning_rate": 0.0}, ["linear_probe.learning_rate=0.0: the learning rate must be "
                                                     "positive"]),  # enabled or not, as every key
    # choices
    ({"scenario.kind": "shuffled"}, ["unknown scenario.kind 'shuffled'; use one of split, permuted, rotated"]),
    ({"model.conv_impl": "im2col"}, ["unknown model.conv_impl 'im2col'; use one of auto"]),
    ({"model.dtype": "float16"}, ["unknown model.dtype 'float16'; use one of float32, bfloat16"]),
    ({"optimizer.schedule": "linear"}, ["unknown optimizer.schedule 'linear'"]),
    ({"eval.split": "train"}, ["unknown eval.split 'train'; use one of test, valid"]),
    ({"method.name": "ewcc"}, ["unknown method.name 'ewcc'; use one of agem"]),
    # combinations
    ({"data.source": "arrayrecord", "train.steps_per_dispatch": 2}, ["train.steps_per_dispatch=1"]),
    ({"eval.split": "valid"}, ["eval.split=valid needs held-out data"]),
    ({"scenario.max_tasks": 2, "scenario.num_tasks": 3}, ["scenario.max_tasks=2 is smaller than num_tasks=3"]),
    ({"scenario.kind": "rotated", "scenario.angles": (0.0, 90.0)}, ["lists 2 angles for 5 tasks"]),
    ({"layerwise.aux_head": "cnn", "layerwise.aux_convs": 0}, ["layerwise.aux_convs must be >= 1"]),
    ({"layerwise.linear_probe.enabled": True, "layerwise.linear_probe.l2": -1.0}, ["layerwise.linear_probe"]),
    ({"sweep.key": "method.strength", "sweep.candidates": (1.0,), "num_orders": 2},
     ["sweep.key cannot be combined with num_orders"]),
    ({"sweep.key": "method.strength", "sweep.candidates": (1.0,)}, ["a sweep selects on held-out data"]),
    ({"sweep.key": "method.strength", "scenario.validation_fraction": 0.1}, ["sweep.candidates is empty"]),
    # a sweep's candidates: each once (one folder each), of a numeric key, whole numbers for an integer key
    ({"sweep.key": "method.strength", "scenario.validation_fraction": 0.1, "sweep.candidates": (0.01, 1.0, 0.01)},
     ["sweep.candidates lists 0.01 more than once: (0.01, 1, 0.01)", "give each candidate once"]),
    ({"sweep.key": "train.batch_size", "scenario.validation_fraction": 0.1, "sweep.candidates": (32.9, 64.7)},
     ["(32.9, 64.7) for the integer key train.batch_size: 32.9 is not a whole number (it would train with 32)",
      "--config.sweep.candidates='(32., 64.)'"]),
    ({"sweep.key": "train.batch_size", "scenario.validation_fraction": 0.1, "sweep.candidates": (32.0000001,)},
     ["32.0000001 is not a whole number"]),
    ({"sweep.key": "method.name", "scenario.validation_fraction": 0.1, "sweep.candidates": (1.0,)},
     ["sweep.key 'method.name' is not a numeric config key"]),
    ({"sweep.key": "train.progress", "scenario.validation_fraction": 0.1, "sweep.candidates": (0.0, 1.0)},
     ["sweep.key 'train.progress' is not a numeric config key"]),
    ({"sweep.key": "optimizer.nope", "scenario.validation_fraction": 0.1, "sweep.candidates": (1.0,)},
     ["sweep.key 'optimizer.nope' is not a numeric config key"]),
])
def test_each_kind_of_rule_is_one_line(overrides, fragments):
  cfg = small_config(**{"scenario.num_tasks": 5, **overrides})
  with pytest.raises(ConfigError) as info:
    config_values.check_values(cfg)
  message = str(info.value)
  assert "\n" not in message and "; " in message, message
  for f in fragments:
    assert f in message, message


def test_valid_values_pass():
  config_values.check_values(config_check.default_reference())
  config_values.check_values(small_config(**{"sweep.key": "train.batch_size", "scenario.validation_fraction": 0.1,
                                             "sweep.candidates": (32.0, 64.0)}))
  config_values.check_values(small_config(**{"scenario.kind": "rotated", "scenario.num_tasks": 2,
                                             "scenario.angles": (0.0, 90.0), "scenario.max_tasks": 2,
                                             "layerwise.aux_head": "cnn", "model.width": 8}))


@pytest.mark.e2e  # subprocesses of python: the full suite, not --fast
def test_options_flag_prints_declarations_and_refuses_unknown_names():
  run = lambda *a: subprocess.run([sys.executable, "-m", "lwcl.main", *a], capture_output=True, text=True,
                                  cwd=ROOT, timeout=300)
  proc = run("--options", "resnet")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "model.width (int, default 0, >= 0): resnet:" in proc.stdout and "0 = 16" in proc.stdout
  proc = run("--options=model")
  assert proc.returncode == 0 and "0 = 20" in proc.stdout and "model.name (str" in proc.stdout, proc.stdout
  assert_one_line_error(run("--options=modle"), "--options=modle names no config section", "use one of")


def test_every_registered_model_and_scenario_builds():
  for name in MODELS:
    cfg = small_config(**{"model.name": name, "model.depth": 8, "model.conv_impl": "native"})
    model = build_model(cfg.model, types.SimpleNamespace(num_heads=1, output_dim=10))
    assert model.blocks and model.pool in ("flatten", "avg"), name
  from lwcl.data import scenarios
  assert set(scenarios.SCENARIOS) == set(config_options.declared()["scenario.kind"].choices)
