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
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lwcl import layerwise, report
from lwcl.data.pipeline import eval_batches, step_indices
from lwcl.errors import ConfigError
from lwcl.experiment import HEATMAP_FILE, Experiment
from lwcl.replica_results import seed_config, seed_dir, seeds_of, validate, write_summary
from lwcl.results import RESULTS_FILE, finished_results
from lwcl.run_io import Run
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


class Replicas(Experiment):
  """``config.num_seeds`` replicas of one experiment, trained as one vmapped program.

  The stream is :class:`~lwcl.experiment.Experiment`'s (resume, the task loop with its logging, non-finite
  loss check and checkpoints, report) on a state, record and losses with a leading replica axis; this class
  swaps in the vmapped steps and overrides the hooks that see the replica axis.

  Attributes:
    replica_config: the config (``num_seeds >= 1``); ``config`` is the first seed's single-run config
      (data, scenario, model, method, optimizer are shared). seeds: the replicas' seeds.
    final_state: the stacked train state after :meth:`run` (leading axis ``R``; for tests).

  Raises (constructor):
    ConfigError: an unsupported combination (:func:`validate`), or more than one device (set
      ``devices.num_devices=1``); the errors of :class:`~lwcl.experiment.Experiment`.
  """

  def __init__(self, config):
    validate(config)
    if config.num_seeds < 1:
      raise ConfigError(f"Replicas needs num_seeds >= 1, got {config.num_seeds}; set --config.num_seeds")
    super().__init__(seed_config(config, config.seed))
    self.replica_config = self.run_config = config
    self.seeds = self.replica_seeds = seeds_of(config)
    if self.parallel.size != 1 or jax.process_count() != 1:
      raise ConfigError(f"num_seeds runs all replicas on one device, but {self.parallel.size} devices are in "
                        "use; set --config.devices.num_devices=1")
    self.train_step = jax.jit(jax.vmap(make_train_step(self.fns, self.tx, self.method), in_axes=(0, 0, None)),
                              donate_argnums=(0,))
    steps_axes = {"index": 0, "learning_rate": None, **({"phase": None} if self._greedy else {})}
    self.train_steps = jax.jit(jax.vmap(make_train_steps(self.fns, self.tx, self.method),
                                        in_axes=(0, None, steps_axes, None)), donate_argnums=(0,))
    self.eval_step = jax.jit(jax.vmap(make_eval_step(self.fns), in_axes=(0, 0, None)))
    self._init_opt = jax.jit(jax.vmap(self.tx.init))
    self.replica_readouts = []
    for s in self.seeds:  # the read-outs' linear probes draw their training subsets from the seed
      ro = copy.copy(self.readouts)
      ro.seed = s
      self.replica_readouts.append(ro)

  # -- state, evaluation and the hooks of Experiment's loop ----------------------------------------

  def initial_state(self, seed: int | None = None) -> TrainState:
    """Every replica's initial state (:meth:`Experiment.initial_state` of its seed), stacked."""
    del seed
    return stack([super(Replicas, self).initial_state(s) for s in self.seeds])

  def initial_record(self):
    """Every replica's empty record, stacked (leading axis ``R`` on every array)."""
    return stack([super(Replicas, self).initial_record() for _ in self.seeds])

  def _init_opt_state(self, params):
    return self._init_opt(params)

  def _loss_scalars(self, loss) -> dict:
    return {f"train/loss_seed{sd}": float(v) for sd, v in zip(self.seeds, loss)}

  def evaluate_task(self, state: TrainState, task: int, split: str = "test") -> np.ndarray:
    """Accuracy (fraction) of every replica on one task's split, float64 ``[R]``."""
    data = getattr(self.scenario.tasks[task], split)
    correct = count = 0.0
    for batch in eval_batches(data.images, data.labels, task, self.eval_batch_size):
      c, n = self.eval_step(state.params, state.batch_stats, batch)
      correct, count = correct + c, count + n
    return np.asarray(correct, np.float64) / np.maximum(np.asarray(count, np.float64), 1.0)

  def evaluate(self, state: TrainState, split: str = "test") -> np.ndarray:
    """Accuracy of every replica on every task, float32 ``[R, T]``."""
    return np.stack([self.evaluate_task(state, j, split) for j in range(self.scenario.num_tasks)],
                    axis=1).astype(np.float32)

  def end_task(self, state: TrainState, task: int) -> Any:
    """The method's end-of-task hook on every replica: ``jax.vmap`` over the replicas, or, for a hook
    that needs concrete values (a ConcretizationTypeError or tracer-conversion error under ``vmap``),
    one replica at a time (same results, logged). Returns the stacked method state."""
    method, data = self.method, self.train_data[task]

    def hook(ms, params, stats):
      return method.end_task(ms, params, stats, task, data)

    if getattr(method, "vmappable_end_task", True):
      try:
        return jax.vmap(hook)(state.method_state, state.params, state.batch_stats)
      except _NOT_VMAPPABLE as e:
        logging.info("%s.end_task cannot run under vmap (%s); running it replica by replica",
                     type(method).__name__, type(e).__name__)
        method.vmappable_end_task = False
    return stack([hook(*replica((state.method_state, state.params, state.batch_stats), r))
                  for r in range(len(self.seeds))])

  # -- the stream ----------------------------------------------------------------------------------

  def run(self, workdir: str, on_step: Callable[[int], None] | None = None, on_task_end=None) -> dict:
    """Trains all replicas through the stream in ``workdir`` (resuming from its checkpoint) and writes
    ``seed<s>/results.json`` and the summary ``results.json``.

    Args:
      workdir: the folder of the replica run; on_step, on_task_end: as :meth:`Experiment.run` (the state
        passed to ``on_task_end`` is stacked).
    Returns:
      The summary dict (:func:`lwcl.replica_results.summarize`), also in ``workdir/results.json``.
    Raises:
      ConfigError: a ``seed<s>`` folder holds another experiment's results (nothing is trained).
      CheckpointError: a corrupt or foreign checkpoint. DivergenceError: a replica's loss became inf or
        nan (the message names its seed).
    """
    self._done = [finished_results(seed_config(self.replica_config, s), seed_dir(workdir, s))
                  for s in self.seeds]
    per_seed = self._done
    if any(d is None for d in per_seed):
      per_seed = super().run(workdir, on_step, on_task_end)
    return write_summary(self.replica_config, workdir, per_seed)

  def _one_step_dispatches(self, run: Run, t: int, total: int):
    """One vmapped step per call, on ``R`` host minibatches ``[R, B, ...]``; yields ``(step, 1, losses
    [R])``. Replica ``r``'s batches are those of a single run of its seed (:func:`step_indices`)."""
    bs, spe, data, epochs = self.config.train.batch_size, self.steps_per_epoch[t], self.train_data[t], \
        self.config.train.epochs_per_task
    learning_rates = self.learning_rates.for_task(spe)
    start = run.progress.task_step
    for s in range(start, total):
      epoch, index = divmod(s, spe)
      if s == start or index == 0:  # the indices of the rest of this epoch, [n, R, B]
        first = s
        idx = np.stack([step_indices(len(data), bs, sd, t, spe, s, spe - index) for sd in self.seeds], axis=1)
      rows = idx[s - first]
      batch = {"image": data.images[rows], "label": data.labels[rows], "task": data.tasks[rows]}
      if self._greedy:
        batch["phase"] = np.full(rows.shape, layerwise.greedy_phase(self.fns, s, spe, epochs), np.int32)
      run.state, step_metrics = self.train_step(run.state, batch, learning_rates[s])
      yield s, 1, step_metrics["loss"]

  def _dispatch_indices(self, n: int, t: int, spe: int, first: int, count: int) -> np.ndarray:
    """Every replica's example indices of a dispatch (on the task data placed on the device once, shared
    by the replicas), int32 ``[R, K, B]``: replica ``r``'s are those of a single run of its seed."""
    return np.stack([step_indices(n, self.config.train.batch_size, sd, t, spe, first, count,
                                  rows=self.steps_per_dispatch) for sd in self.seeds])

  def _finish_task(self, run: Run, t: int) -> None:
    """Evaluates every replica on every task, the read-outs, the method's end-of-task update, a
    checkpoint, and one line with the mean and spread over the seeds."""
    T, split, record = self.scenario.num_tasks, self.config.eval.split, run.record
    record.R[:, t] = self.evaluate(run.state, split)
    for r, ro in enumerate(self.replica_readouts):
      if ro.active:
        sub = {k: v[r] for k, v in record.readouts.items()}
        ro.after_task(replica(run.state, r), self.scenario, t, sub, split)
        for k, v in sub.items():
          record.readouts[k][r] = v
    run.state = run.state.replace(method_state=self.end_task(run.state, t))
    self._record_method_report(run, t)
    run.writer.write_scalars(int(run.state.step[0]), {f"eval/accuracy_task{j + 1}_seed{s}": float(record.R[r, t, j])
                                                      for r, s in enumerate(self.seeds) for j in range(T)})
    run.save(task_done=True)
    run.progress.task, run.progress.task_step = t + 1, 0
    seen = 100 * record.R[:, t, : t + 1]
    print(f"after task {t + 1}/{T}: accuracy " + " ".join(f"{m:.1f}±{d:.1f}" for m, d in
                                                          zip(seen.mean(0), seen.std(0))) +
          f" (seen tasks, %, mean±std over {len(self.seeds)} seeds)", flush=True)

  def _report(self, run: Run) -> list:
    """Every seed's results dict; writes ``seed<s>/results.json`` and its heatmap for the seeds whose
    folder does not hold them yet (those that do are reported as found)."""
    out, sc = [], self.scenario
    for r, s in enumerate(self.seeds):
      if self._done[r] is not None:
        out.append(self._done[r])
        continue
      res = self.results(replica(run.record, r), run.progress, seed_config(self.replica_config, s).to_dict())
      res["replica"] = {"index": r, "num_seeds": len(self.seeds), "workdir": run.workdir,
                        "note": "trained as one replica of a vmapped program; train_seconds is the program's"}
      sub = seed_dir(run.workdir, s)
      os.makedirs(sub, exist_ok=True)
      report.write_json_atomic(os.path.join(sub, RESULTS_FILE), res)
      report.plot_accuracy_matrix(run.record.R[r], os.path.join(sub, HEATMAP_FILE),
                                  f"{self.config.method.name} on {sc.dataset}, seed {s}")
      self.replica_readouts[r].write(res, sub)
      out.append(res)
    return out


def run_replicas(config, workdir: str, on_step: Callable[[int], None] | None = None) -> dict:
  """``--config.num_seeds=R``: the summary results of R seeds trained as replicas (:class:`Replicas`);
  nothing is trained when every seed's folder already holds its finished results."""
  per_seed = [finished_results(seed_config(config, s), seed_dir(workdir, s)) for s in seeds_of(config)]
  if all(d is not None for d in per_seed):
    return write_summary(config, workdir, per_seed)
  return Replicas(config).run(workdir, on_step)
