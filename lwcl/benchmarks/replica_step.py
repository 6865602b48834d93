"""``bin/bench replica-step``: the compiled train step of one run against the same step of R replicas.

Builds a config's :class:`~lwcl.engine.build.Setup` for a single run and for ``--replicas`` seeds as replicas
(``jax.vmap`` over a leading axis R, as ``num_seeds``, ``num_orders`` and sweeps run), and times
``--steps`` calls of each train step on one batch of the first task (stacked ``[R, B, ...]`` for the
replicas), after warm-up calls, interleaved over ``--rounds`` rounds (medians reported). The baseline of
the same run: a plain jitted matmul ``[R * B, d_in] x [d_in, d_out]`` with the shape of the model's first
dense layer (``model.hidden[0]``), as GFLOP/s. The ratio that matters for replicas is per replica: R replicas'
step over R single steps (1.0 = no gain from one program; 1/R = replicas free).

Usage: ``bin/bench replica-step [--config=FILE[:ARG]] [--method=NAME] [--replicas=10] [--steps=50]
[--rounds=3] [--json=FILE]``. Default config: ``configs/nai_split_fashion_mnist.py`` (MLP 256-256, batch 64).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lwcl.config import files as config_files
from lwcl.engine.build import Setup
from lwcl.runs.axis import ReplicaAxis

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "nai_split_fashion_mnist.py")


def _config(spec: str, method: str):
  path, _, arg = spec.partition(":")
  module = config_files.load(path)
  c = module.get_config(arg) if arg else module.get_config()
  if method:
    c.method.name = method
  c.train.progress = False
  c.lock()
  return c


def step_timer(config, axis: ReplicaAxis):
  """``(timer, image_size)``: ``timer(n)`` is the seconds per step over ``n`` calls of ``axis``'s compiled
  train step (one batch of task 0's training data, the same for every replica; the state carried from call
  to call), ``image_size`` the number of values in one image (the first dense layer's input)."""
  setup = Setup.build(config, axis)
  data, B = setup.train_data[0], config.train.batch_size
  batch = {"image": data.images[:B], "label": data.labels[:B].astype(np.int32), "task": np.zeros(B, np.int32)}
  if setup.fns.is_greedy:
    batch["phase"] = np.zeros(B, np.int32)
  if axis.batched:
    batch = jax.tree.map(lambda x: np.stack([x] * axis.size), batch)
  lr = setup.learning_rates_of_task(setup.steps_per_epoch[0])[..., 0]
  state = [setup.initial_state()]

  def seconds_per_step(n: int) -> float:
    jax.block_until_ready(state[0])
    tic = time.perf_counter()
    for _ in range(n):
      state[0] = setup.steps.train_step(state[0], batch, lr)[0]
    jax.block_until_ready(state[0])
    return (time.perf_counter() - tic) / n

  seconds_per_step(5)  # compile and warm up
  return seconds_per_step, int(np.prod(setup.scenario.image_shape))


def matmul_timer(rows: int, d_in: int, d_out: int, dtype=jnp.float32):
  """A function ``n -> seconds`` of one jitted ``[rows, d_in] x [d_in, d_out]`` matmul in ``dtype``
  (float32 by default; standard-normal inputs)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (rows, d_in)).astype(dtype)
  w = jax.random.normal(jax.random.PRNGKey(1), (d_in, d_out)).astype(dtype)
  f = jax.jit(jnp.matmul)
  f(x, w).block_until_ready()

  def seconds(n: int) -> float:
    tic = time.perf_counter()
    for _ in range(n):
      out = f(x, w)
    out.block_until_ready()
    return (time.perf_counter() - tic) / n

  return seconds


def main(argv: list) -> None:
  """Parses ``argv`` (the arguments after ``replica-step``), times the steps and prints the ratios."""
  parser = argparse.ArgumentParser(prog="bin/bench replica-step", description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default=DEFAULT_CONFIG, help="config file, optionally FILE:ARG")
  parser.add_argument("--method", default="", help="method.name (default: the config's)")
  parser.add_argument("--replicas", type=int, default=10, help="R")
  parser.add_argument("--steps", type=int, default=50, help="timed calls per round")
  parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians reported)")
  parser.add_argument("--json", default="", help="also write the numbers to this file")
  args = parser.parse_args(argv)
  config = _config(args.config, args.method)
  R, B = args.replicas, config.train.batch_size
  single_step, d_in = step_timer(config, ReplicaAxis.single(config.seed))
  d_out = int(config.model.hidden[0])  # the MLP's first dense layer: [d_in, d_out]
  timers = {"single": single_step,
            f"{R} replicas": step_timer(config, ReplicaAxis.of_seeds([config.seed + r for r in range(R)]))[0],
            "matmul": matmul_timer(R * B, d_in, d_out)}
  times = {k: [] for k in timers}
  for _ in range(args.rounds):
    for name, timer in timers.items():
      times[name].append(timer(args.steps))
  med = {k: statistics.median(v) for k, v in times.items()}
  single, many = med["single"], med[f"{R} replicas"]
  gflops = 2 * R * B * d_in * d_out / med["matmul"] / 1e9
  out = {"config": args.config, "method": config.method.name, "replicas": R, "batch": B,
         "seconds_per_step": times, "median_ms": {k: 1e3 * v for k, v in med.items()},
         "per_replica_ratio": many / (R * single), "matmul_gflops": gflops}
  print(f"{config.method.name}: single step {1e3 * single:.2f} ms; {R} replicas {1e3 * many:.2f} ms "
        f"({many / single:.2f}x one step for {R}x the work; per replica {out['per_replica_ratio']:.2f} of a "
        f"single step); baseline matmul [{R * B}, {d_in}] x [{d_in}, {d_out}]: {gflops:.0f} GFLOP/s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
