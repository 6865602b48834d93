"""The dispatches of one task's training steps (:func:`lwcl.engine.loop.train_task`): one compiled step per host
batch (:func:`one_step_dispatches`), or up to ``train.steps_per_dispatch`` steps per call of the compiled
loop on device-resident data (:func:`multi_step_dispatches`); every replica's batches are those of the
single run of its seed and order (:func:`lwcl.data.pipeline.step_indices`).
"""

from __future__ import annotations

import jax
import numpy as np

from lwcl.data import stream_loader
from lwcl.data.pipeline import dispatch_lengths, step_indices
from lwcl.engine.build import Setup
from lwcl.engine.replicas import stack
from lwcl.engine.run_io import Run
from lwcl.layerwise import greedy_phase
from lwcl.platform.devices import DATA, REPLICA


def put(setup: Setup, batch: dict, per_replica: bool = True) -> dict:
  """A host batch placed for the compiled steps: a single run's split over the devices; batched replicas'
  (``[R, B, ...]``, or one shared ``[B, ...]`` batch when not ``per_replica``) as they are on one device of
  one process, else as the steps' shardings split them (:mod:`lwcl.engine.compiled`)."""
  parallel = setup.parallel
  if not setup.replicas.batched:
    return parallel.put_batch(batch)
  if not parallel.shards_replicas:
    return batch
  return parallel.put_global(batch, parallel.sharding(REPLICA, DATA) if per_replica else parallel.batch)


def _learning_rate(setup: Setup, lr):
  """A step's learning rate (a scalar, or ``[R]`` when swept) for the compiled step."""
  parallel = setup.parallel
  if not parallel.shards_replicas or np.ndim(lr) == 0:
    return lr
  return parallel.put_global(lr, parallel.sharding(REPLICA))


def _indices(setup: Setup, t: int, first: int, count: int, rows: int | None = None) -> np.ndarray:
  """Every replica's example indices of task steps ``first .. first + count - 1`` (:func:`step_indices`:
  those of the single run of the replica's seed and order), int32 ``[rows, B]`` (``[R, rows, B]`` when
  batched)."""
  bs, spe = setup.config.train.batch_size, setup.steps_per_epoch[t]
  return setup.replicas.each(lambda r: step_indices(len(setup.stream(r).train_data[t]), bs, setup.seeds[r], t, spe,
                                                    first, count, rows=rows))


def _gather(setup: Setup, t: int, rows: np.ndarray) -> dict:
  """The training batch of example indices ``rows`` (``[B]``, or ``[R, B]``: each replica's from its own
  stream's data)."""
  if len(setup.streams) == 1:
    return _fields(setup.train_data[t], rows)
  return stack([_fields(setup.stream(r).train_data[t], rows[r]) for r in range(setup.replicas.size)])


def _fields(data, rows) -> dict:
  """The batch of ``data``'s (:class:`lwcl.data.examples.Examples`) examples ``rows`` (an index array, or
  ``slice(None)`` for all): ``{'image': uint8 [..., H, W, C], 'label': int32 [...], 'task': int32 [...]}``."""
  return {"image": data.images[rows], "label": data.labels[rows], "task": data.tasks[rows]}


def _with_phase(batch: dict, shape: tuple, phase: int) -> dict:
  """``batch`` with greedy training's ``phase`` (int32 ``shape``: the block that trains, as data, so that
  one compiled step serves every phase)."""
  return {**batch, "phase": np.full(shape, phase, np.int32)}


def train_batch_spec(setup: Setup) -> dict:
  """Shapes and dtypes (``jax.ShapeDtypeStruct``) of the batch :func:`one_step_dispatches` feeds the train
  step of a single run (no replica axis): the keys, shapes and dtypes of a real batch of the first task,
  phase included for greedy training, so that a step lowered from them (``bin/bench layerwise --config``)
  is the one the run compiles."""
  rows = np.arange(setup.config.train.batch_size) % len(setup.train_data[0])
  batch = _fields(setup.train_data[0], rows)
  if setup.fns.is_greedy:
    batch = _with_phase(batch, rows.shape, 0)
  return {k: jax.ShapeDtypeStruct(x.shape, x.dtype) for k, x in batch.items()}


def one_step_dispatches(setup: Setup, run: Run, t: int, total: int):
  """``train.steps_per_dispatch = 1``: one compiled step per host batch (``[B, ...]``, or ``[R, B, ...]``);
  yields ``(step, 1, loss)`` after dispatching each step (``run.state`` updated)."""
  config, spe, fns = setup.config, setup.steps_per_epoch[t], setup.fns
  learning_rates = setup.learning_rates_of_task(spe)
  start = run.progress.task_step
  for s in range(start, total):
    epoch, index = divmod(s, spe)
    if s == start or index == 0:  # the indices of the rest of this epoch
      first, idx = s, _indices(setup, t, s, spe - index)
      streamed = stream_loader.streamed_batches(setup.train_data[t], config.train.batch_size,
                                                setup.seeds[0], t, epoch, index, setup.replicas.batched)
    rows = idx[..., s - first, :]
    batch = next(streamed) if streamed is not None else _gather(setup, t, rows)
    if fns.is_greedy:
      batch = _with_phase(batch, rows.shape, greedy_phase(fns, s, spe, config.train.epochs_per_task))
    run.state, step_metrics = setup.steps.train_step(run.state, put(setup, batch),
                                                     _learning_rate(setup, learning_rates[..., s]))
    yield s, 1, step_metrics["loss"]


def multi_step_dispatches(setup: Setup, run: Run, t: int, total: int):
  """``train.steps_per_dispatch = K > 1``: the task's training data on the device once (shared by the
  replicas, or stacked ``[R, N, ...]`` for per-replica streams), then up to ``K`` steps per call of the
  compiled loop (:func:`lwcl.engine.steps.make_train_steps`);
  yields ``(first step, count, losses [K] or [R, K])`` after each call (``run.state`` updated). Dispatches
  end at every checkpoint step and, while recording the LCA curve, after every step (:func:`_boundary`)."""
  config, spe, K, fns = setup.config, setup.steps_per_epoch[t], setup.steps_per_dispatch, setup.fns
  epochs = config.train.epochs_per_task
  learning_rates = setup.learning_rates_of_task(spe)
  rows = max(len(d) for st in setup.streams for d in st.train_data)  # one data shape, one compiled loop

  def padded(data):
    host = _fields(data, slice(None))
    return {k: np.concatenate([x, np.zeros((rows - len(x),) + x.shape[1:], x.dtype)]) for k, x in host.items()}

  if len(setup.streams) == 1:
    device_data = setup.parallel.replicate(padded(setup.train_data[t]))
  else:  # one stream per replica, split over the mesh with the replicas
    device_data = setup.parallel.place_state(stack([padded(st.train_data[t]) for st in setup.streams]))
  steps_before = sum(n * epochs for n in setup.steps_per_epoch[:t])
  for first, count in dispatch_lengths(run.progress.task_step, total, K,
                                       lambda s: _boundary(setup, s, steps_before, spe)):
    steps = {"index": _indices(setup, t, first, count, rows=K),
             "learning_rate": np.zeros(learning_rates.shape[:-1] + (K,), np.float32)}
    steps["learning_rate"][..., :count] = learning_rates[..., first:first + count]
    if fns.is_greedy:
      steps["phase"] = np.zeros(K, np.int32)
      steps["phase"][:count] = [greedy_phase(fns, s, spe, epochs) for s in range(first, first + count)]
    run.state, losses = setup.steps.train_steps(run.state, device_data, steps, np.int32(count))
    yield first, count, losses


def _boundary(setup: Setup, s: int, steps_before: int, spe: int) -> bool:
  """Whether a dispatch must end after task step ``s``: a checkpoint follows it, or the LCA curve or the
  per-epoch accuracy (an epoch of ``spe`` steps ends) records an evaluation after it."""
  every, evals = setup.config.checkpoint.every_steps, setup.config.eval
  return bool(s < evals.lca_batches or (every and (s + 1 + steps_before) % every == 0)
              or (evals.every_epoch and (s + 1) % spe == 0))
