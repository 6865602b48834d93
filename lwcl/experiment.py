"""One continual-learning experiment: a stream of tasks, trained in turn and evaluated on every task.

:class:`Experiment` builds data, scenario, model and method from a config once; :meth:`Experiment.run`
then goes through the stream in named steps:

1. :meth:`~Experiment._resume`: open the workdir's checkpoints and restore the newest, or start fresh
   (initial accuracies ``b``);
2. :meth:`~Experiment._train_task`: the task's steps with the jitted train step (one per host batch, or
   ``train.steps_per_dispatch`` per compiled loop on device-resident data), logging, non-finite loss
   detection and checkpoints every ``checkpoint.every_steps`` steps;
3. :meth:`~Experiment._finish_task`: evaluate every task (future ones included) into the accuracy matrix,
   the layer-wise read-outs, the method's end-of-task update, and a checkpoint;
4. :meth:`~Experiment._report`: ``results.json``, TensorBoard scalars, the heatmap and the read-out plot.

Running again with the same workdir resumes from the newest checkpoint and ends with the same results.
Sweeps, task orders and the results-exist check are the caller's (:mod:`lwcl.driver`).
"""

from __future__ import annotations

import collections
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lwcl import config_values, layerwise
from lwcl import metrics as metrics_lib
from lwcl import optim
from lwcl import report
from lwcl import xla_flags
from lwcl.checkpoint import RunCheckpointer
from lwcl.run_io import Run, check_finite, metric_writer, progress_bar, stopped
from lwcl.data.pipeline import (Preprocessor, dispatch_lengths, eval_batches, step_indices, steps_per_epoch,
                                train_batches)
from lwcl.data.scenarios import build_scenario
from lwcl.data.sources import load_dataset
from lwcl.errors import DivergenceError
from lwcl.methods import build_method
from lwcl.models import build_model
from lwcl.parallel import DataParallel
from lwcl.results import RESULTS_FILE, data_fingerprint, fingerprint, result_config
from lwcl.run_state import Progress, Record
from lwcl.train import TrainState, make_eval_step, make_train_step, make_train_steps

HEATMAP_FILE = "accuracy_matrix.png"
MAX_DISPATCHES_AHEAD = 8  # the host waits for the device every 8 dispatches, 8 to 16 ahead (_train_task)


def validate(config) -> None:
  """Checks values the config types cannot (:func:`lwcl.config_values.check_values`).

  Raises:
    ConfigError: the first bad value, naming the key and the fix.
  """
  config_values.check_values(config)


class Experiment:
  """One experiment: data, model, method and compiled steps, built once from a config.

  Attributes:
    config: the (locked) ml_collections config.
    scenario: the task stream.
    fns: model functions; method: the continual method; tx: method transformation + base optimizer.
    parallel: the device mesh and shardings.
    data_fingerprint: SHA-256 of the data set (:func:`lwcl.results.data_fingerprint`), in checkpoints and
      ``results.json``.
    readouts: the layer-wise read-outs (inactive for plain runs).
    final_state: the train state after :meth:`run` (for tests and notebooks).
    replica_seeds: None here; :class:`lwcl.replicas.Replicas` (leading replica axis on state, record and
      losses) sets its seeds, and overrides the hooks marked "(replicas override)".
  """

  replica_seeds = None

  def __init__(self, config):
    validate(config)
    self.config = self.run_config = config  # run_config: the config the checkpoints belong to
    self.parallel = DataParallel.create(config.devices)
    xla_flags.check_in_effect()
    # Steps per compiled call; multi-process runs keep one host batch per step (each process would have to
    # place the whole task's data; not done yet).
    self.steps_per_dispatch = config.train.steps_per_dispatch if jax.process_count() == 1 else 1
    if self.steps_per_dispatch != config.train.steps_per_dispatch:
      logging.warning("multi-process run: train.steps_per_dispatch=%d ignored, one step per dispatch",
                      config.train.steps_per_dispatch)
    self.parallel.check_batch_size(config.train.batch_size, "train.batch_size")
    eval_bs = config.train.eval_batch_size
    self.eval_batch_size = -(-eval_bs // self.parallel.size) * self.parallel.size
    self.dataset = load_dataset(config.data)
    self.data_fingerprint = data_fingerprint(config.data, self.dataset)  # stored with checkpoints, results
    self.preprocess = Preprocessor.from_config(config.data, self.dataset.train_images)
    self._build(build_scenario(config.scenario, self.dataset))

  def _build(self, scenario) -> None:
    """Model functions, method, optimizer and compiled steps for ``scenario``."""
    config = self.config
    self.scenario = scenario
    model = build_model(config.model, scenario, self.steps_per_dispatch)
    self.fns = layerwise.build_fns(config.layerwise, model, self.preprocess,
                                   scenario.label_masks, scenario.image_shape, scenario.num_heads,
                                   scenario.output_dim)
    self.method = build_method(config.method, scenario, self.fns)
    self._set_train_data()
    epochs = config.train.epochs_per_task
    self.tx = optim.optimizer(self.fns, self.method.transformation(), config.optimizer, epochs)
    self.learning_rates = optim.LearningRates(self.fns, config.optimizer, epochs)
    rep, bat = self.parallel.replicated, self.parallel.batch
    self.train_step = jax.jit(make_train_step(self.fns, self.tx, self.method), donate_argnums=(0,),
                              in_shardings=(rep, bat, rep), out_shardings=(rep, rep))
    self._greedy = isinstance(self.fns, layerwise.LayerwiseFns) and self.fns.mode == "greedy"
    self.train_steps = jax.jit(make_train_steps(self.fns, self.tx, self.method, bat), donate_argnums=(0,),
                               in_shardings=(rep, rep, rep, rep), out_shardings=(rep, rep))
    self.eval_step = jax.jit(make_eval_step(self.fns), in_shardings=(rep, rep, bat),
                             out_shardings=(rep, rep))
    self.readouts = layerwise.Readouts(self.fns, config.layerwise, strides=str(config.model.strides),
                                       seed=config.seed, image_shape=scenario.image_shape,
                                       parallel=self.parallel, eval_batch_size=self.eval_batch_size)

  def _set_train_data(self) -> None:
    self.train_data = [self.method.training_data(self.scenario, t) for t in range(self.scenario.num_tasks)]
    self.steps_per_epoch = [steps_per_epoch(len(d), self.config.train.batch_size) for d in self.train_data]

  def reorder(self, order) -> None:
    """Switches to another task order (``scenario.task_order``, a permutation of the tasks as defined),
    reusing the compiled steps when the label space is unchanged (always, except masked task-incremental
    heads, whose masks follow the order). The data set is not reloaded."""
    config = self.config.copy_and_resolve_references()
    with config.unlocked():
      config.scenario.task_order = tuple(int(i) for i in order)
    config.lock()
    self.config = self.run_config = config
    scenario = build_scenario(config.scenario, self.dataset)
    if np.array_equal(scenario.label_masks, self.scenario.label_masks):
      self.scenario = self.method.scenario = scenario
      self._set_train_data()
    else:
      self._build(scenario)

  # -- state ---------------------------------------------------------------------------------------

  def initial_state(self, seed: int | None = None) -> TrainState:
    """The state at the start of the stream, from ``seed`` (default ``config.seed``; replicas pass theirs)."""
    key = jax.random.PRNGKey(self.config.seed if seed is None else seed)
    init_key, train_key = jax.random.split(key)
    params, batch_stats = self.fns.init(init_key, self.scenario.image_shape)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=self.tx.init(params),
                      method_state=self.method.init_state(params, batch_stats), rng=train_key)

  def initial_record(self) -> Record:
    """An empty :class:`~lwcl.run_state.Record` of this stream."""
    T = self.scenario.num_tasks
    return Record.zeros(T, self.config.eval.lca_batches, self.readouts.initial_record(T),
                        self.config.train.epochs_per_task, self.method.report_keys)

  # -- evaluation ----------------------------------------------------------------------------------

  def evaluate_task(self, state: TrainState, task: int, split: str = "test") -> float:
    """Accuracy (fraction) on one task's split."""
    data = getattr(self.scenario.tasks[task], split)
    correct = count = 0.0
    for batch in eval_batches(data.images, data.labels, task, self.eval_batch_size):
      c, n = self.eval_step(state.params, state.batch_stats, self.parallel.put_batch(batch))
      correct, count = correct + c, count + n
    return float(correct) / max(float(count), 1.0)

  def evaluate(self, state: TrainState, split: str = "test") -> np.ndarray:
    """Accuracy on every task of the stream, float32 ``[T]``."""
    return np.asarray([self.evaluate_task(state, j, split) for j in range(self.scenario.num_tasks)],
                      np.float32)

  # -- the stream ----------------------------------------------------------------------------------

  def run(self, workdir: str, on_step: Callable[[int], None] | None = None,
          on_task_end: Callable[[int, TrainState], None] | None = None) -> dict:
    """Trains and evaluates the whole stream in ``workdir`` (resuming when it holds a checkpoint).

    Args:
      workdir: folder for checkpoints, ``results.json``, TensorBoard events and plots.
      on_step: called with the global step (int, over the whole stream) after every train step and its
        checkpoint, if any; e.g. a test's fault injection (a SIGKILL in mid-task). With
        ``train.steps_per_dispatch > 1`` it is called for every step of a dispatch, in order, once the
        dispatch has been issued (checkpoints are only written at dispatch ends).
      on_task_end: called with ``(t, state)`` after task ``t`` is evaluated, its method state updated
        and checkpointed (e.g. a diagnostic, ``lwcl.studies.lgd_push``); not called for tasks restored
        from a checkpoint.
    Returns:
      The results dict also written to ``workdir/results.json``.
    Raises:
      CheckpointError: the workdir holds a corrupt checkpoint (unreadable, or its checksum differs) or one of
        another experiment (another config, or other data: :attr:`data_fingerprint`).
      DivergenceError: the loss became non-finite (nothing is saved past the last finite checkpoint, which
        the message names).
      Interrupted: Ctrl-C (``KeyboardInterrupt``) while running; the message says where the run stopped and
        which checkpoint a rerun resumes from.
    """
    run = self._resume(workdir)
    try:
      for t in range(run.progress.task, self.scenario.num_tasks):
        self._train_task(run, t, on_step)
        self._finish_task(run, t)
        if on_task_end is not None:
          on_task_end(t, run.state)
      results = self._report(run)
    except (KeyboardInterrupt, DivergenceError) as e:  # one line: where it stopped, what a rerun resumes
      epochs = self.config.train.epochs_per_task
      raise stopped(run, e, [n * epochs for n in self.steps_per_epoch]) from None
    finally:
      run.close()
    self.final_state = run.state
    return results

  def _resume(self, workdir: str) -> Run:
    """Opens ``workdir``; restores its newest checkpoint, or starts the stream (initial accuracies)."""
    os.makedirs(workdir, exist_ok=True)
    config_dict = self.run_config.to_dict()
    is_main = jax.process_index() == 0
    ckpt = RunCheckpointer(os.path.join(workdir, "checkpoints"), self.config.checkpoint.keep,
                           result_config(config_dict), self.data_fingerprint)
    state, record, progress = self.initial_state(), self.initial_record(), Progress()
    restored = ckpt.restore({"state": state, "record": record})
    writer = metric_writer(workdir, is_main)  # after the checks: a refused workdir gets no events file
    if restored is not None:
      tree, meta = restored
      state, record, progress = tree["state"], tree["record"].writable(), Progress.from_meta(meta)
      logging.info("resuming at task %d, step %d of the task", progress.task, progress.task_step)
      if is_main:
        seeds = "" if self.replica_seeds is None else f" {len(self.replica_seeds)} seeds"
        print(f"lwcl: resuming{seeds} from checkpoint at task {progress.task + 1}, step "
              f"{progress.task_step} of the task", flush=True)
    run = Run(workdir, ckpt, writer, is_main, config_dict, self.parallel.replicate(state), record, progress)
    if restored is None:
      record.b[:] = self.evaluate(run.state, self.config.eval.split)
    return run

  def _train_task(self, run: Run, t: int, on_step: Callable[[int], None] | None) -> None:
    """Runs task ``t`` from ``run.progress.task_step`` to its last step."""
    config, progress, record = self.config, run.progress, run.record
    T, epochs, bs = self.scenario.num_tasks, config.train.epochs_per_task, config.train.batch_size
    spe = self.steps_per_epoch[t]
    total, split, lca_n = spe * epochs, config.eval.split, config.eval.lca_batches
    every = config.checkpoint.every_steps
    steps_before = sum(self.steps_per_epoch[k] * epochs for k in range(t))
    if progress.task_step == 0 and config.optimizer.reset_each_task and t > 0:
      run.state = run.state.replace(opt_state=self._init_opt_state(run.state.params))
    if lca_n and progress.task_step == 0:
      record.lca[..., t, 0] = self.evaluate_task(run.state, t, split)
    bar = progress_bar(total, progress.task_step, f"task {t + 1}/{T}", config.train.progress and run.is_main)
    dispatch = self._one_step_dispatches if self.steps_per_dispatch == 1 else self._multi_step_dispatches
    pending, tic, loss, ahead = [], time.perf_counter(), float("nan"), collections.deque()
    for first, count, losses in dispatch(run, t, total):
      ahead.append(losses)  # the host runs 8 to 16 dispatches ahead of the device (one wait per 8), so the bar
      if len(ahead) == 2 * MAX_DISPATCHES_AHEAD:  # moves with the device, not in bursts at log steps
        jax.block_until_ready([ahead.popleft() for _ in range(MAX_DISPATCHES_AHEAD)][-1])
      for s in range(first, first + count):  # the steps of a dispatch, after it was dispatched
        pending.append((losses, None if self.steps_per_dispatch == 1 else s - first))
        progress.task_step = s + 1
        progress.train_examples += bs
        step = s + 1 + steps_before
        if lca_n and s < lca_n:  # dispatches of one step (see _boundary)
          record.lca[..., t, s + 1] = self.evaluate_task(run.state, t, split)
        if config.eval.every_epoch and (s + 1) % spe == 0:  # a dispatch ends here (_boundary)
          record.epoch_acc[..., t, (s + 1) // spe - 1] = self.evaluate_task(run.state, t, split)
        due_log = (s + 1) % config.train.log_every_steps == 0
        due_ckpt = every and step % every == 0 and s + 1 < total  # a dispatch ends here (_boundary)
        if due_log or due_ckpt or s + 1 == total:
          loss, pending = check_finite(pending, t, s + 1, self.replica_seeds), []
          bar.set_postfix(loss=f"{np.mean(loss):.4f}")
          run.writer.write_scalars(step, {"train/task": t + 1, **self._loss_scalars(loss)})
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
    record.final_loss[..., t] = loss  # the last step always checks (s + 1 == total)

  def _init_opt_state(self, params):
    """A fresh optimizer state (``optimizer.reset_each_task``) (replicas override)."""
    return self.parallel.replicate(self.tx.init(params))

  def _loss_scalars(self, loss) -> dict:
    """The TensorBoard scalars of a checked loss (replicas override)."""
    return {"train/loss": float(loss)}

  def _one_step_dispatches(self, run: Run, t: int, total: int):
    """``train.steps_per_dispatch = 1``: one jitted step per host batch; yields ``(step, 1, loss)`` after
    dispatching each step (``run.state`` updated)."""
    config, spe = self.config, self.steps_per_epoch[t]
    learning_rates = self.learning_rates.for_task(spe)
    start = run.progress.task_step
    for s in range(start, total):
      epoch, index = divmod(s, spe)
      if s == start or index == 0:
        batches = train_batches(self.train_data[t], config.train.batch_size, config.seed, t, epoch,
                                start=index)
      batch = layerwise.with_phase(self.fns, next(batches), s, spe, config.train.epochs_per_task)
      run.state, step_metrics = self.train_step(run.state, self.parallel.put_batch(batch), learning_rates[s])
      yield s, 1, step_metrics["loss"]

  def _multi_step_dispatches(self, run: Run, t: int, total: int):
    """``train.steps_per_dispatch = K > 1``: the task's training data on the device once, then up to ``K``
    steps per call of the compiled loop (:func:`lwcl.train.make_train_steps`); yields ``(first step,
    count, losses [K])`` after dispatching each call (``run.state`` updated). Dispatches end at every
    checkpoint step and, while recording the LCA curve, after every step (:meth:`_boundary`)."""
    config, spe, K = self.config, self.steps_per_epoch[t], self.steps_per_dispatch
    epochs, data = config.train.epochs_per_task, self.train_data[t]
    learning_rates = self.learning_rates.for_task(spe)
    rows = max(len(d) for d in self.train_data)  # one data shape, one compiled loop for the whole stream
    host = {"image": data.images, "label": data.labels, "task": data.tasks}
    padded = {k: np.concatenate([x, np.zeros((rows - len(x),) + x.shape[1:], x.dtype)])
              for k, x in host.items()}
    device_data = self.parallel.replicate(padded)
    steps_before = sum(n * epochs for n in self.steps_per_epoch[:t])
    for first, count in dispatch_lengths(run.progress.task_step, total, K,
                                         lambda s: self._boundary(s, steps_before, spe)):
      steps = {"index": self._dispatch_indices(len(data), t, spe, first, count),
               "learning_rate": np.zeros(K, np.float32)}
      steps["learning_rate"][:count] = learning_rates[first:first + count]
      if self._greedy:
        steps["phase"] = np.zeros(K, np.int32)
        steps["phase"][:count] = [layerwise.greedy_phase(self.fns, s, spe, epochs)
                                  for s in range(first, first + count)]
      run.state, losses = self.train_steps(run.state, device_data, steps, np.int32(count))
      yield first, count, losses

  def _dispatch_indices(self, n: int, t: int, spe: int, first: int, count: int) -> np.ndarray:
    """The example indices of a dispatch's steps, int32 ``[K, B]`` (:func:`step_indices`) (replicas
    override: one row per replica)."""
    return step_indices(n, self.config.train.batch_size, self.config.seed, t, spe, first, count,
                        rows=self.steps_per_dispatch)

  def _boundary(self, s: int, steps_before: int, spe: int) -> bool:
    """Whether a dispatch must end after task step ``s``: a checkpoint follows it, or the LCA curve or
    the per-epoch accuracy (an epoch of ``spe`` steps ends) records an evaluation after it."""
    every, evals = self.config.checkpoint.every_steps, self.config.eval
    return bool(s < evals.lca_batches or (every and (s + 1 + steps_before) % every == 0)
                or (evals.every_epoch and (s + 1) % spe == 0))

  def _finish_task(self, run: Run, t: int) -> None:
    """Evaluates every task after task ``t``, updates the method state, checkpoints, prints a line."""
    T, split, record = self.scenario.num_tasks, self.config.eval.split, run.record
    record.R[t] = self.evaluate(run.state, split)
    self.readouts.after_task(run.state, self.scenario, t, record.readouts, split)
    method_state = self.method.end_task(run.state.method_state, run.state.params, run.state.batch_stats, t,
                                        self.train_data[t])
    run.state = run.state.replace(method_state=self.parallel.replicate(method_state))
    self._record_method_report(run, t)
    run.writer.write_scalars(int(run.state.step), {f"eval/accuracy_task{j + 1}": float(record.R[t, j])
                                                   for j in range(T)})
    run.save(task_done=True)
    run.progress.task, run.progress.task_step = t + 1, 0
    if run.is_main:
      print(f"after task {t + 1}/{T}: accuracy " +
            " ".join(f"{100 * a:.1f}" for a in record.R[t, : t + 1]) + " (seen tasks, %)", flush=True)

  def _record_method_report(self, run: Run, t: int) -> None:
    """Copies task ``t``'s entries of the method's per-task counters (``Method.task_report``) into the
    record, and prints the method's warning about them, if any (GEM: steps whose solver did not converge
    or left a constraint violated)."""
    report = self.method.task_report(run.state.opt_state)
    for key, value in report.items():
      run.record.method_report[key][..., t] = np.asarray(value)[..., t]
    at_t = {k: v[..., t] for k, v in run.record.method_report.items()}
    warning = report and self.method.report_warning(at_t)
    if warning and run.is_main:
      print(f"warning: task {t + 1}: {warning}", flush=True)

  def _report(self, run: Run) -> dict:
    """The results dict; on the main process also ``results.json``, scalars and plots."""
    results = self.results(run.record, run.progress, run.config_dict)
    if run.is_main:
      run.writer.write_scalars(int(run.state.step), {k: v for k, v in results.items()
                                                     if k in ("acc", "bwt", "fwt", "forgetting")
                                                     and v is not None and np.isfinite(v)})
      report.write_json_atomic(os.path.join(run.workdir, RESULTS_FILE), results)
      sc = self.scenario
      report.plot_accuracy_matrix(run.record.R, os.path.join(run.workdir, HEATMAP_FILE),
                                  f"{self.config.method.name} on {sc.dataset} ({sc.kind}, "
                                  f"{sc.incremental}-incremental)")
      self.readouts.write(results, run.workdir)
    return results

  def results(self, record: Record, progress: Progress, config_dict: dict) -> dict:
    """The results dict of a finished stream (see ``results.json`` in the README)."""
    R, b = record.R.astype(np.float64), record.b.astype(np.float64)
    out = {"accuracy_matrix": R.tolist(), "initial_accuracy": b.tolist(),
           "eval_split": self.config.eval.split}
    out.update(metrics_lib.summarize(R, b))
    out.update(self.readouts.results(record.readouts))
    out.update(self.method.report_results(record.method_report) if record.method_report else {})
    if self.config.eval.lca_batches:
      out["lca_curves"] = record.lca.tolist()
      out["lca"] = metrics_lib.lca(record.lca, self.config.eval.lca_batches)
    if self.config.eval.every_epoch:
      out["epoch_accuracy"] = record.epoch_acc.tolist()
    out.update({
        "method": self.config.method.name,
        "dataset": self.scenario.dataset,
        "data_source": self.dataset.source,
        "scenario": {"kind": self.scenario.kind, "incremental": self.scenario.incremental,
                     "num_tasks": self.scenario.num_tasks, "output_dim": self.scenario.output_dim,
                     "num_heads": self.scenario.num_heads},
        "tasks": [t.describe() for t in self.scenario.tasks],
        "final_train_loss": record.final_loss.tolist(),
        "train_seconds": float(progress.train_seconds),
        "train_examples": int(progress.train_examples),
        "examples_per_second": float(progress.train_examples / max(progress.train_seconds, 1e-9)),
        "devices": {"count": self.parallel.size, "platform": jax.devices()[0].platform,
                    "processes": jax.process_count()},
        "config": config_dict,
        "fingerprint": fingerprint(config_dict),
        "data_fingerprint": self.data_fingerprint,
    })
    return out
