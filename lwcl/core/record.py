"""What a run records besides the train state: typed progress through the stream and the recorded arrays.

Both are checkpointed with the train state (:mod:`lwcl.io.checkpoint`): :class:`Record` as arrays in the
checkpoint's pytree, :class:`Progress` as JSON in its metadata.
"""

from __future__ import annotations

import dataclasses

import flax
import jax
import numpy as np
from flax import serialization


@dataclasses.dataclass
class Progress:
  """Where a run stands; the next step to run is step ``task_step`` of task ``task``.

  Attributes:
    task: index of the task being trained (``T`` once the stream is done).
    task_step: train steps of that task already done (0 at a task's start).
    train_seconds: wall time spent in training steps so far (seconds, excludes evaluation).
    train_examples: training examples processed so far (steps x batch size).
    segments: what computed each part of the run: ``[{'task', 'task_step', 'provenance'}]``, one entry where
      the run started and one more at each resume whose provenance block (commit, packages, CPU...:
      :mod:`lwcl.platform.provenance`) differs from the previous entry's; ``provenance`` None for a part
      computed by an lwcl that did not record it (:func:`lwcl.engine.report.add_segment`).
  """
  task: int = 0
  task_step: int = 0
  train_seconds: float = 0.0
  train_examples: int = 0
  segments: list = dataclasses.field(default_factory=list)

  def to_meta(self, task_done: bool = False) -> dict:
    """JSON metadata for a checkpoint; with ``task_done`` the progress after the current task ends."""
    meta = dataclasses.asdict(self)
    if task_done:
      meta["task"], meta["task_step"] = self.task + 1, 0
    return meta

  @classmethod
  def from_meta(cls, meta: dict) -> "Progress":
    """The progress stored in a checkpoint's metadata (other keys are ignored; a checkpoint written before
    ``segments`` existed has none: an empty list)."""
    return cls(**{f.name: meta[f.name] for f in dataclasses.fields(cls) if f.name != "segments"},
               segments=list(meta.get("segments") or []))


@flax.struct.dataclass
class Record:
  """Arrays recorded over a run (host NumPy, float32, written in place as the run goes).

  Attributes:
    R: ``[T, T]`` accuracy matrix, ``R[i, j]`` the accuracy on task ``j`` after training through task
      ``i`` (fractions).
    b: ``[T]`` accuracy of every task at initialization.
    lca: ``[T, lca_batches + 1]`` accuracy on each task over its first minibatches (``eval.lca_batches``).
    final_loss: ``[T]`` the training loss at the end of each task (nats).
    epoch_acc: ``[T, E]`` accuracy on task ``t`` after each of the ``E`` epochs of its training, the
      learning curve (filled with ``eval.every_epoch``, zeros otherwise; orbax saves no empty array).
    readouts: layer-wise read-outs (:class:`lwcl.layerwise.Readouts`): ``block_R`` ``[T, K, T]`` and
      ``probe`` ``[K, T]``; empty for plain runs.
    method_report: the method's per-task counters (``Method.task_report``, e.g. GEM's solver), ``[T]``
      each; empty for methods that keep none.
    task_il_R: ``[T, T]`` the Task-IL accuracy matrix of a class-incremental run, laid out as ``R``: the
      same scores' argmax over the evaluated task's classes alone (the task identity given at test time;
      Mammoth's ``mask_classes``). None for other runs, whose checkpoints hold no entry for it (their layout
      as before it existed).
  """
  R: np.ndarray
  b: np.ndarray
  lca: np.ndarray
  final_loss: np.ndarray
  readouts: dict
  epoch_acc: np.ndarray
  method_report: dict = flax.struct.field(default_factory=dict)
  task_il_R: np.ndarray | None = None

  @classmethod
  def zeros(cls, num_tasks: int, lca_batches: int, readouts: dict, epochs: int = 1,
            report_keys=(), task_il: bool = False) -> "Record":
    """An empty record of a ``num_tasks`` stream of ``epochs`` epochs per task, with the read-outs'
    initial arrays, zero counters for ``report_keys`` and, with ``task_il`` (class-incremental runs), a
    zero Task-IL accuracy matrix."""
    T = num_tasks
    return cls(R=np.zeros((T, T), np.float32), b=np.zeros((T,), np.float32),
               lca=np.zeros((T, lca_batches + 1), np.float32), final_loss=np.zeros((T,), np.float32),
               readouts=readouts, epoch_acc=np.zeros((T, epochs), np.float32),
               method_report={k: np.zeros((T,), np.float32) for k in report_keys},
               task_il_R=np.zeros((T, T), np.float32) if task_il else None)

  def writable(self) -> "Record":
    """A copy whose arrays are writable host NumPy arrays (after a checkpoint restore)."""
    return jax.tree.map(np.array, self)


def _state_dict(record: Record) -> dict:
  """The record as checkpointed (``flax.serialization.to_state_dict``): every field, but ``task_il_R`` only
  when it is recorded, so that other runs' checkpoints keep the layout they had before it existed (orbax
  restores a tree only into the structure it was saved with)."""
  return {f.name: serialization.to_state_dict(getattr(record, f.name)) for f in dataclasses.fields(record)
          if f.name != "task_il_R" or record.task_il_R is not None}


def _from_state_dict(target: Record, state: dict) -> Record:
  """``target`` with the fields of ``state`` (:func:`_state_dict`'s layout for ``target``).

  Raises:
    ValueError: ``state`` lacks a field of that layout or has another one.
  """
  names = list(_state_dict(target))
  if sorted(names) != sorted(state):
    raise ValueError(f"the state dict of a Record has fields {sorted(state)}, not {sorted(names)}, at path "
                     f"{serialization.current_path()}")
  return target.replace(**{n: serialization.from_state_dict(getattr(target, n), state[n], name=n) for n in names})


serialization.register_serialization_state(Record, _state_dict, _from_state_dict, override=True)

