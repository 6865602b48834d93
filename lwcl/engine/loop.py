"""The stream loop: every replica of a :class:`~lwcl.engine.build.Setup` trained through its tasks and evaluated.

:func:`run_stream` goes through the stream in named steps, on a state, record and losses that carry the
setup's replicas (:class:`~lwcl.engine.replicas.Replicas`: no leading axis for a single run, a leading ``R``
for batched replicas):

1. :func:`resume`: open the workdir's checkpoints and restore the newest, or start fresh (initial
   accuracies ``b``);
2. :func:`train_task`: the task's steps with the compiled train step (one per host batch, or
   ``train.steps_per_dispatch`` per compiled loop on device-resident data), logging, non-finite loss
   detection and checkpoints every ``checkpoint.every_steps`` steps;
3. :func:`finish_task`: the method's end-of-task update, then every task (future ones included) evaluated
   into the accuracy matrix (and, class-incremental, from the same scores, the Task-IL one), the
   layer-wise read-outs, and a checkpoint;
4. the report (:func:`lwcl.engine.report.report`): each replica's ``results.json``, scalars and plots.

Running again with the same workdir resumes from the newest checkpoint and ends with the same results.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
from absl import logging

from lwcl.config import options as config_options
from lwcl.core.record import Progress
from lwcl.core.state import TrainState
from lwcl.data.pipeline import eval_batches
from lwcl.engine import dispatch
from lwcl.engine import report as run_report
from lwcl.engine.build import Setup
from lwcl.engine.replicas import stack
from lwcl.engine.run_io import Run, check_finite, metric_writer, progress_bar, stopped
from lwcl.errors import DivergenceError
from lwcl.io.checkpoint import RunCheckpointer
from lwcl.io.results import result_config
from lwcl.platform import interrupts
from lwcl.platform.devices import to_host

MAX_DISPATCHES_AHEAD = 8  # the host waits for the device every 8 dispatches, 8 to 16 ahead (train_task)
# Errors a host hook raises when it needs concrete values (it then runs replica by replica).
_NOT_VMAPPABLE = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                  jax.errors.TracerIntegerConversionError)


def run_stream(setup: Setup, workdir: str, done: Sequence[dict | None] | None = None,
               on_step: Callable[[int], None] | None = None,
               on_task_end: Callable[[int, TrainState], None] | None = None) -> tuple[list, TrainState]:
  """Trains and evaluates every replica through the stream in ``workdir`` (resuming from its checkpoint).

  Args:
    setup: the run's setup; workdir: folder for checkpoints, results, TensorBoard events and plots.
    done: per replica, its finished results (reported as found, not rewritten) or None.
    on_step: called with the global step (int, over the whole stream) after every train step and its
      checkpoint, if any; e.g. a test's fault injection (a SIGKILL in mid-task). With
      ``train.steps_per_dispatch > 1`` it is called for every step of a dispatch, in order, once the
      dispatch has been issued (checkpoints are only written at dispatch ends).
    on_task_end: called with ``(t, state)`` after task ``t`` is evaluated, its method state updated and
      checkpointed (e.g. :mod:`lwcl.studies.lgd_push`); not called for tasks restored from a checkpoint.
  Returns:
    ``(results, state)``: every replica's results dict (:func:`lwcl.engine.report.report`) and the final
    train state (with the replicas' leading axis when batched).
  Raises:
    CheckpointError: the workdir holds a corrupt checkpoint or one of another experiment.
    DivergenceError: a loss became non-finite (nothing is saved past the last finite checkpoint, which the
      message names, with the replica's seed for ``num_seeds`` runs).
    Interrupted: Ctrl-C while running; the message says which checkpoint a rerun resumes from.
  """
  run = resume(setup, workdir)
  try:
    interrupts.check()  # safe points (lwcl.platform.interrupts): after the start-up, every step, every task
    for t in range(run.progress.task, setup.scenario.num_tasks):
      train_task(setup, run, t, on_step)
      finish_task(setup, run, t)
      interrupts.check()
      if on_task_end is not None:
        on_task_end(t, run.state)
    results = run_report.report(setup, run, done or [None] * setup.replicas.size)
  except (KeyboardInterrupt, DivergenceError) as e:  # one line: where it stopped, what a rerun resumes
    epochs = setup.config.train.epochs_per_task
    raise stopped(run, e, [n * epochs for n in setup.steps_per_epoch]) from None
  finally:
    run.close()
  return results, run.state


# -- evaluation -------------------------------------------------------------------------------------

def evaluate_task(setup: Setup, state: TrainState, task: int, split: str = "test") -> np.ndarray:
  """Accuracy (fraction) on one task's split: float64, a scalar, or ``[R]`` for batched replicas (task
  ``task`` of each replica's own stream: for task orders, every replica evaluates its own batches)."""
  return _task_accuracies(setup, state, task, split)[0]


def _task_accuracies(setup: Setup, state: TrainState, task: int, split: str) -> tuple:
  """``(accuracy, task_il_accuracy)`` on one task's split, each as :func:`evaluate_task`'s; the Task-IL
  accuracy (the same scores' argmax over the task's classes) in class-incremental setups
  (:attr:`Setup.task_il_masks`), else None."""
  correct = count = task_il = 0.0
  for batch in _eval_batches(setup, task, split):
    out = setup.steps.eval_step(state.params, state.batch_stats, dispatch.put(setup, batch, len(setup.streams) > 1),
                                state.method_state)
    correct, count = correct + out[0], count + out[1]
    if len(out) > 2:
      task_il = task_il + out[2]
  count = np.maximum(np.asarray(count, np.float64), 1.0)
  return (np.asarray(correct, np.float64) / count,
          None if setup.task_il_masks is None else np.asarray(task_il, np.float64) / count)


def _eval_batches(setup: Setup, task: int, split: str):
  """Evaluation batches of task ``task``: the shared stream's, or, one per replica stacked (``[R, B, ...]``)
  for per-replica streams, the shorter replicas padded with empty (``mask`` 0) batches."""
  per_stream = []
  for stream in setup.streams:
    data = getattr(stream.scenario.tasks[task], split)
    per_stream.append(list(eval_batches(data.images, data.labels, task, setup.eval_batch_size)))
  if len(per_stream) == 1:
    return per_stream[0]
  n = max(len(b) for b in per_stream)
  for batches in per_stream:
    batches += [dict(batches[0], mask=np.zeros_like(batches[0]["mask"]))] * (n - len(batches))
  return [stack([batches[i] for batches in per_stream]) for i in range(n)]


def evaluate(setup: Setup, state: TrainState, split: str = "test") -> np.ndarray:
  """Accuracy on every task of the stream, float32 ``[T]`` (``[R, T]`` for batched replicas)."""
  return evaluate_with_task_il(setup, state, split)[0]


def evaluate_with_task_il(setup: Setup, state: TrainState, split: str = "test") -> tuple:
  """``(accuracy, task_il_accuracy)`` on every task of the stream from one pass over the data, each float32
  ``[T]`` (``[R, T]`` for batched replicas); the Task-IL accuracies (class-incremental setups) or None."""
  per_task = [_task_accuracies(setup, state, j, split) for j in range(setup.scenario.num_tasks)]
  acc = np.stack([a for a, _ in per_task], axis=-1).astype(np.float32)
  if setup.task_il_masks is None:
    return acc, None
  return acc, np.stack([t for _, t in per_task], axis=-1).astype(np.float32)


# -- the stream -------------------------------------------------------------------------------------

def resume(setup: Setup, workdir: str) -> Run:
  """Opens ``workdir``; restores its newest checkpoint, or starts the stream (initial accuracies)."""
  os.makedirs(workdir, exist_ok=True)
  config, replicas = setup.config, setup.replicas
  config_dict = config.to_dict()
  is_main = jax.process_index() == 0
  ckpt = RunCheckpointer(os.path.join(workdir, "checkpoints"), config.checkpoint.keep,
                         result_config(config_dict), setup.data_fingerprint, config_options.defaults())
  state, record, progress = setup.initial_state(), setup.initial_record(), Progress()
  restored = ckpt.restore({"state": state, "record": record})
  writer = metric_writer(workdir, is_main)  # after the checks: a refused workdir gets no events file
  if restored is not None:
    tree, meta = restored
    state, record, progress = tree["state"], tree["record"].writable(), Progress.from_meta(meta)
    logging.info("resuming at task %d, step %d of the task", progress.task, progress.task_step)
    if is_main:
      seeds = f" {replicas.describe()}" if replicas.batched else ""
      print(f"lwcl: resuming{seeds} from checkpoint at task {progress.task + 1}, step "
            f"{progress.task_step} of the task", flush=True)
  run_report.add_segment(progress, run_report.run_provenance(setup), resumed=restored is not None)
  run = Run(workdir, ckpt, writer, is_main, config_dict, setup.parallel.place_state(state), record, progress,
            gather=setup.parallel.gather)
  if restored is None:
    record.b[...] = evaluate(setup, run.state, config.eval.split)
  return run


def train_task(setup: Setup, run: Run, t: int, on_step: Callable[[int], None] | None) -> None:
  """Runs task ``t`` from ``run.progress.task_step`` to its last step."""
  config, progress, record, replicas = setup.config, run.progress, run.record, setup.replicas
  T, epochs, bs = setup.scenario.num_tasks, config.train.epochs_per_task, config.train.batch_size
  spe, K = setup.steps_per_epoch[t], setup.steps_per_dispatch
  total, split, lca_n = spe * epochs, config.eval.split, config.eval.lca_batches
  every = config.checkpoint.every_steps
  steps_before = sum(n * epochs for n in setup.steps_per_epoch[:t])
  if progress.task_step == 0 and config.optimizer.reset_each_task and t > 0:
    run.state = run.state.replace(opt_state=setup.steps.init_opt(run.state.params))
  if lca_n and progress.task_step == 0:
    record.lca[..., t, 0] = evaluate_task(setup, run.state, t, split)
  bar = progress_bar(total, progress.task_step, f"task {t + 1}/{T}", config.train.progress and run.is_main)
  steps = dispatch.one_step_dispatches if K == 1 else dispatch.multi_step_dispatches
  pending, tic, loss, ahead = [], time.perf_counter(), float("nan"), collections.deque()
  for first, count, losses in steps(setup, run, t, total):
    ahead.append(losses)  # the host runs 8 to 16 dispatches ahead of the device (one wait per 8), so the bar
    if len(ahead) == 2 * MAX_DISPATCHES_AHEAD:  # moves with the device, not in bursts at log steps
      jax.block_until_ready([ahead.popleft() for _ in range(MAX_DISPATCHES_AHEAD)][-1])
    for s in range(first, first + count):  # the steps of a dispatch, after it was dispatched
      pending.append((losses, None if K == 1 else s - first))
      progress.task_step = s + 1
      progress.train_examples += bs
      step = s + 1 + steps_before
      if lca_n and s < lca_n:  # dispatches of one step (see dispatch._boundary)
        record.lca[..., t, s + 1] = evaluate_task(setup, run.state, t, split)
      if config.eval.every_epoch and (s + 1) % spe == 0:  # a dispatch ends here (dispatch._boundary)
        record.epoch_acc[..., t, (s + 1) // spe - 1] = evaluate_task(setup, run.state, t, split)
      due_log = (s + 1) % config.train.log_every_steps == 0
      due_ckpt = every and step % every == 0 and s + 1 < total  # a dispatch ends here (dispatch._boundary)
      if due_log or due_ckpt or s + 1 == total:
        loss, pending = check_finite(pending, t, s + 1, replicas.who), []
        bar.set_postfix(loss=f"{np.mean(loss):.4f}")
        run.writer.write_scalars(step, {"train/task": t + 1, **replicas.scalars("train/loss", loss)})
      if due_ckpt:
        progress.train_seconds += time.perf_counter() - tic
        run.save(task_done=False)
        tic = time.perf_counter()
      bar.update(1)
      if on_step is not None:
        on_step(step)
      interrupts.check()
  jax.block_until_ready(run.state)
  progress.train_seconds += time.perf_counter() - tic
  bar.close()
  record.final_loss[..., t] = loss  # the last step always checks (s + 1 == total)


def finish_task(setup: Setup, run: Run, t: int) -> None:
  """Runs the method's end-of-task update, evaluates every replica on every task after task ``t`` (and, in a
  class-incremental run, its Task-IL accuracies from the same scores; the read-outs), checkpoints, and
  prints a line (with the spread over the replicas when batched). The update comes first so that a method's
  evaluation scores (``Method.eval_scores``: iCaRL's exemplar means) see the state after the task, as
  Mammoth evaluates after its ``end_task``; the model's logits read no method state."""
  T, split, record, replicas = setup.scenario.num_tasks, setup.config.eval.split, run.record, setup.replicas
  run.state = run.state.replace(method_state=setup.parallel.place_state(end_task(setup, run, t)))
  record.R[..., t, :], task_il = evaluate_with_task_il(setup, run.state, split)
  if task_il is not None:  # class-incremental: the Task-IL row from the same evaluation
    record.task_il_R[..., t, :] = task_il
  if setup.readouts.active:
    state = run.gather(run.state)  # replicas split over devices: every replica on every device
    for r, seed in enumerate(setup.seeds):
      sub = {k: replicas.get(v, r) for k, v in record.readouts.items()}
      setup.parts(r)[2].after_task(replicas.get(state, r), setup.stream(r).scenario, t, sub, split, seed)
      for k, v in sub.items():  # a batched record's rows are views, but after_task may replace an array
        if replicas.batched:
          record.readouts[k][r] = v
        else:
          record.readouts[k] = v
  _record_method_report(setup, run, t)
  step = int(np.max(to_host(run.gather(run.state.step))))
  matrices = {"accuracy": record.R, **({"task_il_accuracy": record.task_il_R} if task_il is not None else {})}
  run.writer.write_scalars(step, {name: float(v) for key, M in matrices.items() for j in range(T) for name, v in
                                  replicas.scalars(f"eval/{key}_task{j + 1}", M[..., t, j]).items()})
  run.save(task_done=True)
  run.progress.task, run.progress.task_step = t + 1, 0
  if run.is_main:
    spread = f", mean±std over {replicas.describe()}" if replicas.batched else ""
    task_il_cells = "" if task_il is None else f"; Task-IL {_seen_cells(record.task_il_R, t, replicas)}"
    print(f"after task {t + 1}/{T}: accuracy {_seen_cells(record.R, t, replicas)}{task_il_cells} (seen tasks, "
          f"%{spread})", flush=True)


def _seen_cells(M: np.ndarray, t: int, replicas) -> str:
  """Row ``t`` of an accuracy matrix ``M`` over the tasks seen, in percent (mean±std over batched replicas)."""
  seen = 100 * np.asarray(M[..., t, : t + 1]).reshape(-1, t + 1)
  return " ".join(f"{m:.1f}" if not replicas.batched else f"{m:.1f}±{d:.1f}" for m, d in zip(seen.mean(0), seen.std(0)))


def end_task(setup: Setup, run: Run, task: int) -> Any:
  """The method's end-of-task hook on every replica: directly for a single run; for replicas of one stream
  (seeds) under ``jax.vmap``, or, for a hook that needs concrete values (a ConcretizationTypeError or
  tracer-conversion error under ``vmap``), one replica at a time (same results, logged); for per-replica
  streams (task orders) one replica at a time on its own data. Replicas split over devices are gathered
  first (every process then runs the hook on every replica). Returns the method state."""
  method, data, state, replicas = setup.method, setup.train_data[task], run.gather(run.state), setup.replicas

  def hook(ms, params, stats):
    return method.end_task(ms, params, stats, task, data)

  if not replicas.batched:
    return hook(state.method_state, state.params, state.batch_stats)
  if len(setup.streams) > 1:
    return stack([setup.parts(r)[1].end_task(*replicas.get((state.method_state, state.params, state.batch_stats), r),
                                             task, setup.stream(r).train_data[task]) for r in range(replicas.size)])
  if run.end_task_vmappable:
    try:
      return replicas.vmap(hook, 0)(state.method_state, state.params, state.batch_stats)
    except _NOT_VMAPPABLE as e:
      logging.info("%s.end_task cannot run under vmap (%s); running it replica by replica",
                   type(method).__name__, type(e).__name__)
      run.end_task_vmappable = False
  return stack([setup.parts(r)[1].end_task(*replicas.get((state.method_state, state.params, state.batch_stats), r),
                                           task, data) for r in range(replicas.size)])


def _record_method_report(setup: Setup, run: Run, t: int) -> None:
  """Copies task ``t``'s entries of the method's per-task counters (``Method.task_report``) into the
  record, and prints the method's warning about them, if any (GEM: steps whose solver did not converge
  or left a constraint violated)."""
  report = setup.method.task_report(run.gather(run.state.opt_state))
  for key, value in report.items():
    run.record.method_report[key][..., t] = np.asarray(value)[..., t]
  at_t = {k: v[..., t] for k, v in run.record.method_report.items()}
  warning = report and setup.method.report_warning(at_t)
  if warning and run.is_main:
    print(f"warning: task {t + 1}: {warning}", flush=True)
