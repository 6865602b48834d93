"""Per-step cost of the projection methods, as ratios to a fine-tuning step measured in the same run.

    bin/bench projection [--old-tasks=1,5,10,19] [--steps=50] [--stream-tasks=20] [--json=PATH]

Setting: the GEM protocol's network and batches (MLP 2x100 on 28x28x1 inputs, one 10-way head, minibatches
of 10, 256 memories per task, plain SGD), with ``n`` old tasks whose memories are full (so every method does
its full work) and the current task ``n``. Each method's whole jitted train step is timed: the current
gradient, the old-task gradients on the memory (GEM and LGD: every old task's 256 examples, one ``vmap``;
A-GEM: one reference batch of 256 from the union), the projection, the SGD update and the memory write.

Methods: fine-tuning (the baseline), A-GEM, GEM with its dual QP solved on the device inside the jitted step
(``lwcl.methods.projection``), GEM with the QP solved on the host by quadprog every step through
``jax.pure_callback`` (what the reference implementations do: ``project2cone2`` ships the gradients to the
CPU, with its ``eps = 1e-3`` ridge, in float64), and LGD (layer-wise). A last column times the host QP's
own NumPy/quadprog work without the round trip (a lower bound for the host path). A second table
(``--stream-tasks``) times GEM and LGD at task ``n`` of a longer stream, with ``method.memory_grad_chunk``
0 (every memory slot's gradient, one vmap) and 1 (the ``n`` old tasks' only, one at a time). Prints markdown tables;
the ratios are the point, absolute times depend on the machine. The methods take turns in interleaved
rounds and medians are reported, but on a small shared CPU machine the callback's thread hand-off latency
varies from run to run; compare within one table.
"""

from __future__ import annotations

import os

# The host QP's NumPy/OpenBLAS threads would otherwise spin against XLA's CPU threads on a CPU-only machine
# (measured: a 1 x 90k matrix-vector product taking 5-9 ms instead of 0.1 ms), charging the host solver
# for contention rather than for its work. Must be set before NumPy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import json  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from lwcl import methods  # noqa: E402
from lwcl.core.model_fns import ModelFns  # noqa: E402
from lwcl.core.state import TrainState  # noqa: E402
from lwcl.data.pipeline import Preprocessor  # noqa: E402
from lwcl.engine.steps import make_train_step  # noqa: E402
from lwcl.methods import memory as memory_lib  # noqa: E402
from lwcl.models.heads import TaskHeads  # noqa: E402
from lwcl.models.mlp import mlp_blocks  # noqa: E402
from lwcl.models.network import Network  # noqa: E402

IMAGE_SHAPE = (28, 28, 1)
BATCH = 10
MEMORY = 256
MARGIN = 0.5


def _host_qp(g: np.ndarray, G: np.ndarray, mask: np.ndarray, margin: float, eps: float) -> np.ndarray:
  """GEM's reference ``project2cone2`` (quadprog on the dual, float64, ridge ``eps``), when violated."""
  import quadprog  # pylint: disable=g-import-not-at-top  (benchmark-only dependency)
  g, G, mask = np.asarray(g), np.asarray(G), np.asarray(mask, bool)  # the callback receives jax Arrays
  G = G[mask].astype(np.float64)
  g64 = g.astype(np.float64)
  if G.shape[0] == 0 or not np.any(G @ g64 < 0):
    return g
  P = G @ G.T
  P = 0.5 * (P + P.T) + eps * np.eye(len(G))
  v = quadprog.solve_qp(P, -(G @ g64), np.eye(len(G)), np.full(len(G), margin))[0]
  return (G.T @ v + g64).astype(g.dtype)


def gem_host_qp(margin: float = MARGIN, eps: float = 1e-3) -> optax.GradientTransformationExtraArgs:
  """GEM with its QP solved on the host (quadprog) at every step, via ``jax.pure_callback``."""

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, ref_grads, ref_mask, **extra):
    del params, extra
    g, unravel = ravel_pytree(updates)
    G = jax.vmap(lambda r: ravel_pytree(r)[0])(ref_grads)
    out = jax.pure_callback(lambda a, b, m: _host_qp(a, b, m, margin, eps),
                            jax.ShapeDtypeStruct(g.shape, g.dtype), g, G, ref_mask,
                            vmap_method="sequential")
    return unravel(out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class GEMHostQP(methods.GEM):
  """GEM whose projection runs on the host (benchmark only)."""

  def transformation(self):
    return gem_host_qp(self.margin)


def _method(name: str, max_tasks: int, fns: ModelFns, chunk: int = 0):
  cfg = {"name": name, "memory_per_task": MEMORY, "memory_grad_chunk": chunk, "grouping": "auto",
         "gem_margin": MARGIN, "agem_ref_batch": 256, "lgd_threshold": 0.0, "lgd_top_k": 0,
         "lgd_margin": 0.0}
  scenario = types.SimpleNamespace(max_tasks=max_tasks, image_shape=IMAGE_SHAPE)
  cls = {"finetune": methods.FineTune, "agem": methods.AGEM, "gem": methods.GEM,
         "gem_host_qp": GEMHostQP, "lgd": methods.LGD}[name]
  return cls(cfg, scenario, fns)


class _Runner:
  """One method's compiled train step and state with ``old_tasks`` full old-task memories, training task
  ``old_tasks`` of a stream of ``stream_tasks`` (default ``old_tasks + 1``: every memory slot an old task's).
  A name ending in ``@N`` sets ``method.memory_grad_chunk = N`` (e.g. ``gem@1``)."""

  def __init__(self, name: str, old_tasks: int, seed: int = 0, stream_tasks: int | None = None):
    rng = np.random.default_rng(seed)
    max_tasks = stream_tasks or old_tasks + 1
    name, _, chunk = name.partition("@")
    model = Network(mlp_blocks((100, 100)), TaskHeads(1, 10, name="head"))
    fns = ModelFns(model, Preprocessor((0.0,), (1.0,)), np.ones((max_tasks, 10), bool))
    method = _method(name, max_tasks, fns, int(chunk or 0))
    tx = optax.chain(method.transformation(), optax.sgd(0.1))
    params, stats = fns.init(jax.random.PRNGKey(seed), IMAGE_SHAPE)
    method_state = method.init_state(params, stats)
    if isinstance(method_state, methods.EpisodicState):
      mem = method_state.memory
      for t in range(old_tasks):
        mem = memory_lib.add(mem, jnp.asarray(rng.integers(0, 256, (MEMORY,) + IMAGE_SHAPE), jnp.uint8),
                             jnp.asarray(rng.integers(0, 10, MEMORY), jnp.int32), t)
      method_state = method_state.replace(memory=mem)
    self.state = TrainState(jnp.zeros((), jnp.int32), params, stats, tx.init(params), method_state,
                            jax.random.PRNGKey(seed + 1))
    self.method = method
    self.step = jax.jit(make_train_step(fns, tx, method), donate_argnums=(0,))
    self.batches = [{"image": rng.integers(0, 256, (BATCH,) + IMAGE_SHAPE).astype(np.uint8),
                     "label": rng.integers(0, 10, BATCH).astype(np.int32),
                     "task": np.full(BATCH, old_tasks, np.int32)} for _ in range(8)]
    self.count = 0
    self.times(5)  # compile and warm up

  def times(self, steps: int) -> list:
    """Seconds of each of ``steps`` train steps, each timed to completion."""
    out = []
    for _ in range(steps):
      batch = self.batches[self.count % len(self.batches)]
      self.count += 1
      tic = time.perf_counter()
      self.state, metrics = self.step(self.state, batch)
      jax.block_until_ready((self.state, metrics))
      out.append(time.perf_counter() - tic)
    return out


def time_methods(names, old_tasks: int, steps: int, rounds: int = 5, stream_tasks: int | None = None) -> dict:
  """Median seconds per train step of each method with ``old_tasks`` full old-task memories (in a stream of
  ``stream_tasks``: :class:`_Runner`).

  The methods take turns, ``steps`` steps each, for ``rounds`` rounds, and the median over all their
  steps is reported, so drift and other processes sharing the machine affect every method alike.
  """
  runners = {name: _Runner(name, old_tasks, stream_tasks=stream_tasks) for name in names}
  samples = {name: [] for name in names}
  per_round = max(1, steps // rounds)
  for _ in range(rounds):
    for name, runner in runners.items():
      samples[name] += runner.times(per_round)
  return {name: float(np.median(v)) for name, v in samples.items()}


def time_host_qp_alone(old_tasks: int, steps: int, seed: int = 0) -> float:
  """Median seconds of the host QP's own work (:func:`_host_qp` on NumPy arrays of the MLP's size, with a
  violated constraint so quadprog runs), without the device round trip: a lower bound for the host path."""
  rng = np.random.default_rng(seed)
  p = 784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
  G = rng.standard_normal((old_tasks, p)).astype(np.float32)
  g = (-G.mean(0) + 0.1 * rng.standard_normal(p)).astype(np.float32)
  mask = np.ones(old_tasks, bool)
  times = []
  for _ in range(steps):
    tic = time.perf_counter()
    _host_qp(g, G, mask, MARGIN, 1e-3)
    times.append(time.perf_counter() - tic)
  return float(np.median(times))


def _cells(row: dict, names) -> list:
  """``'<ratio>x (<ms>)'`` of each of ``names`` against ``row['finetune']`` (seconds per step)."""
  return [f"{row[m] / row['finetune']:.1f}x ({1e3 * row[m]:.1f})" for m in names]


METHODS = ("finetune", "agem", "gem", "gem_host_qp", "lgd")
TITLES = {"agem": "A-GEM", "gem": "GEM (QP on device)", "gem_host_qp": "GEM (quadprog on host, every step)",
          "lgd": "LGD (layer-wise)"}
# The old tasks' memory gradients in a long stream: every slot in one vmap (chunk 0) or the old tasks' only.
CHUNKS = ("finetune", "gem", "gem@1", "lgd", "lgd@1")
CHUNK_TITLES = {"gem": "GEM, chunk 0", "gem@1": "GEM, chunk 1", "lgd": "LGD, chunk 0", "lgd@1": "LGD, chunk 1"}


def main(argv: list) -> None:
  parser = argparse.ArgumentParser(prog="bin/bench projection", description=__doc__.splitlines()[0])
  parser.add_argument("--old-tasks", default="1,5,10,19", help="comma-separated numbers of old tasks")
  parser.add_argument("--steps", type=int, default=50,
                      help="timed steps per method and setting (in 5 interleaved rounds)")
  parser.add_argument("--stream-tasks", type=int, default=20,
                      help="the second table's stream length (0: no second table)")
  parser.add_argument("--json", default="", help="also write the timings to this file")
  args = parser.parse_args(argv)
  counts = [int(n) for n in args.old_tasks.split(",") if n.strip()]
  if not counts or min(counts) < 1 or args.steps < 1:
    parser.error("--old-tasks needs integers >= 1 and --steps >= 1")
  if args.stream_tasks and args.stream_tasks <= max(counts):
    parser.error(f"--stream-tasks must exceed every --old-tasks count ({max(counts)}), or be 0")
  rows = {n: dict(time_methods(METHODS, n, args.steps), host_qp_alone=time_host_qp_alone(n, args.steps))
          for n in counts}
  device = jax.devices()[0]
  print(f"\nPer-step time relative to a fine-tuning step (same run), {device.platform} "
        f"({device.device_kind}), MLP 2x100, batch {BATCH}, {MEMORY} memories per task, "
        f"median of {args.steps} timed steps each (methods interleaved); ms per step in parentheses.\n")
  print("| old tasks | fine-tuning (ms) | " + " | ".join(TITLES[m] for m in METHODS[1:]) +
        " | host QP work alone, no round trip (ms) |")
  print("|---" * (len(METHODS) + 2) + "|")
  for n, r in rows.items():
    print(f"| {n} | {1e3 * r['finetune']:.2f} | " + " | ".join(_cells(r, METHODS[1:])) +
          f" | {1e3 * r['host_qp_alone']:.1f} |")
  streams = {}
  if args.stream_tasks:
    streams = {n: time_methods(CHUNKS, n, args.steps, stream_tasks=args.stream_tasks) for n in counts}
    k = args.stream_tasks - 1
    print(f"\nThe same, in a stream of {args.stream_tasks} tasks ({k} memory slots), at task n: "
          f"`method.memory_grad_chunk` 0 computes every slot's memory gradient (one vmap), 1 the n old "
          f"tasks' only (a loop).\n")
    print("| old tasks n | fine-tuning (ms) | " + " | ".join(CHUNK_TITLES[m] for m in CHUNKS[1:]) + " |")
    print("|---" * (len(CHUNKS) + 1) + "|")
    for n, r in streams.items():
      print(f"| {n} | {1e3 * r['finetune']:.2f} | " + " | ".join(_cells(r, CHUNKS[1:])) + " |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": f"{device.platform} {device.device_kind}", "steps": args.steps,
                 "seconds_per_step": {str(n): r for n, r in rows.items()},
                 "stream_tasks": args.stream_tasks,
                 "seconds_per_step_in_stream": {str(n): r for n, r in streams.items()}}, f, indent=1)
