"""What one pass over a workdir holds open and reads back: :class:`Run` (checkpointer, metric writer and the
evolving run state), the non-finite loss check, the progress bar and the metric (TensorBoard) writer.

Used by the stream loop (:mod:`lwcl.engine.loop`), for a single run and for replicas, whose states, records and
losses carry a leading replica axis.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import numpy as np

from lwcl.core.record import Progress, Record
from lwcl.errors import DivergenceError, Interrupted, LwclError
from lwcl.io.checkpoint import RunCheckpointer
from lwcl.platform.devices import local_copy, to_host


@dataclasses.dataclass
class Run:
  """One pass of the stream loop (:func:`lwcl.engine.loop.run_stream`) over a workdir: its open files and the
  evolving run state."""
  workdir: str
  ckpt: RunCheckpointer
  writer: Any
  is_main: bool
  config_dict: dict
  state: Any  # lwcl.core.state.TrainState (leaves with a leading replica axis for replicas)
  record: Record
  progress: Progress
  end_task_vmappable: bool = True  # False once the method's end-of-task hook failed under vmap (lwcl.engine.loop)
  # The state as the host reads it (lwcl.platform.devices.DataParallel.gather: replicas split over devices
  # gathered onto every device); the identity otherwise.
  gather: Callable[[Any], Any] = lambda tree: tree

  def save(self, task_done: bool) -> None:
    """Checkpoints the whole run state at the current global step (replicas step together), gathered as
    one array per leaf whatever the devices (a checkpoint resumes on any split)."""
    state = self.gather(self.state)
    step = int(np.max(to_host(state.step)))
    self.ckpt.save(step, {"state": state, "record": self.record}, self.progress.to_meta(task_done))

  def close(self) -> None:
    self.writer.close()
    self.ckpt.close()


def check_finite(losses: list, task: int, task_step: int, who: Callable[[int], str] = lambda r: ""):
  """The last step's loss; raises DivergenceError if any loss is not finite.

  Args:
    losses: ``(array, index)`` pairs in step order: one step's loss (a scalar, or ``[R]`` for replicas) with
      index None, or column ``index`` of a dispatch's losses (``[K]``, or ``[R, K]``).
    task, task_step: where the run is (for the message).
    who: words naming replica ``r`` (:meth:`lwcl.engine.replicas.Replicas.who`; empty for a single run).
  Returns:
    float64: a scalar, or ``[R]`` for replicas.
  Raises:
    DivergenceError: a loss is inf or nan (the earliest step, then the lowest replica, is named).
  """
  arrays = {id(a): a for a, _ in losses}
  host = dict(zip(arrays, jax.device_get([local_copy(a) for a in arrays.values()])))  # one transfer
  values = np.stack([np.asarray(host[id(a)] if i is None else np.asarray(host[id(a)])[..., i], np.float64)
                     for a, i in losses])
  bad = ~np.isfinite(values)
  if bad.any():
    where = tuple(np.argwhere(bad)[0])
    name = who(int(where[1])) if len(where) > 1 else ""
    raise DivergenceError(f"the training loss{name} became {values[where]} in task {task + 1} by step "
                          f"{task_step} of the task; lower --config.optimizer.learning_rate or set "
                          "--config.optimizer.grad_clip_norm or --config.optimizer.grad_clip_value")
  return values[-1]


def stopped(run: Run, error: BaseException, steps_per_task: Sequence[int]) -> LwclError:
  """The one-line error of a run stopped in the stream loop, naming the checkpoint a rerun resumes from.

  Args:
    run: the stopped run; error: a :class:`DivergenceError` or a ``KeyboardInterrupt`` (Ctrl-C);
    steps_per_task: the number of train steps of each task (to place checkpoints in the stream).
  Returns:
    The DivergenceError with the checkpoint kept (if any) added, or an :class:`Interrupted` saying where
    the run stopped and that rerunning resumes.
  """
  step = run.ckpt.latest_step()
  if isinstance(error, DivergenceError):
    kept = ("no checkpoint was written" if step is None else
            f"the last good checkpoint ({_place(step, steps_per_task)}) is kept")
    return DivergenceError(f"{error} ({kept})")
  p, num_tasks = run.progress, len(steps_per_task)
  where = (f"in task {p.task + 1} of {num_tasks} after step {p.task_step} of the task" if p.task < num_tasks
           else "after its last task, while writing its results")
  resume = ("from the start (no checkpoint was written yet)" if step is None else
            f"from its last checkpoint ({_place(step, steps_per_task)})")
  return Interrupted(f"interrupted (Ctrl-C) {where}, in {run.workdir}; rerun the same command to resume "
                     f"{resume}")


def _place(step: int, steps_per_task: Sequence[int]) -> str:
  """A checkpoint's global step in words: ``end of task 2`` or ``task 3, step 4 of the task``."""
  for t, n in enumerate(steps_per_task):
    if step <= n:
      return f"end of task {t + 1}" if step == n else f"task {t + 1}, step {step} of the task"
    step -= n
  return f"end of task {len(steps_per_task)}"


class _NoBar:
  def update(self, n=1):
    pass

  def set_postfix(self, **kwargs):
    pass

  def close(self):
    pass


def progress_bar(total: int, initial: int, desc: str, enabled: bool):
  """A tqdm bar over a task's steps, or a no-op one."""
  if not enabled:
    return _NoBar()
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=False)


def metric_writer(workdir: str, is_main: bool):
  """The run's scalars: logged, and on the main process also written as TensorBoard events in ``workdir``
  (:class:`lwcl.io.events.MetricWriter`, which does not import TensorFlow)."""
  from lwcl.io.events import MetricWriter  # pylint: disable=g-import-not-at-top
  return MetricWriter(workdir, write_events=is_main)
