"""Many seeds in one program: ``--config.num_seeds=R`` trains seeds ``seed .. seed+R-1`` as R replicas.

The replicas share everything but their seed: the data set, the scenario (permutations and splits come
from ``scenario.seed``), the model functions, the method and the optimizer. Their states are stacked into
one :class:`~lwcl.train.TrainState` with a leading replica axis ``R``, and the train step, the compiled
multi-step loop (``train.steps_per_dispatch``), the evaluation step and the method's end-of-task hook run
under ``jax.vmap``: one compiled program trains all replicas, each step on ``R`` minibatches (replica ``r``
draws its own minibatch order from seed ``seed + r``, as a single run of that seed does). Replica ``r``
equals the single run of seed ``seed + r`` up to float rounding (``tests/test_replicas.py``).

Outputs, in ``workdir``: ``seed<s>/results.json`` for every seed ``s`` (the schema of a single run's
results, its config with ``seed = s`` and ``num_seeds = 0``, so ``--config.seed=s`` on that folder finds
it finished) with its heatmap, and ``results.json`` with every seed's metrics and their mean and
standard deviation (ACC, BWT, FWT, forgetting; :func:`lwcl.metrics.order_statistics`), the spread of each
task's final accuracy and the mean accuracy matrix. The run checkpoints the stacked state into
``workdir/checkpoints/`` (resumed like a single run); seeds whose folders already hold their finished
results are not overwritten, and a folder holding another experiment's results is refused before anything
is trained.

Not supported (one-line :class:`~lwcl.errors.ConfigError`): ``num_orders``, ``sweep.key``, more than one
device, multi-host runs.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lwcl import layerwise, report
from lwcl.checkpoint import RunCheckpointer
from lwcl.data.pipeline import dispatch_lengths, eval_batches, step_indices
from lwcl.errors import ConfigError, DivergenceError
from lwcl.experiment import HEATMAP_FILE, Experiment, _metric_writer, _progress_bar
from lwcl.replica_results import seed_config, seed_dir, seeds_of, validate, write_summary
from lwcl.results import RESULTS_FILE, finished_results, result_config
from lwcl.run_state import Progress, Record
from lwcl.train import TrainState, make_eval_step, make_train_step, make_train_steps

# Errors a host hook raises when it needs concrete values (it then runs replica by replica).
_NOT_VMAPPABLE = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                  jax.errors.TracerIntegerConversionError)


def replica(tree: Any, r: int) -> Any:
  """Replica ``r`` of a stacked pytree (every leaf indexed ``[r]`` on its leading axis)."""
  return jax.tree.map(lambda x: x[r], tree)


def stack(trees: list) -> Any:
  """Pytrees of one structure stacked leaf by leaf into one with a leading axis ``len(trees)`` (device
  arrays stay on the device, host arrays on the host)."""
  return jax.tree.map(lambda *xs: np.stack(xs) if isinstance(xs[0], np.ndarray) else jnp.stack(xs), *trees)


def check_finite(losses: list, seeds: list, task: int, task_step: int) -> np.ndarray:
  """The last step's losses of every replica, float64 ``[R]``.

  Args:
    losses: ``(array, index)`` pairs in step order: a device vector ``[R]`` (index None), or column
      ``index`` of a device array ``[R, K]`` (the losses of a dispatch of K steps).
    seeds: the replicas' seeds (for the message); task, task_step: where the run is.
  Raises:
    DivergenceError: a loss is inf or nan; the message names the first replica (by seed) that diverged.
  """
  arrays = {id(a): a for a, _ in losses}
  host = dict(zip(arrays, jax.device_get(list(arrays.values()))))
  values = np.stack([np.asarray(host[id(a)] if i is None else host[id(a)][:, i], np.float64)
                     for a, i in losses])
  bad = ~np.isfinite(values)
  if bad.any():
    step, r = np.argwhere(bad)[0]  # the earliest step, then the lowest replica
    raise DivergenceError(f"the training loss of seed {seeds[r]} (replica {r} of {len(seeds)}) became "
                          f"{values[step, r]} in task {task + 1} by step {task_step} of the task; lower "
                          "--config.optimizer.learning_rate or set --config.optimizer.grad_clip_norm (the "
                          "last good checkpoint is kept)")
  return values[-1]


@dataclasses.dataclass
class _Run:
  """One pass of :meth:`Replicas.run`: open files and the stacked run state (``record`` arrays have a
  leading replica axis; ``progress`` is shared)."""
  workdir: str
  ckpt: RunCheckpointer
  writer: Any
  state: TrainState
  record: Record
  progress: Progress

  def save(self, task_done: bool) -> None:
    self.ckpt.save(int(self.state.step[0]), {"state": self.state, "record": self.record},
                   self.progress.to_meta(task_done))

  def close(self) -> None:
    self.writer.close()
    self.ckpt.close()


class Replicas:
  """``config.num_seeds`` replicas of one experiment, trained as one vmapped program.

  Attributes:
    config: the config (``num_seeds >= 1``); seeds: the replicas' seeds.
    exp: the :class:`~lwcl.experiment.Experiment` of the first seed (data, scenario, model functions,
      method, optimizer; its own compiled steps are not used).
    final_state: the stacked train state after :meth:`run` (leading axis ``R``; for tests).

  Raises (constructor):
    ConfigError: an unsupported combination (:func:`validate`), or more than one device (set
      ``devices.num_devices=1``); the errors of :class:`~lwcl.experiment.Experiment`.
  """

  def __init__(self, config):
    validate(config)
    if config.num_seeds < 1:
      raise ConfigError("Replicas needs --config.num_seeds >= 1")
    self.config, self.seeds = config, seeds_of(config)
    self.exp = exp = Experiment(seed_config(config, config.seed))
    if exp.parallel.size != 1 or jax.process_count() != 1:
      raise ConfigError(f"num_seeds runs all replicas on one device, but {exp.parallel.size} devices are in "
                        "use; set --config.devices.num_devices=1")
    step = make_train_step(exp.fns, exp.tx, exp.method)
    self.train_step = jax.jit(jax.vmap(step, in_axes=(0, 0, None)), donate_argnums=(0,))
    steps_axes = {"index": 0, "learning_rate": None, **({"phase": None} if exp._greedy else {})}
    self.train_steps = jax.jit(jax.vmap(make_train_steps(exp.fns, exp.tx, exp.method),
                                        in_axes=(0, None, steps_axes, None)), donate_argnums=(0,))
    self.eval_step = jax.jit(jax.vmap(make_eval_step(exp.fns), in_axes=(0, 0, None)))
    self.init_opt = jax.jit(jax.vmap(exp.tx.init))
    self.readouts = []
    for s in self.seeds:  # the read-outs' linear probes draw their training subsets from the seed
      ro = copy.copy(exp.readouts)
      ro.seed = s
      self.readouts.append(ro)

  # -- state and evaluation ------------------------------------------------------------------------

  def initial_state(self) -> TrainState:
    """Every replica's initial state (:meth:`Experiment.initial_state` of its seed), stacked."""
    return stack([self.exp.initial_state(s) for s in self.seeds])

  def evaluate_task(self, state: TrainState, task: int, split: str = "test") -> np.ndarray:
    """Accuracy (fraction) of every replica on one task's split, float64 ``[R]``."""
    data = getattr(self.exp.scenario.tasks[task], split)
    correct = count = 0.0
    for batch in eval_batches(data.images, data.labels, task, self.exp.eval_batch_size):
      c, n = self.eval_step(state.params, state.batch_stats, batch)
      correct, count = correct + c, count + n
    return np.asarray(correct, np.float64) / np.maximum(np.asarray(count, np.float64), 1.0)

  def evaluate(self, state: TrainState, split: str = "test") -> np.ndarray:
    """Accuracy of every replica on every task, float32 ``[R, T]``."""
    return np.stack([self.evaluate_task(state, j, split) for j in range(self.exp.scenario.num_tasks)],
                    axis=1).astype(np.float32)

  def end_task(self, state: TrainState, task: int) -> Any:
    """The method's end-of-task hook on every replica: ``jax.vmap`` over the replicas, or, for a hook
    that needs concrete values (a ConcretizationTypeError or tracer-conversion error under ``vmap``),
    one replica at a time (same results, logged). Returns the stacked method state."""
    exp, data = self.exp, self.exp.train_data[task]

    def hook(ms, params, stats):
      return exp.method.end_task(ms, params, stats, task, data)

    if getattr(exp.method, "vmappable_end_task", True):
      try:
        return jax.vmap(hook)(state.method_state, state.params, state.batch_stats)
      except _NOT_VMAPPABLE as e:
        logging.info("%s.end_task cannot run under vmap (%s); running it replica by replica",
                     type(exp.method).__name__, type(e).__name__)
        exp.method.vmappable_end_task = False
    return stack([hook(*replica((state.method_state, state.params, state.batch_stats), r))
                  for r in range(len(self.seeds))])

  # -- the stream ----------------------------------------------------------------------------------

  def run(self, workdir: str, on_step: Callable[[int], None] | None = None) -> dict:
    """Trains all replicas through the stream in ``workdir`` (resuming from its checkpoint) and writes
    ``seed<s>/results.json`` and the summary ``results.json``.

    Args:
      workdir: the folder of the replica run; on_step: called with the global step after every step (as
        :meth:`lwcl.experiment.Experiment.run`).
    Returns:
      The summary dict (:func:`summarize`), also in ``workdir/results.json``.
    Raises:
      ConfigError: a ``seed<s>`` folder holds another experiment's results (nothing is trained).
      CheckpointError: a corrupt or foreign checkpoint. DivergenceError: a replica's loss became inf or
        nan (the message names its seed).
    """
    done = [finished_results(seed_config(self.config, s), seed_dir(workdir, s)) for s in self.seeds]
    if any(d is None for d in done):
      run = self._resume(workdir)
      try:
        for t in range(run.progress.task, self.exp.scenario.num_tasks):
          self._train_task(run, t, on_step)
          self._finish_task(run, t)
        done = self._report(run, done)
      finally:
        run.close()
      self.final_state = run.state
    return write_summary(self.config, workdir, done)

  def _resume(self, workdir: str) -> _Run:
    os.makedirs(workdir, exist_ok=True)
    ckpt = RunCheckpointer(os.path.join(workdir, "checkpoints"), self.config.checkpoint.keep,
                           result_config(self.config.to_dict()))
    state, progress = self.initial_state(), Progress()
    record = stack([self.exp.initial_record() for _ in self.seeds])
    restored = ckpt.restore({"state": state, "record": record})
    if restored is not None:
      tree, meta = restored
      state, record, progress = tree["state"], tree["record"].writable(), Progress.from_meta(meta)
      print(f"lwcl: resuming {len(self.seeds)} seeds from checkpoint at task {progress.task + 1}, step "
            f"{progress.task_step} of the task", flush=True)
    run = _Run(workdir, ckpt, _metric_writer(workdir, True), state, record, progress)
    if restored is None:
      record.b[:] = self.evaluate(run.state, self.config.eval.split)
    return run

  def _train_task(self, run: _Run, t: int, on_step) -> None:
    """Task ``t`` from ``run.progress.task_step`` to its end, for every replica (as
    ``Experiment._train_task``: logging, NaN checks, checkpoints, LCA curves)."""
    exp, config, progress, record = self.exp, self.config, run.progress, run.record
    epochs, bs, split, lca_n = config.train.epochs_per_task, config.train.batch_size, config.eval.split, \
        config.eval.lca_batches
    total, every = exp.steps_per_epoch[t] * epochs, config.checkpoint.every_steps
    steps_before = sum(exp.steps_per_epoch[k] * epochs for k in range(t))
    if progress.task_step == 0 and config.optimizer.reset_each_task and t > 0:
      run.state = run.state.replace(opt_state=self.init_opt(run.state.params))
    if lca_n and progress.task_step == 0:
      record.lca[:, t, 0] = self.evaluate_task(run.state, t, split)
    bar = _progress_bar(total, progress.task_step, f"task {t + 1}/{exp.scenario.num_tasks} x{len(self.seeds)}",
                        config.train.progress)
    dispatch = self._one_step_dispatches if exp.steps_per_dispatch == 1 else self._multi_step_dispatches
    pending, tic, loss = [], time.perf_counter(), np.full(len(self.seeds), np.nan)
    for first, count, losses in dispatch(run, t, total):
      for s in range(first, first + count):
        pending.append((losses, None if losses.ndim == 1 else s - first))
        progress.task_step, progress.train_examples = s + 1, progress.train_examples + bs
        step = s + 1 + steps_before
        if lca_n and s < lca_n:
          record.lca[:, t, s + 1] = self.evaluate_task(run.state, t, split)
        due_log = (s + 1) % config.train.log_every_steps == 0
        due_ckpt = every and step % every == 0 and s + 1 < total
        if due_log or due_ckpt or s + 1 == total:
          loss, pending = check_finite(pending, self.seeds, t, s + 1), []
          bar.set_postfix(loss=f"{loss.mean():.4f}")
          run.writer.write_scalars(step, {"train/task": t + 1, **{f"train/loss_seed{sd}": v
                                                                    for sd, v in zip(self.seeds, loss)}})
        if due_ckpt:
          progress.train_seconds += time.perf_counter() - tic
          run.save(task_done=False)
          tic = time.perf_counter()
        bar.update(1)
        if on_step is not None:
          on_step(step)
    jax.block_until_ready(run.state)
    progress.train_seconds += time.perf_counter() - tic
    bar.close()
    record.final_loss[:, t] = loss

  def _one_step_dispatches(self, run: _Run, t: int, total: int):
    """One vmapped step per call, on ``R`` host minibatches ``[R, B, ...]``; yields ``(step, 1, losses
    [R])``. Replica ``r``'s batches are those of a single run of its seed (:func:`step_indices`)."""
    exp, bs = self.exp, self.config.train.batch_size
    spe, data, epochs = exp.steps_per_epoch[t], exp.train_data[t], self.config.train.epochs_per_task
    learning_rates = exp.learning_rates.for_task(spe)
    start = run.progress.task_step  # (the caller advances run.progress.task_step after each yield)
    for s in range(start, total):
      epoch, index = divmod(s, spe)
      if s == start or index == 0:  # the indices of the rest of this epoch, [n, R, B]
        first = s
        idx = np.stack([step_indices(len(data), bs, sd, t, spe, s, spe - index) for sd in self.seeds], axis=1)
      rows = idx[s - first]
      batch = {"image": data.images[rows], "label": data.labels[rows], "task": data.tasks[rows]}
      if exp._greedy:
        batch["phase"] = np.full(rows.shape, layerwise.greedy_phase(exp.fns, s, spe, epochs), np.int32)
      run.state, step_metrics = self.train_step(run.state, batch, learning_rates[s])
      yield s, 1, step_metrics["loss"]

  def _multi_step_dispatches(self, run: _Run, t: int, total: int):
    """Up to ``train.steps_per_dispatch = K`` vmapped steps per call on the task's data placed on the
    device once (shared by the replicas, each with its own indices ``[R, K, B]``); yields ``(first
    step, count, losses [R, K])``."""
    exp, config = self.exp, self.config
    spe, K, epochs, data = exp.steps_per_epoch[t], exp.steps_per_dispatch, config.train.epochs_per_task, \
        exp.train_data[t]
    learning_rates = exp.learning_rates.for_task(spe)
    rows = max(len(d) for d in exp.train_data)
    host = {"image": data.images, "label": data.labels, "task": data.tasks}
    device_data = jax.device_put({k: np.concatenate([x, np.zeros((rows - len(x),) + x.shape[1:], x.dtype)])
                                  for k, x in host.items()})
    steps_before = sum(n * epochs for n in exp.steps_per_epoch[:t])
    for first, count in dispatch_lengths(run.progress.task_step, total, K,
                                         lambda s: exp._boundary(s, steps_before)):
      index = np.stack([step_indices(len(data), config.train.batch_size, sd, t, spe, first, count, rows=K)
                        for sd in self.seeds])
      steps = {"index": index, "learning_rate": np.zeros(K, np.float32)}
      steps["learning_rate"][:count] = learning_rates[first:first + count]
      if exp._greedy:
        steps["phase"] = np.zeros(K, np.int32)
        steps["phase"][:count] = [layerwise.greedy_phase(exp.fns, s, spe, epochs)
                                  for s in range(first, first + count)]
      run.state, losses = self.train_steps(run.state, device_data, steps, np.int32(count))
      yield first, count, losses

  def _finish_task(self, run: _Run, t: int) -> None:
    """Evaluates every replica on every task, the read-outs, the method's end-of-task update, a
    checkpoint, and one line with the mean and spread over the seeds."""
    T, split, record = self.exp.scenario.num_tasks, self.config.eval.split, run.record
    record.R[:, t] = self.evaluate(run.state, split)
    for r, ro in enumerate(self.readouts):
      if ro.active:
        sub = {k: v[r] for k, v in record.readouts.items()}
        ro.after_task(replica(run.state, r), self.exp.scenario, t, sub, split)
        for k, v in sub.items():
          record.readouts[k][r] = v
    run.state = run.state.replace(method_state=self.end_task(run.state, t))
    run.writer.write_scalars(int(run.state.step[0]), {
        f"eval/accuracy_task{j + 1}_seed{s}": float(record.R[r, t, j])
        for r, s in enumerate(self.seeds) for j in range(T)})
    run.save(task_done=True)
    run.progress.task, run.progress.task_step = t + 1, 0
    seen = 100 * record.R[:, t, : t + 1]
    print(f"after task {t + 1}/{T}: accuracy " + " ".join(f"{m:.1f}±{d:.1f}" for m, d in
                                                          zip(seen.mean(0), seen.std(0))) +
          f" (seen tasks, %, mean±std over {len(self.seeds)} seeds)", flush=True)

  def _report(self, run: _Run, done: list) -> list:
    """Every seed's results dict; writes ``seed<s>/results.json`` and its heatmap for the seeds whose
    folder does not hold them yet (``done[r]`` not None: reported as found)."""
    out, sc = [], self.exp.scenario
    for r, s in enumerate(self.seeds):
      if done[r] is not None:
        out.append(done[r])
        continue
      res = self.exp.results(replica(run.record, r), run.progress, seed_config(self.config, s).to_dict())
      res["replica"] = {"index": r, "num_seeds": len(self.seeds), "workdir": run.workdir,
                        "note": "trained as one replica of a vmapped program; train_seconds is the program's"}
      sub = seed_dir(run.workdir, s)
      os.makedirs(sub, exist_ok=True)
      report.write_json_atomic(os.path.join(sub, RESULTS_FILE), res)
      report.plot_accuracy_matrix(run.record.R[r], os.path.join(sub, HEATMAP_FILE),
                                  f"{self.config.method.name} on {sc.dataset}, seed {s}")
      self.readouts[r].write(res, sub)
      out.append(res)
    return out


def run_replicas(config, workdir: str, on_step: Callable[[int], None] | None = None) -> dict:
  """``--config.num_seeds=R``: the summary results of R seeds trained as replicas (:class:`Replicas`);
  nothing is trained when every seed's folder already holds its finished results."""
  per_seed = [finished_results(seed_config(config, s), seed_dir(workdir, s)) for s in seeds_of(config)]
  if all(d is not None for d in per_seed):
    return write_summary(config, workdir, per_seed)
  return Replicas(config).run(workdir, on_step)
