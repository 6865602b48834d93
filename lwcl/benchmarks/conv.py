"""``bin/bench conv``: one convolution of lwcl's models, forward and forward + both gradients, under each
lowering (:mod:`lwcl.models.conv`), against the same run's matmul.

The convolutions (NHWC, 3x3, ``SAME``, stride 1, float32): the default ConvNet's first (64 x 28x28x1 -> 32)
and second (64 x 14x14x32 -> 64), and ResNet-20's three stages at batch 128 (32x32x16 -> 16, 16x16x32 -> 32,
8x8x64 -> 64). Lowerings: ``native`` (XLA's convolution), ``onednn`` (where lwcl's oneDNN library is built),
``patches`` and, for the first, ``direct`` (``direct`` has XLA's gradients here). Each is a ``jax.jit``
function of its own: the forward alone, and the forward with the input's and the kernel's gradients for a
given output cotangent (``jax.vjp``). Every (convolution, lowering, pass) and a ``--matmul`` square float32
matmul take turns in ``--rounds`` interleaved rounds of ``--calls`` calls each; the median of the rounds is
reported as milliseconds, GFLOP/s (``2 * B * Ho * Wo * 9 * C * O`` per pass; three passes with the
gradients) and the fraction of the matmul's GFLOP/s.

Usage: ``bin/bench conv [--rounds=5] [--calls=20] [--matmul=2048] [--json=FILE]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax

from lwcl.models import onednn
from lwcl.models.conv import direct_conv, onednn_conv, patch_conv

DN = ("NHWC", "HWIO", "NHWC")
# name -> (batch, side, in channels, out channels)
SHAPES = {"ConvNet conv1": (64, 28, 1, 32), "ConvNet conv2": (64, 14, 32, 64),
          "ResNet-20 stage 1": (128, 32, 16, 16), "ResNet-20 stage 2": (128, 16, 32, 32),
          "ResNet-20 stage 3": (128, 8, 64, 64)}
LOWERED = {"native": lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN),
           "onednn": lambda x, w: onednn_conv(x, w, (1, 1), "SAME", dimension_numbers=DN),
           "patches": lambda x, w: patch_conv(x, w, (1, 1), "SAME", dimension_numbers=DN),
           "direct": lambda x, w: direct_conv(x, w, (1, 1), "SAME")}


def _timer(fn, args, calls: int):
  jax.block_until_ready(fn(*args))  # compile and warm up

  def seconds_per_call() -> float:
    tic = time.perf_counter()
    for _ in range(calls):
      out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - tic) / calls
  return seconds_per_call


def measure(rounds: int, calls: int, matmul: int, shapes: dict | None = None) -> dict:
  """``{'rows': [...], 'matmul_flops_per_s': ...}``: per (convolution, lowering, pass) the median
  milliseconds per call, GFLOP/s and fraction of the matmul's; ``shapes`` (default :data:`SHAPES`) maps a
  name to ``(batch, side, in channels, out channels)``."""
  lowerings = [n for n in LOWERED if n != "onednn" or onednn.unavailable_reason() is None]
  timers, flops = {}, {}
  for name, (b, side, c, o) in (shapes or SHAPES).items():
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x, w = jax.random.normal(kx, (b, side, side, c)), jax.random.normal(kw, (3, 3, c, o)) / (3 * c ** 0.5)
    g = jax.random.normal(kg, (b, side, side, o))
    for lowering in lowerings:
      if lowering == "direct" and 9 * c > 36:
        continue
      f = LOWERED[lowering]
      timers[(name, lowering, "forward")] = _timer(jax.jit(f), (x, w), calls)
      both = jax.jit(lambda x, w, g, f=f: (lambda y, vjp: (y, vjp(g)))(*jax.vjp(f, x, w)))
      timers[(name, lowering, "forward + gradients")] = _timer(both, (x, w, g), calls)
      flops[(name, lowering, "forward")] = 2.0 * b * side * side * 9 * c * o
      flops[(name, lowering, "forward + gradients")] = 3 * flops[(name, lowering, "forward")]
  a = jnp.ones((matmul, matmul), jnp.float32)
  timers["matmul"] = _timer(jax.jit(lambda a: a @ a), (a,), max(1, calls // 4))
  samples = {key: [] for key in timers}
  for _ in range(rounds):
    for key, timer in timers.items():
      samples[key].append(timer())
  sec = {key: statistics.median(v) for key, v in samples.items()}
  peak = 2.0 * matmul ** 3 / sec["matmul"]
  rows = [{"convolution": k[0], "lowering": k[1], "pass": k[2], "ms": 1e3 * sec[k],
           "gflops_per_s": flops[k] / sec[k] / 1e9, "of_matmul": flops[k] / sec[k] / peak}
          for k in timers if k != "matmul"]
  return {"rows": rows, "matmul_flops_per_s": peak}


def main(argv: list) -> None:
  parser = argparse.ArgumentParser(prog="bin/bench conv", description=__doc__.split("\n\n")[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--calls", type=int, default=20)
  parser.add_argument("--matmul", type=int, default=2048)
  parser.add_argument("--json", default="")
  args = parser.parse_args(argv)
  if min(args.rounds, args.calls, args.matmul) < 1:
    parser.error("--rounds, --calls and --matmul must be >= 1")
  result = measure(args.rounds, args.calls, args.matmul)
  reason = onednn.unavailable_reason()
  print(f"\nconvolutions, {jax.devices()[0].platform}; median of {args.rounds} interleaved rounds of {args.calls} "
        f"calls; {args.matmul}^2 float32 matmul: {result['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s"
        + (f"; oneDNN not measured: {reason}" if reason else "") + "\n")
  print("| convolution | lowering | pass | ms | GFLOP/s | of matmul |\n|---|---|---|---|---|---|")
  for r in result["rows"]:
    print(f"| {r['convolution']} | {r['lowering']} | {r['pass']} | {r['ms']:.3f} | {r['gflops_per_s']:.1f} | "
          f"{100 * r['of_matmul']:.1f}% |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)
