"""The streaming loader: one epoch's training batches read from disk by grain, in the in-memory order.

:func:`train_batches` is :func:`lwcl.data.pipeline.train_batches` for any :class:`~lwcl.data.examples.Examples`:
in-memory examples go through the pipeline as before; streamed ones (:class:`~lwcl.data.lazy.LazyImages`)
through a grain ``MapDataset`` over the epoch's batch indices, read ahead by grain's threads (or worker
processes, ``data.stream.workers``), so a batch is the same examples in the same order as in memory.
An epoch starts at most one worker per batch it has left (grain deals batches to its workers in turn, so
the order is the same), and every worker ends with the run, ``kill -9`` included
(:func:`lwcl.platform.workers.exit_with_parent`).

Where a run is: the loader's position is the task step (``Progress.task_step``), which the orbax checkpoint
holds; a resumed run builds the iterator from that batch on (``start``), as grain's own iterator state
(``{'next_index': b}`` of a ``MapDataset`` iterator) would.

Several processes (``jax.process_count() > 1``): process ``p`` reads only rows ``[p * B / P, (p + 1) * B / P)``
of each global batch (the rows :meth:`lwcl.platform.devices.DataParallel.put_batch` takes from it), so the processes
read disjoint shards, together the global batch of one process; the other rows of its host batch are
zeros, never read.
"""

from __future__ import annotations

import functools
import gc
import os
from typing import Iterator

import jax
import numpy as np

from lwcl.core.options import Option
from lwcl.data import pipeline
from lwcl.data.examples import Examples
from lwcl.data.lazy import LazyImages
from lwcl.platform import workers as worker_processes

OPTIONS = (
    Option("data.stream.threads", 2, "grain read threads of the streaming loader", minimum=1),
    Option("data.stream.prefetch", 4, "batches read ahead (host), one more placed on the device", minimum=1),
    Option("data.stream.workers", 0, "grain worker processes decoding batches; 0 = the read threads decode",
           minimum=0),
)


def process_rows(batch_size: int) -> slice:
  """The rows of a global batch of ``batch_size`` this process reads (all of them on one process)."""
  p, n = jax.process_index(), jax.process_count()
  return slice(p * (batch_size // n), (p + 1) * (batch_size // n))


class _BatchReader:
  """Batch ``b`` of one epoch: ``{'image': uint8 [B, H, W, C], 'label': int32 [B], 'task': int32 [B]}``
  (picklable, for grain worker processes)."""

  def __init__(self, data: Examples, order: np.ndarray, batch_size: int, rows: slice, augment: tuple):
    self.data, self.order, self.batch_size, self.rows = data, order, batch_size, rows
    self.augment = augment  # (seed, task, epoch): the training views of cropping readers

  def __call__(self, b: int) -> dict:
    bs = self.batch_size
    idx = np.sort(self.order[b * bs:(b + 1) * bs])
    mine = self.data.images.read(idx[self.rows], self.augment)
    if mine.shape[0] == bs:
      images = mine
    else:
      images = np.zeros((bs,) + mine.shape[1:], np.uint8)
      images[self.rows] = mine
    return {"image": images, "label": self.data.labels[idx], "task": self.data.tasks[idx]}


def stream_batches(data: Examples, batch_size: int, seed: int, task: int, epoch: int,
                   start: int = 0):
  """The grain dataset of one epoch's batches ``start ..`` of streamed ``data`` (an ``IterDataset``).

  Args:
    data: examples whose ``images`` are :class:`LazyImages` (their ``options`` set threads, prefetch and
      worker processes); batch_size, seed, task, epoch, start: as :func:`lwcl.data.pipeline.train_batches`.
  Returns:
    A ``grain.IterDataset`` yielding the batch dicts of :func:`lwcl.data.pipeline.train_batches` (this
    process's rows read, the others zeros when there are several processes).
  Raises:
    DataError: fewer examples than one batch.
  """
  import grain  # pylint: disable=g-import-not-at-top
  n = pipeline.steps_per_epoch(len(data), batch_size)
  order = pipeline.epoch_order(len(data), seed, task, epoch)
  options = data.images.options
  read = _BatchReader(data, order, batch_size, process_rows(batch_size), (seed, task, epoch))
  ds = grain.MapDataset.range(start, n).map(read)
  workers = min(options.workers, n - start)  # a worker past the epoch's batches would read none
  if workers > 0:  # each worker ends when this process does (kill -9 included)
    return ds.to_iter_dataset().mp_prefetch(
        grain.MultiprocessingOptions(num_workers=workers),
        worker_init_fn=functools.partial(worker_processes.exit_with_parent, os.getpid()))
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=options.threads,
                                              prefetch_buffer_size=options.prefetch))


def _closing(batches, workers: bool = False) -> Iterator[dict]:
  """The batches of a grain iterator, closed in this thread (read threads joined, worker processes
  stopped) when the epoch ends, the consumer stops early, or a read fails. A DataError met in a worker
  process mid-run then ends the run in its one line: left to grain 0.2, its read thread and the exit
  handler both stop the workers, and the loser prints a traceback after the line.

  With worker processes (``workers``), batches arrive in shared memory that grain unlinks when their
  arrays are deleted, and the last ones stay in reference cycles of the closed iterator until the cyclic
  garbage collector runs: a run that fails soon after the epoch (e.g. on a damaged test split) then ended
  with Python's ``resource_tracker: ... leaked shared_memory objects`` warning after its error line. They
  are collected here (one ``gc.collect()`` an epoch)."""
  try:
    yield from batches
  finally:
    try:
      batches.close()
    except Exception:  # pylint: disable=broad-except  (closing must not hide the error that ended the epoch)
      pass
    if workers:
      gc.collect()


def _to_device(batches: Iterator[dict]) -> Iterator[dict]:
  """The batches one ahead on the (single, non-CPU) device; elsewhere as they are (on CPU the jitted
  step's own transfer is cheaper, see ``DataParallel.put_batch``)."""
  if jax.device_count() > 1 or jax.devices()[0].platform == "cpu":
    yield from batches
    return
  ahead = None
  for batch in batches:
    placed = jax.device_put(batch)
    if ahead is not None:
      yield ahead
    ahead = placed
  if ahead is not None:
    yield ahead


def streamed_batches(data: Examples, batch_size: int, seed: int, task: int, epoch: int, start: int,
                     replicas: bool = False) -> Iterator[dict] | None:
  """The grain-read batches of one epoch from batch ``start`` on (:func:`train_batches`) when ``data`` is
  streamed and the run is a plain one (its batches are those of :func:`lwcl.data.pipeline.step_indices`);
  None otherwise (in-memory data, or ``replicas``: seeds, orders and sweep candidates gather each
  replica's rows themselves). The hook of :func:`lwcl.engine.dispatch.one_step_dispatches`."""
  if replicas or not isinstance(data.images, LazyImages):
    return None
  return train_batches(data, batch_size, seed, task, epoch, start)


def train_batches(data: Examples, batch_size: int, seed: int, task: int, epoch: int,
                  start: int = 0) -> Iterator[dict]:
  """Yields one epoch's minibatches from batch index ``start`` on: :func:`lwcl.data.pipeline.train_batches`
  for in-memory data, :func:`stream_batches` (read by grain, prefetched) for streamed data. Same batches
  either way: ``{'image': uint8 [B, H, W, C], 'label': int32 [B], 'task': int32 [B]}``."""
  if not isinstance(data.images, LazyImages):
    return pipeline.train_batches(data, batch_size, seed, task, epoch, start)
  workers = data.images.options.workers > 0
  return _to_device(_closing(iter(stream_batches(data, batch_size, seed, task, epoch, start)), workers))
