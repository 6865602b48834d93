"""Episodic memory: per-task ring buffers of training examples, as one fixed-shape pytree.

The memory has a slot for every task of the stream (``max_tasks``, docs/design.md "Fixed shapes across tasks"),
each a ring buffer of ``M`` examples (uint8 images, int32 labels), plus a counter of the examples written
into each slot. Every function here is pure and traceable: the memory is updated inside the jitted train
step and checkpointed with the run like any other state.

* GEM (Lopez-Paz & Ranzato, *Gradient Episodic Memory for Continual Learning*, NeurIPS 2017, Sec. 3;
  reference code ``model/gem.py``, ``observe``) keeps, for each task, the last ``M`` examples it has seen
  (:func:`add`), and uses a task's whole buffer as that task's memory batch (:func:`task_batches`).
  The reference code cuts a minibatch at the end of the buffer and drops its remainder when ``M`` is not a
  multiple of the batch size; here the write position wraps, so the buffer always holds exactly the last
  ``M`` examples seen (``min(M, seen)`` before it is full).
* A-GEM (Chaudhry, Ranzato, Rohrbach, Elhoseiny, *Efficient Lifelong Learning with A-GEM*, ICLR 2019,
  Sec. 4, Eq. 11) draws its reference batch uniformly, without replacement, from the union of the old
  tasks' memories (:func:`sample_union`). (The A-GEM reference code keeps ring buffers per class; this
  module keeps them per task.)

A memory batch is a dict in the runner's batch format (``lwcl.data.pipeline``): ``image`` uint8
``[..., M, H, W, C]``, ``label`` int32 ``[..., M]``, ``task`` int32 ``[..., M]`` and ``mask`` float32
``[..., M]`` (1 for a stored example, 0 for an empty slot), so ``ModelFns.loss`` averages over the stored
examples only.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Memory:
  """Ring buffers of ``M`` examples for each of ``T = max_tasks`` task slots.

  Attributes:
    images: uint8 ``[T, M, H, W, C]``.
    labels: int32 ``[T, M]``.
    count: int32 ``[T]``, examples ever written into each slot; slot ``k`` holds
      ``min(count[k], M)`` examples and its next write goes to position ``count[k] % M``.
  """
  images: jax.Array
  labels: jax.Array
  count: jax.Array

  @property
  def max_tasks(self) -> int:
    return self.labels.shape[0]

  @property
  def per_task(self) -> int:
    return self.labels.shape[1]

  def valid(self) -> jax.Array:
    """bool ``[T, M]``: which positions hold an example."""
    return jnp.arange(self.per_task)[None, :] < self.count[:, None]


def create(max_tasks: int, per_task: int, image_shape: tuple) -> Memory:
  """An empty memory.

  Args:
    max_tasks: number of task slots (``scenario.max_tasks``).
    per_task: ``M``, examples kept per task.
    image_shape: ``(H, W, C)``.
  Raises:
    ValueError: ``max_tasks`` or ``per_task`` below 1.
  """
  if max_tasks < 1 or per_task < 1:
    raise ValueError(f"memory needs max_tasks >= 1 and per_task >= 1, got {max_tasks} and {per_task}")
  return Memory(images=jnp.zeros((max_tasks, per_task) + tuple(image_shape), jnp.uint8),
                labels=jnp.zeros((max_tasks, per_task), jnp.int32),
                count=jnp.zeros((max_tasks,), jnp.int32))


def add(memory: Memory, images: jax.Array, labels: jax.Array, task: jax.Array) -> Memory:
  """Writes a minibatch of task ``task`` into that task's ring buffer (GEM's memory update).

  Example ``i`` of the batch goes to position ``(count[task] + i) % M``. When the batch is larger than the
  buffer only its last ``M`` examples are written (the earlier ones would be overwritten anyway), so the
  buffer holds the last ``M`` examples of the task in the order they were seen.

  Args:
    memory: the memory.
    images: uint8 ``[B, H, W, C]``.
    labels: int32 ``[B]``.
    task: int32 scalar (may be traced), the task slot in ``[0, max_tasks)``.
  Returns:
    The updated memory (``count[task]`` grows by ``B``).
  """
  b, m = labels.shape[0], memory.per_task
  task = jnp.asarray(task, jnp.int32)
  i = jnp.arange(b)
  pos = (memory.count[task] + i) % m
  # Earlier examples that a later example of the same batch overwrites are sent out of bounds (dropped),
  # so no position is written twice (a scatter with duplicate indices has no defined winner).
  pos = jnp.where(i >= b - m, pos, m)
  images_t = memory.images[task].at[pos].set(images.astype(jnp.uint8), mode="drop")
  labels_t = memory.labels[task].at[pos].set(labels.astype(jnp.int32), mode="drop")
  return memory.replace(images=memory.images.at[task].set(images_t),
                        labels=memory.labels.at[task].set(labels_t),
                        count=memory.count.at[task].add(b))


def old_tasks(memory: Memory, current_task: jax.Array, num: int | None = None) -> jax.Array:
  """bool ``[num]``: slots ``k < current_task`` that hold at least one example.

  ``num`` defaults to ``max_tasks``; projection methods use ``max_tasks - 1`` (the last task is never an
  old task).
  """
  num = memory.max_tasks if num is None else num
  k = jnp.arange(num)
  return (k < current_task) & (memory.count[:num] > 0)


def task_batches(memory: Memory, num: int | None = None) -> dict:
  """The first ``num`` slots (default all) as a stacked batch for ``jax.vmap`` / ``jax.lax.map``.

  Returns:
    ``{'image': uint8 [num, M, H, W, C], 'label': int32 [num, M], 'task': int32 [num, M],
    'mask': float32 [num, M]}``; ``task`` is the slot index, ``mask`` marks stored examples.
  """
  num = memory.max_tasks if num is None else num
  m = memory.per_task
  return {"image": memory.images[:num], "label": memory.labels[:num],
          "task": jnp.broadcast_to(jnp.arange(num, dtype=jnp.int32)[:, None], (num, m)),
          "mask": memory.valid()[:num].astype(jnp.float32)}


def sample_union(memory: Memory, key: jax.Array, current_task: jax.Array, batch_size: int) -> dict:
  """A batch drawn uniformly without replacement from the union of the old tasks' memories (A-GEM).

  Old tasks are the slots ``k < current_task``. When they hold fewer than ``batch_size`` examples, all of
  them are taken (as A-GEM's reference code does) and the remaining rows have ``mask`` 0.

  Args:
    memory: the memory.
    key: PRNG key.
    current_task: int32 scalar (may be traced).
    batch_size: rows of the returned batch; at most ``max_tasks * M``.
  Returns:
    ``{'image': uint8 [batch_size, H, W, C], 'label', 'task': int32 [batch_size],
    'mask': float32 [batch_size]}``.
  Raises:
    ValueError: ``batch_size`` outside ``[1, max_tasks * M]``.
  """
  t, m = memory.max_tasks, memory.per_task
  if not 1 <= batch_size <= t * m:
    raise ValueError(f"sample_union batch_size must be in [1, {t * m}], got {batch_size}")
  ok = (memory.valid() & (jnp.arange(t)[:, None] < current_task)).reshape(-1)
  # Gumbel top-k over uniform scores restricted to the stored old examples: a uniform sample without
  # replacement; empty or current/future slots score -inf and come last.
  scores = jnp.where(ok, jax.random.gumbel(key, ok.shape), -jnp.inf)
  _, idx = jax.lax.top_k(scores, batch_size)
  slot, pos = idx // m, idx % m
  return {"image": memory.images[slot, pos], "label": memory.labels[slot, pos],
          "task": slot.astype(jnp.int32), "mask": ok[idx].astype(jnp.float32)}
