"""Mixed precision on this machine: the compiled train step of a config in float32 and in bfloat16
(``model.dtype``), interleaved, with a float32 and a bfloat16 matmul as the same run's baseline.

For docs/results.md, "Mixed precision (bfloat16) on CPU (issue 30, item 3)". Each case is a
:class:`~lwcl.engine.build.Setup` timed by :func:`lwcl.benchmarks.replica_step.step_timer` (one batch of the
first task, the state carried from call to call, after warm-up calls); the cases run one after another in
each of ``--rounds`` rounds and the medians are reported, so a load that changes slowly affects them alike.

Usage: ``python docs/studies/mixed_precision_step.py [--steps=30] [--rounds=3] [--replicas=3] [--json=FILE]``
(from the repository root, ``PYTHONPATH=.``). Cases: the default ConvNet (``configs/default.py``) as one
run and as ``--replicas`` seeds in one vmapped program (what ``--config.num_seeds`` runs), each in float32
with ``model.conv_impl=auto`` (oneDNN's convolutions on CPU when built) and ``native`` (XLA's), and in
bfloat16 (``auto``: XLA's); the GEM-protocol MLP (``configs/gem_permuted_fashion_mnist.py:gem``) in both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import jax.numpy as jnp

from lwcl.benchmarks.replica_step import matmul_timer, step_timer
from lwcl.config import files as config_files
from lwcl.runs.axis import ReplicaAxis

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _config(spec: str, **overrides):
  path, _, arg = spec.partition(":")
  module = config_files.load(os.path.join(ROOT, path))
  c = module.get_config(arg) if arg else module.get_config()
  c.train.progress = False
  for key, value in overrides.items():
    section, name = key.split(".")
    c[section][name] = value
  c.lock()
  return c


def _matmul(n: int, dtype):
  """``steps -> seconds`` of one jitted ``[n, n] x [n, n]`` matmul in ``dtype``."""
  return matmul_timer(n, n, n, dtype)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=30, help="timed calls per case and round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--replicas", type=int, default=3)
  parser.add_argument("--json", default="")
  args = parser.parse_args()
  R = args.replicas
  cases = {}
  for dtype, impl in (("float32", "auto"), ("float32", "native"), ("bfloat16", "auto")):
    config = _config("configs/default.py", **{"model.dtype": dtype, "model.conv_impl": impl})
    cases[f"convnet {dtype} {impl}"] = step_timer(config, ReplicaAxis.single(0))[0]
    cases[f"convnet x{R} {dtype} {impl}"] = step_timer(config, ReplicaAxis.of_seeds(list(range(R))))[0]
  for dtype in ("float32", "bfloat16"):
    config = _config("configs/gem_permuted_fashion_mnist.py:gem", **{"model.dtype": dtype})
    cases[f"gem mlp {dtype}"] = step_timer(config, ReplicaAxis.single(0))[0]
  for dtype in (jnp.float32, jnp.bfloat16):
    cases[f"matmul 1024 {jnp.dtype(dtype).name}"] = _matmul(1024, dtype)
  times = {k: [] for k in cases}
  for _ in range(args.rounds):
    for name, timer in cases.items():
      times[name].append(timer(args.steps))
  med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
  for name, ms in med.items():
    extra = f"  ({2 * 1024 ** 3 / ms / 1e6:.0f} GFLOP/s)" if name.startswith("matmul") else ""
    print(f"{name:32s} {ms:9.3f} ms{extra}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"median_ms": med, "seconds": times, "steps": args.steps, "replicas": R,
                 "load": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
  main()
