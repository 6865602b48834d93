"""Read-outs of layer-wise training: every local block's head accuracy after each task, linear probes on
each block's frozen features, and the plot of accuracy against depth.
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lwcl.core import metrics
from lwcl.core.model_fns import MASKED_LOGIT, ModelFns
from lwcl.core.options import Option
from lwcl.data.pipeline import eval_batches
from lwcl.io.figures import pyplot, save_figure
from lwcl.layerwise.fns import LayerwiseFns

# The layerwise.linear_probe.* keys (bounded whether or not the probe is enabled, as every key).
OPTIONS = (
    Option("layerwise.linear_probe.enabled", False, "after the last task, a linear probe per block and task"),
    Option("layerwise.linear_probe.train_examples", 2000, "per task (seeded subset of its training data)",
           minimum=1),
    Option("layerwise.linear_probe.steps", 300, "full-batch Adam steps", minimum=1),
    Option("layerwise.linear_probe.learning_rate", 0.01, "Adam learning rate", minimum=0.0, strict=True),
    Option("layerwise.linear_probe.l2", 1e-4, "L2 penalty", minimum=0.0),
    Option("layerwise.linear_probe.pool", 2, "average-pool feature maps to pool x pool before the probe; "
           "0 = none", minimum=0),
)

PLOT_FILE = "block_accuracy.png"
FORGETTING_PLOT_FILE = "block_forgetting.png"


def block_depths(fns: "LayerwiseFns", image_shape: tuple) -> list:
  """Weight layers (conv and dense kernels, projection shortcuts excluded) from the input through the end
  of each local block: a list of ``K`` ints (ResNet-20, ``cuts='block'``: 3, 5, ..., 19)."""
  params = jax.eval_shape(lambda: ModelFns.init_variables(fns, jax.random.PRNGKey(0), image_shape)[0])
  per_block = {}
  for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [getattr(p, "key", str(p)) for p in path]
    if keys[-1] == "kernel" and keys[0].startswith("blocks_") and not any("shortcut" in k for k in keys):
      per_block[keys[0]] = per_block.get(keys[0], 0) + 1
  depths, total = [], 0
  for k in range(fns.num_blocks):
    total += sum(per_block.get(f"blocks_{i}", 0) for i in fns.segment(k))
    depths.append(total)
  return depths


def train_linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                       label_mask: np.ndarray, steps: int, learning_rate: float, l2: float) -> float:
  """Test accuracy of a softmax-regression probe on frozen features.

  Features are standardized with the training set's statistics; the probe (Dense, ``[F, output_dim]``)
  is trained full-batch with Adam for ``steps`` steps on mean cross-entropy + ``l2 * ||W||^2``; outputs
  outside ``label_mask`` (bool ``[output_dim]``, the task's classes) are masked as in the network.

  Args:
    train_x, test_x: float32 ``[N, F]``; train_y, test_y: int32 ``[N]``.
  Returns:
    Accuracy on ``test_x`` (float in [0, 1]).
  """
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  return float(_fit_probe(jnp.asarray((train_x - mean) / std), jnp.asarray(train_y, jnp.int32),
                          jnp.asarray((test_x - mean) / std), jnp.asarray(test_y, jnp.int32),
                          jnp.asarray(label_mask), int(steps), float(learning_rate), float(l2)))


def _probe_logits(w, b, x, mask):
  return jnp.where(mask, x @ w + b, MASKED_LOGIT)


@functools.partial(jax.jit, static_argnums=(5, 6, 7))
def _fit_probe(xtr, ytr, xte, yte, mask, steps, lr, l2):
  opt = optax.adam(lr)
  wb = (jnp.zeros((xtr.shape[1], mask.shape[0]), jnp.float32), jnp.zeros((mask.shape[0],), jnp.float32))

  def loss(wb):
    logits = _probe_logits(wb[0], wb[1], xtr, mask)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, ytr)) + l2 * jnp.sum(wb[0] ** 2)

  def body(_, carry):
    wb, s = carry
    updates, s = opt.update(jax.grad(loss)(wb), s, wb)
    return optax.apply_updates(wb, updates), s

  wb, _ = jax.lax.fori_loop(0, steps, body, (wb, opt.init(wb)))
  return jnp.mean(jnp.argmax(_probe_logits(wb[0], wb[1], xte, mask), -1) == yte)


class Readouts:
  """What a run adds for layer-wise training, from explicit settings (no reference to the experiment).
  For plain runs (no local blocks, ``active`` False) every method does nothing, so plain results are
  unchanged.

  * ``initial_record`` / ``after_task``: the block accuracies ``[T, K, T]`` (after task ``i``, head of
    local block ``k``, on task ``j``), and after the last task the linear-probe accuracies ``[K, T]``;
    recorded arrays are checkpointed with the run.
  * ``results``: ``block_accuracy`` (``[T, K, T]``: ``block_accuracy[:, k, :]`` is head ``k``'s own
    accuracy matrix), ``block_acc`` (final, mean over tasks, ``[K]``), ``block_bwt`` and
    ``block_forgetting`` (``[K]``, :func:`lwcl.core.metrics.bwt` / :func:`~lwcl.core.metrics.forgetting` of each
    head's matrix: which blocks forget), ``linear_probe_accuracy``, ``linear_probe_acc`` and a
    ``layerwise`` description (mode, local blocks, depth in weight layers of each block's end).
  * ``write``: ``block_accuracy.png`` (accuracy against depth) and ``block_forgetting.png`` (forgetting
    and BWT against depth).

  The scenario (an :class:`~lwcl.data.scenarios.Scenario`) is passed to every call that reads data, since
  a run may reorder its tasks after building this object. Greedy mode's ``phase`` entry of a training batch
  comes from :func:`lwcl.layerwise.greedy.with_phase`.

  Args:
    fns: the run's model functions (a :class:`~lwcl.layerwise.fns.LayerwiseFns` makes this active).
    lw_config: ``config.layerwise``.
    strides: ``config.model.strides`` (reported in ``results``).
    image_shape: (H, W, C) of one input (depth of each local block).
    parallel: the run's :class:`~lwcl.platform.devices.DataParallel` (``replicated``, ``batch``, ``put_batch``).
    eval_batch_size: evaluation batch size.
  """

  def __init__(self, fns, lw_config, *, strides: str, image_shape: tuple, parallel, eval_batch_size: int):
    self.fns = fns
    self.config = lw_config
    self.strides = str(strides)
    self.parallel = parallel
    self.eval_batch_size = int(eval_batch_size)
    self.active = fns.is_layerwise
    if not self.active:
      return
    rep, bat = parallel.replicated, parallel.batch
    self.block_eval_step = jax.jit(self._block_eval, in_shardings=(rep, rep, bat), out_shardings=(rep, rep))
    self.features = jax.jit(self.fns.block_features, static_argnums=(3,))
    self.depths = block_depths(self.fns, tuple(image_shape))

  def _block_eval(self, params, batch_stats, batch):
    logits = self.fns.block_logits(params, batch_stats, batch)
    hits = jnp.stack([(jnp.argmax(l, -1) == batch["label"]).astype(jnp.float32) for l in logits])
    return jnp.sum(hits * batch["mask"], axis=1), jnp.sum(batch["mask"])

  def initial_record(self, num_tasks: int) -> dict:
    """Zeroed record arrays (``block_R`` float32 ``[T, K, T]``, ``probe`` ``[K, T]`` with linear probes);
    ``{}`` when not active."""
    if not self.active:
      return {}
    K = self.fns.num_blocks
    record = {"block_R": np.zeros((num_tasks, K, num_tasks), np.float32)}
    if self.config.linear_probe.enabled:
      record["probe"] = np.zeros((K, num_tasks), np.float32)
    return record

  def block_accuracy(self, state, scenario, task: int, split: str = "test") -> np.ndarray:
    """Accuracy (fraction) of every local block's head on one task's split, float32 ``[K]``."""
    data = getattr(scenario.tasks[task], split)
    correct, count = np.zeros((self.fns.num_blocks,)), 0.0
    for batch in eval_batches(data.images, data.labels, task, self.eval_batch_size):
      c, n = self.block_eval_step(state.params, state.batch_stats, self.parallel.put_batch(batch))
      correct, count = correct + np.asarray(c), count + float(n)
    return (correct / max(count, 1.0)).astype(np.float32)

  def probe_accuracy(self, state, scenario, task: int, split: str = "test", seed: int = 0) -> np.ndarray:
    """Linear-probe accuracy of every local block's frozen features on one task, float32 ``[K]``: the
    probe trains on up to ``linear_probe.train_examples`` of the task's training examples (a subset drawn
    from ``seed``, the run's ``config.seed``, and the task) and is tested on its ``split``."""
    probe = self.config.linear_probe
    t = scenario.tasks[task]
    rng = np.random.RandomState(int(seed) + 7919 * task)
    idx = np.sort(rng.permutation(len(t.train.labels))[: probe.train_examples])
    test = getattr(t, split)
    feats = [self._features(state, t.train.images[idx], task), self._features(state, test.images, task)]
    mask = np.asarray(scenario.label_masks)[task]
    return np.asarray([train_linear_probe(feats[0][k], t.train.labels[idx], feats[1][k], test.labels, mask,
                                          probe.steps, probe.learning_rate, probe.l2)
                       for k in range(self.fns.num_blocks)], np.float32)

  def _features(self, state, images: np.ndarray, task: int) -> list:
    bs = self.eval_batch_size
    chunks = []
    for i in range(0, len(images), bs):
      x = images[i:i + bs]
      batch = {"image": x, "task": np.full((len(x),), task, np.int32)}
      chunks.append([np.asarray(f) for f in self.features(state.params, state.batch_stats, batch,
                                                           int(self.config.linear_probe.pool))])
    return [np.concatenate([c[k] for c in chunks]) for k in range(self.fns.num_blocks)]

  def after_task(self, state, scenario, task: int, record: dict, split: str = "test", seed: int = 0) -> None:
    """Fills ``record['block_R'][task]`` (every block on every task) and, after the last task, the
    linear-probe accuracies ``record['probe']`` (probes' training subsets drawn from ``seed``)."""
    if not self.active:
      return
    T = scenario.num_tasks
    record["block_R"][task] = np.stack([self.block_accuracy(state, scenario, j, split) for j in range(T)],
                                       axis=1)
    if self.config.linear_probe.enabled and task == T - 1:
      record["probe"] = np.stack([self.probe_accuracy(state, scenario, j, split, seed) for j in range(T)],
                                 axis=1)

  def results(self, record: dict) -> dict:
    """The read-outs' entries of ``results.json`` (see the class docstring); ``{}`` when not active."""
    if not self.active:
      return {}
    fns, cfg = self.fns, self.config
    block_R = record["block_R"].astype(np.float64)
    per_head = [block_R[:, k, :] for k in range(fns.num_blocks)]  # head k's accuracy matrix [T, T]
    out = {"block_accuracy": block_R.tolist(), "block_acc": block_R[-1].mean(axis=1).tolist(),
           "block_bwt": [metrics.bwt(R) for R in per_head],
           "block_forgetting": [metrics.forgetting(R) for R in per_head],
           "layerwise": {"mode": fns.mode, "cuts": str(cfg.cuts), "local_blocks": fns.num_blocks,
                         "blocks": [[r[0], r[-1]] for r in map(fns.segment, range(fns.num_blocks))],
                         "depth": self.depths, "aux_head": cfg.aux_head, "strides": self.strides}}
    if "probe" in record:
      probe = record["probe"].astype(np.float64)
      out["linear_probe_accuracy"] = probe.tolist()
      out["linear_probe_acc"] = probe.mean(axis=1).tolist()
    return out

  def write(self, results: dict, workdir: str) -> None:
    """Saves :data:`PLOT_FILE` (accuracy against depth) and, for streams of more than one task,
    :data:`FORGETTING_PLOT_FILE` (forgetting against depth) in ``workdir`` when active."""
    if self.active:
      runs = [(results["layerwise"]["mode"], results)]
      plot_block_accuracy(runs, os.path.join(workdir, PLOT_FILE))
      if len(results["block_accuracy"]) > 1:
        plot_block_forgetting(runs, os.path.join(workdir, FORGETTING_PLOT_FILE))


def plot_block_accuracy(runs: Sequence[tuple], path: str, title: str = "") -> None:
  """Saves accuracy against depth, one line per run, to PNG ``path`` (atomically,
  :func:`lwcl.io.figures.save_figure`).

  Args:
    runs: ``(label, results)`` pairs; ``results`` hold ``block_acc`` and ``layerwise.depth`` (and
      optionally ``linear_probe_acc``, drawn in a second panel in the same color).
  """
  plt = pyplot()
  probes = any("linear_probe_acc" in res for _, res in runs)
  fig, axes = plt.subplots(1, 2 if probes else 1, figsize=(11.5 if probes else 6.4, 4.6), sharey=True,
                           squeeze=False)
  axes = axes[0]
  for depth, res, style in _depth_styles(runs):
    axes[0].plot(depth, 100 * np.asarray(res["block_acc"]), "-", **style)
    if "linear_probe_acc" in res:
      axes[1].plot(depth, 100 * np.asarray(res["linear_probe_acc"]), "--", **style)
  axes[0].set_title("auxiliary head of each local block (last: the network's output)", fontsize=9)
  axes[0].set_ylabel("test accuracy (%)")
  if probes:
    axes[1].set_title("linear probe on each local block's frozen features", fontsize=9)
  _finish_depth_figure(fig, axes, path, title or "accuracy against depth", "lower right")


def plot_block_forgetting(runs: Sequence[tuple], path: str, title: str = "") -> None:
  """Saves "which blocks forget": each local block head's forgetting and BWT (%) against depth, one line
  per run, to PNG ``path`` (atomically).

  Args:
    runs: ``(label, results)`` pairs; ``results`` hold ``block_forgetting``, ``block_bwt`` and
      ``layerwise.depth`` (:meth:`Readouts.results` of a stream of at least two tasks).
  """
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4), squeeze=False)
  axes = axes[0]
  for depth, res, style in _depth_styles(runs):
    for ax, key in zip(axes, ("block_forgetting", "block_bwt")):
      ax.plot(depth, [np.nan if v is None else 100 * v for v in res[key]], "-", **style)
  axes[0].set_title("forgetting of each local block's head (last: the network's output)", fontsize=9)
  axes[0].set_ylabel("forgetting (%)")
  axes[1].set_title("backward transfer of each local block's head", fontsize=9)
  axes[1].set_ylabel("BWT (%)")
  _finish_depth_figure(fig, axes, path, title or "which blocks forget", "lower left")


def _depth_styles(runs: Sequence[tuple]):
  """``(depth, results, line style)`` of each ``(label, results)`` run: one color and marker per run."""
  for i, (label, res) in enumerate(runs):
    yield res["layerwise"]["depth"], res, {"color": f"C{i % 10}", "marker": "os^vDP*Xph"[(i // 10) % 10],
                                           "label": label}


def _finish_depth_figure(fig, axes, path: str, title: str, legend_loc: str) -> None:
  """Depth x-axis labels, grid, legend and title on every panel; then saves the figure atomically."""
  for ax in axes:
    ax.set_xlabel("depth (weight layers through the end of the local block)")
    ax.grid(alpha=0.3)
  axes[-1].legend(fontsize=7, loc=legend_loc)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  save_figure(fig, path, dpi=100)
