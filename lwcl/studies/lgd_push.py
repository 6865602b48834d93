"""Why LGD's authors' push destabilizes long streams: the push's norm against the gradient's, per task.

    python -m lwcl.studies.lgd_push --config=configs/lgd_permuted_fashion_mnist.py:authors \\
        --tasks=20 --seed=0 --out=runs/lgd_push_authors

Runs the stream of ``--config`` (any LGD config; ``--tasks`` sets ``scenario.num_tasks``) and, at the start of
every task ``t >= 2`` (its first ``--batches`` minibatches, with the parameters and the episodic memory
left by task ``t - 1``), compares LGD's update rules on the same gradient ``g`` and the same old-task
gradients ``g_1..g_n`` (``n = t - 1``, one per old task, from the memory):

* ``equation``: the paper's rule (margin 0), ``g~_0``;
* ``sum``: the config's rule with the push along ``s = sum_k g_k`` (the authors' code);
* ``mean``: the same with the push along ``gbar = s / n``.

For each it records ``|g~|`` and the push ``|g~ - g~_0|`` (the part added by the margin), relative to
``|g|``, and the loss change on the old tasks' memory that a step of the run's learning rate along
``-g~`` makes to first order (``-lr <g~, gbar>``). The push along ``s`` has coefficient
``max(0, a / n + margin) * n`` on ``gbar`` (``lwcl.methods.projection.project_lgd``), so once the conflict ``a``
is small its norm grows like ``margin * n * |gbar|``: linearly with the number of old tasks.

Writes ``OUT/lgd_push.json`` (per task: mean over the batches) and ``OUT/lgd_push.png``, and the run's own
``results.json`` in ``OUT/run``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from lwcl import platform
from lwcl.data.pipeline import train_batches
from lwcl.io import safe_files
from lwcl.io.figures import pyplot, save_figure
from lwcl.methods import projection
from lwcl.platform import quiet

RULES = ("equation", "sum", "mean")


def _norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree_util.tree_leaves(tree)))


def _dot(a, b) -> jax.Array:
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def make_probe(method):
  """A jitted ``probe(params, batch_stats, method_state, batch) -> dict of float32 scalars``: ``|g|`` and,
  for each rule of :data:`RULES`, ``|g~|``, ``|g~ - g~_equation|`` and ``<g~, gbar>``."""
  settings = dict(grouping=method.grouping, threshold=method.threshold, top_k=method.top_k)
  margin, single = method.margin, method.single_task_push

  def probe(params, batch_stats, method_state, batch):
    g = method.memory_grad(params, batch_stats, batch)
    refs = method.old_task_grads(method_state, params, batch_stats, batch)
    ref_grads, mask = refs["ref_grads"], refs["ref_mask"]
    w = mask.astype(jnp.float32)
    gbar = jax.tree_util.tree_map(lambda r: jnp.tensordot(w, r, 1) / jnp.maximum(w.sum(), 1), ref_grads)
    base = projection.project_lgd(g, ref_grads, mask, **settings)
    out = {"grad_norm": _norm(g), "old_grad_norm": _norm(gbar), "old_tasks": w.sum()}
    for rule in RULES:
      new = base if rule == "equation" else projection.project_lgd(
          g, ref_grads, mask, **settings, margin=margin, push=rule, single_task_push=single)
      out[f"{rule}/norm"] = _norm(new)
      out[f"{rule}/push_norm"] = _norm(jax.tree_util.tree_map(jnp.subtract, new, base))
      out[f"{rule}/dot_old"] = _dot(new, gbar)
    return out

  return jax.jit(probe)


def run(config, out_dir: str, num_batches: int) -> list:
  """Runs ``config``'s stream in ``out_dir/run`` and probes the first ``num_batches`` minibatches of every
  task ``t >= 2``; returns one dict per probed task (means over the batches), also in ``lgd_push.json``.

  Raises:
    ConfigError: ``config.method.name`` is not ``lgd`` (or any error of the run itself).
  """
  from lwcl.engine.experiment import Experiment  # pylint: disable=g-import-not-at-top
  from lwcl.errors import ConfigError  # pylint: disable=g-import-not-at-top
  if config.method.name != "lgd":
    raise ConfigError(f"lgd_push probes LGD runs; {config.method.name} is not lgd")
  exp = Experiment(config)
  probe = make_probe(exp.method)
  rows, lr = [], float(config.optimizer.learning_rate)

  def on_task_end(t, state):
    nxt = t + 1
    if nxt >= exp.scenario.num_tasks:
      return
    batches = train_batches(exp.train_data[nxt], config.train.batch_size, config.seed, nxt, 0)
    values = [jax.device_get(probe(state.params, state.batch_stats, state.method_state, b))
              for _, b in zip(range(num_batches), batches)]
    row = {"task": nxt + 1, **{k: float(np.mean([v[k] for v in values])) for k in values[0]}}
    for rule in RULES:
      row[f"{rule}/push_ratio"] = row[f"{rule}/push_norm"] / max(row["grad_norm"], 1e-12)
      row[f"{rule}/old_loss_change"] = -lr * row[f"{rule}/dot_old"]
    rows.append(row)
    print(f"task {nxt + 1:>2}: {int(row['old_tasks'])} old tasks, |g| {row['grad_norm']:.3f}, push/|g| "
          + ", ".join(f"{r} {row[f'{r}/push_ratio']:.2f}" for r in RULES[1:]), flush=True)

  results = exp.run(os.path.join(out_dir, "run"), on_task_end=on_task_end)
  safe_files.write_text_atomic(os.path.join(out_dir, "lgd_push.json"), json.dumps(
      {"rows": rows, "acc": results["acc"], "bwt": results["bwt"],
       "final_task_accuracy": results["accuracy_matrix"][-1][-1], "config": config.to_dict()},
      indent=1, default=str))
  plot(rows, os.path.join(out_dir, "lgd_push.png"))
  return rows


def plot(rows: list, path: str) -> None:
  """``|push| / |g|`` against the task, one line per push direction; PNG at ``path``."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(5, 3))
  tasks = [r["task"] for r in rows]
  for rule in RULES[1:]:
    ax.plot(tasks, [r[f"{rule}/push_ratio"] for r in rows], marker="o", label=f"push along {rule}")
  ax.set_xlabel("task")
  ax.set_ylabel("|push| / |g|")
  ax.set_yscale("log")
  ax.legend(fontsize=8)
  fig.tight_layout()
  save_figure(fig, path)


def main(argv=None) -> None:
  platform.configure()  # the command line's process settings (XLA:CPU flags, compilation cache)
  quiet.install()  # no echo of a failed checkpoint write around its error line (lwcl.platform.quiet)
  parser = argparse.ArgumentParser(prog="python -m lwcl.studies.lgd_push", description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True, metavar="CONFIG[:ARG]")
  parser.add_argument("--out", required=True)
  parser.add_argument("--tasks", type=int, default=0, help="scenario.num_tasks (0: the config's)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--batches", type=int, default=20, help="minibatches probed at the start of each task")
  args = parser.parse_args(argv)
  from lwcl.cli.compare import load_config  # pylint: disable=g-import-not-at-top
  from lwcl.errors import LwclError  # pylint: disable=g-import-not-at-top
  overrides = [f"seed={args.seed}", "train.progress=false"] + (
      [f"scenario.num_tasks={args.tasks}"] if args.tasks else [])
  try:
    os.makedirs(args.out, exist_ok=True)
    run(load_config(args.config, overrides), args.out, args.batches)
  except LwclError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == "__main__":
  main()
