"""``bin/bench layerwise``: peak temporary memory of one compiled training step, backprop vs local.

For CIFAR ResNets (default 56 and 110) at batch 128 on 32x32x3 inputs, builds the runner's train step
(:func:`lwcl.engine.steps.make_train_step`, fine-tuning, SGD with momentum and weight decay) in ``backprop`` mode
and in ``local`` mode (cut into ``--cuts`` local blocks with linear auxiliary heads), compiles it for the
default backend without running it (``jax.jit(step).lower(...).compile()``) and reports
``memory_analysis().temp_size_in_bytes``: the buffers XLA allocates for intermediates (activations,
residuals, gradients), not the arguments (parameters, optimizer state, batch). ``local (autodiff)`` is the
local loss differentiated by plain reverse mode, for comparison with the block-by-block step that
``local`` uses (see :class:`lwcl.layerwise.fns.LayerwiseFns`).

Usage: ``bin/bench layerwise [--depths=56,110] [--batch=128] [--cuts=even:9,block] [--json=FILE]``.
The ratio column is local / backprop of the same depth; the target of issue 3 is <= 1/3 for ResNet-110
with >= 9 local blocks.

``bin/bench layerwise --config=SPEC [--config=SPEC ...] [--set KEY=VALUE ...]`` measures instead the train
step that ``bin/run --config=SPEC`` compiles (:func:`config_step_memory`: its data set, input shape, batch
size, model, lowering, mode and method), e.g. the depth study's
``--config=configs/layerwise_fmnist_depth.py:resnet56,local``; the ratio there is to the backprop config of
the same network among those given.
"""

from __future__ import annotations

import argparse
import json
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lwcl import layerwise
from lwcl.core.state import TrainState
from lwcl.data.pipeline import Preprocessor
from lwcl.engine.steps import make_train_step
from lwcl.methods import FineTune
from lwcl.models import build_model

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


def _lw_config(mode: str, cuts: str, local_step: str = "segmented") -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "mode": mode, "readouts": False, "cuts": cuts, "aux_head": "linear", "aux_pool": 2, "aux_convs": 2,
      "aux_width": 0, "aux_hidden": (256,), "local_step": local_step, "greedy_epochs_per_block": 0,
      "linear_probe": {"enabled": False, "train_examples": 1, "steps": 1, "learning_rate": 0.1,
                       "l2": 0.0, "pool": 2}})


def step_memory(depth: int, batch: int, mode: str, cuts: str = "block", local_step: str = "segmented",
                strides: str = "standard", model: dict | None = None, image_shape: tuple = IMAGE_SHAPE) -> dict:
  """Compiles one train step and returns its memory analysis (nothing is executed).

  Args:
    depth: CIFAR ResNet depth (6n+2); ``model``: another ``config.model`` dict instead (e.g. an MLP).
    batch: batch size; ``mode``, ``cuts``, ``local_step``: ``config.layerwise`` values; ``strides``: the
      ResNet's ``model.strides``; ``image_shape``: (H, W, C) of the uint8 inputs.
  Returns:
    dict with ``temp_bytes`` (peak temporary memory), ``argument_bytes``, ``output_bytes`` and
    ``local_blocks`` (K; 1 for backprop).
  """
  model_config = ml_collections.ConfigDict(model or {"name": "resnet", "depth": depth, "width": 0,
                                                     "strides": strides, "stem_stride": 1})
  scenario = types.SimpleNamespace(num_heads=1, output_dim=NUM_CLASSES)
  model = build_model(model_config, scenario)
  preprocess = Preprocessor((0.5,) * 3, (0.25,) * 3, random_crop=True, crop_padding=4, horizontal_flip=True)
  fns = layerwise.build_fns(_lw_config(mode, cuts, local_step), model, preprocess,
                            np.ones((1, NUM_CLASSES), bool), image_shape, 1, NUM_CLASSES)
  tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9))
  tx = optax.with_extra_args_support(tx)
  method = FineTune(None, scenario, fns)

  def init_state():
    params, stats = fns.init(jax.random.PRNGKey(0), image_shape)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                      opt_state=tx.init(params), method_state={}, rng=jax.random.PRNGKey(1))

  state = jax.eval_shape(init_state)
  batch_spec = {"image": jax.ShapeDtypeStruct((batch,) + tuple(image_shape), jnp.uint8),
                "label": jax.ShapeDtypeStruct((batch,), jnp.int32),
                "task": jax.ShapeDtypeStruct((batch,), jnp.int32)}
  step = jax.jit(make_train_step(fns, tx, method), donate_argnums=(0,))
  analysis = step.lower(state, batch_spec).compile().memory_analysis()
  return {"temp_bytes": int(analysis.temp_size_in_bytes),
          "argument_bytes": int(analysis.argument_size_in_bytes),
          "output_bytes": int(analysis.output_size_in_bytes),
          "local_blocks": fns.local_blocks}


def config_step_memory(config) -> dict:
  """Compiles the train step of the single run ``config`` describes and returns its memory analysis.

  The step is the one :class:`lwcl.engine.build.Setup` builds for ``bin/run`` (nothing is executed, no state is
  allocated: the state and batch are shapes), on the default backend, so its lowering, mode and method are
  the run's own. Loads the config's data set (for the input shape and dtype).

  Returns:
    dict with ``temp_bytes``, ``argument_bytes``, ``output_bytes`` (as :func:`step_memory`) and
    ``local_blocks`` (K; in backprop mode with readouts, the blocks whose heads read detached features).
  Raises:
    ConfigError / DataError: as :meth:`lwcl.engine.build.Setup.build` (a bad config value, a missing data set).
  """
  from lwcl.engine.build import Setup  # pylint: disable=g-import-not-at-top
  from lwcl.engine.dispatch import train_batch_spec  # pylint: disable=g-import-not-at-top  (loads data sets)
  setup = Setup.build(config)
  lowered = setup.steps.train_step.lower(jax.eval_shape(setup.initial_state), train_batch_spec(setup),
                                         jax.ShapeDtypeStruct((), jnp.float32))
  analysis = lowered.compile().memory_analysis()
  return {"temp_bytes": int(analysis.temp_size_in_bytes),
          "argument_bytes": int(analysis.argument_size_in_bytes),
          "output_bytes": int(analysis.output_size_in_bytes),
          "local_blocks": setup.fns.local_blocks}


def _config_rows(specs, overrides) -> list:
  """:func:`config_step_memory` of every spec, printed as a markdown table; ratio to the backprop spec of
  the same model (name and depth) among ``specs``."""
  from lwcl.cli.compare import load_config  # pylint: disable=g-import-not-at-top
  configs = [load_config(s, overrides) for s in specs]  # every bad spec before the first compile
  network = lambda c: (c.model.name, c.model.depth)  # noqa: E731
  print(f"peak temporary memory of one compiled train step, backend {jax.default_backend()}\n")
  print("| config | mode | local blocks | temp MiB | argument MiB | ratio to backprop |")
  print("| --- | --- | --- | --- | --- | --- |", flush=True)
  rows = []
  for spec, config in zip(specs, configs):
    r = config_step_memory(config)
    rows.append({"config": spec, "mode": config.layerwise.mode, "network": network(config), **r})
  for row in rows:
    base = [b for b in rows if b["network"] == row["network"] and b["mode"] == "backprop"]
    row["ratio"] = row["temp_bytes"] / base[0]["temp_bytes"] if base else None
    ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
    print(f"| {row['config']} | {row['mode']} | {row['local_blocks']} | {row['temp_bytes'] / 2 ** 20:.1f} | "
          f"{row['argument_bytes'] / 2 ** 20:.1f} | {ratio} |", flush=True)
  return rows


def main(argv) -> None:
  parser = argparse.ArgumentParser(prog="bin/bench layerwise", description=__doc__.splitlines()[0])
  parser.add_argument("--depths", default="56,110", help="CIFAR ResNet depths (6n+2), comma-separated")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--cuts", default="even:9,block", help="layerwise.cuts values for local mode")
  parser.add_argument("--no-autodiff", action="store_true", help="skip the plain reverse-mode local step")
  parser.add_argument("--json", default="", help="also write the rows to this JSON file")
  parser.add_argument("--config", action="append", default=[], metavar="SPEC",
                      help="measure the train step of bin/run --config=SPEC instead (repeatable)")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="with --config: override a config key in every config (repeatable)")
  args = parser.parse_args(argv)
  if args.config:
    from lwcl.errors import LwclError, exit_with  # pylint: disable=g-import-not-at-top
    try:
      rows = _config_rows(args.config, args.set)
    except LwclError as e:
      exit_with(e)
  else:
    rows = _depth_rows(args)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


def _depth_rows(args) -> list:
  """The CIFAR ResNet rows of ``--depths`` x (backprop, local per ``--cuts``), printed as a markdown table."""
  rows = []
  mib = 2.0 ** 20
  print(f"peak temporary memory of one compiled train step, batch {args.batch}, {IMAGE_SHAPE} inputs, "
        f"backend {jax.default_backend()}\n", flush=True)
  print("| model | mode | cuts | local blocks | temp MiB | ratio to backprop |")
  print("| --- | --- | --- | --- | --- | --- |", flush=True)
  for depth in [int(d) for d in args.depths.split(",") if d.strip()]:
    base = step_memory(depth, args.batch, "backprop")
    runs = [("backprop", "-", "segmented", base)]
    for cuts in [c for c in args.cuts.split(",") if c.strip()]:
      runs.append(("local", cuts, "segmented", step_memory(depth, args.batch, "local", cuts)))
      if not args.no_autodiff:
        runs.append(("local (autodiff)", cuts, "autodiff",
                     step_memory(depth, args.batch, "local", cuts, "autodiff")))
    for mode, cuts, local_step, r in runs:
      ratio = r["temp_bytes"] / max(base["temp_bytes"], 1)
      print(f"| ResNet-{depth} | {mode} | {cuts} | {r['local_blocks']} | {r['temp_bytes'] / mib:.1f} | "
            f"{ratio:.3f} |", flush=True)
      rows.append({"depth": depth, "mode": mode, "cuts": cuts, "local_step": local_step, "ratio": ratio, **r})
  return rows
