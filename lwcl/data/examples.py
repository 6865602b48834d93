"""A set of labelled examples: one task's split, or several tasks' examples together."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from lwcl.data.lazy import LazyImages


@dataclasses.dataclass(frozen=True)
class Examples:
  """Images with their labels and task ids, on the host.

  One task's train / valid / test split (``Task.train`` etc., every ``tasks`` entry that task's index),
  or examples of several tasks (joint training's union, importance estimation).

  Attributes:
    images: uint8 ``[N, H, W, C]``: a NumPy array, or :class:`~lwcl.data.lazy.LazyImages` (streaming
      source: read from disk when indexed).
    labels: int32 ``[N]``, in the scenario's output space.
    tasks: int32 ``[N]``, the stream index of each example's task.
  """
  images: np.ndarray
  labels: np.ndarray
  tasks: np.ndarray

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  @classmethod
  def of_task(cls, images: np.ndarray, labels: np.ndarray, task: int) -> "Examples":
    """Examples all of task ``task`` (``labels`` cast to int32)."""
    return cls(images, labels.astype(np.int32), np.full(labels.shape[0], task, np.int32))

  @classmethod
  def concatenate(cls, parts: Sequence["Examples"]) -> "Examples":
    """The examples of ``parts``, in order (streamed images stay on disk: a lazy view of them all)."""
    lazy = isinstance(parts[0].images, LazyImages)
    if lazy and len(parts) == 1:
      return parts[0]
    return cls(LazyImages.concatenate([p.images for p in parts]) if lazy else
               np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
               np.concatenate([p.tasks for p in parts]))

  @classmethod
  def from_tasks(cls, tasks, split: str = "train") -> "Examples":
    """One split (``'train'``, ``'valid'``, ``'test'``) of several :class:`~lwcl.data.scenarios.Task`."""
    return cls.concatenate([getattr(t, split) for t in tasks])
