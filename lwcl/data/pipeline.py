"""Input pipeline: deterministic minibatches on the host, preprocessing and augmentation on the device.

Batches are dicts of NumPy arrays ``{'image': uint8 [B, H, W, C], 'label': int32 [B], 'task': int32 [B]}``
(evaluation batches add ``'mask'``: float32 ``[B]``, 0 for padding). The order of training examples is a
pure function of ``(seed, task, epoch)``, so a run resumed in the middle of an epoch sees exactly the
batches an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from lwcl.core.options import Option
from lwcl.data.examples import Examples
from lwcl.data.lazy import LazyImages
from lwcl.errors import ConfigError, DataError

OPTIONS = (
    Option("data.normalize", "standardize", "standardize (per-channel mean / std of the training set) | unit "
           "(to [0, 1]) | none", choices=("standardize", "unit", "none")),
    Option("data.augment.random_crop", False, "pad then crop back at a random offset"),
    Option("data.augment.crop_padding", 4, "random_crop: pixels of padding on each side", minimum=0),
    Option("data.augment.horizontal_flip", False, "flip each image left-right with probability 1/2"),
)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per epoch (the last partial batch is dropped so every step has the same shape).

  Raises:
    DataError: if there are fewer examples than one batch.
  """
  if num_examples < batch_size:
    raise DataError(f"only {num_examples} training examples for a batch of {batch_size}; lower "
                    "--config.train.batch_size or raise scenario.samples_per_task")
  return num_examples // batch_size


def epoch_order(num_examples: int, seed: int, task: int, epoch: int) -> np.ndarray:
  """The shuffled example order of one epoch: a pure function of ``(seed, task, epoch)``."""
  return np.random.default_rng([seed, task, epoch]).permutation(num_examples)


def train_batches(data: Examples, batch_size: int, seed: int, task: int, epoch: int,
                  start: int = 0) -> Iterator[dict]:
  """Yields the minibatches of one epoch, from batch index ``start`` on."""
  order = epoch_order(len(data), seed, task, epoch)
  for b in range(start, steps_per_epoch(len(data), batch_size)):
    idx = np.sort(order[b * batch_size:(b + 1) * batch_size])
    yield {"image": data.images[idx], "label": data.labels[idx], "task": data.tasks[idx]}


def step_indices(num_examples: int, batch_size: int, seed: int, task: int, steps_per_epoch: int, first: int,
                 count: int, rows: int | None = None) -> np.ndarray:
  """The example indices of ``count`` consecutive train steps of a task, from task step ``first`` on.

  Row ``i`` holds the (sorted) indices of the batch :func:`train_batches` yields at task step
  ``first + i``: epoch ``(first + i) // steps_per_epoch``, batch ``(first + i) % steps_per_epoch``.

  Args:
    num_examples: the task's training examples; batch_size: examples per step; seed, task: as in
      :func:`epoch_order`; steps_per_epoch: :func:`steps_per_epoch` of the task.
    first: task step of row 0 (>= 0); count: steps (>= 0); rows: rows of the result, >= ``count``
      (padding rows are 0); None = ``count``.
  Returns:
    int32 ``[rows, batch_size]``.
  Raises:
    ValueError: ``rows < count``.
  """
  rows = count if rows is None else rows
  if rows < count:
    raise ValueError(f"rows={rows} < count={count}")
  out = np.zeros((rows, batch_size), np.int32)
  epoch, order = None, None
  for i, s in enumerate(range(first, first + count)):
    e, b = divmod(s, steps_per_epoch)
    if e != epoch:
      epoch, order = e, epoch_order(num_examples, seed, task, e)
    out[i] = np.sort(order[b * batch_size:(b + 1) * batch_size])
  return out


def dispatch_lengths(first: int, total: int, max_steps: int, boundaries) -> list[tuple[int, int]]:
  """Splits task steps ``first .. total - 1`` into dispatches of at most ``max_steps`` steps.

  Args:
    first, total: the task steps to run, ``[first, total)``.
    max_steps: the longest dispatch (>= 1).
    boundaries: a function ``task_step -> bool``: True when a dispatch must end after that step (a
      checkpoint, a recorded evaluation); the last step always ends one.
  Returns:
    ``[(first_step, count), ...]`` in order, covering ``[first, total)`` exactly.
  """
  out, s = [], first
  while s < total:
    n = 1
    while n < max_steps and s + n < total and not boundaries(s + n - 1):
      n += 1
    out.append((s, n))
    s += n
  return out


def eval_batches(images: np.ndarray, labels: np.ndarray, task: int, batch_size: int) -> Iterator[dict]:
  """Yields fixed-size evaluation batches of one task's split, the last padded (``mask`` = 0). Streamed
  images (:class:`~lwcl.data.lazy.LazyImages`) in a multi-process run: each process reads only the rows of
  each batch it places (:meth:`lwcl.platform.devices.DataParallel.put_batch`), the others are zeros."""
  n = labels.shape[0]
  p, procs = jax.process_index(), jax.process_count()
  for s in range(0, n, batch_size):
    y = labels[s:s + batch_size]
    k = y.shape[0]
    if isinstance(images, LazyImages) and procs > 1:  # streamed: read only this process's rows (put_batch's)
      mine = np.arange(p * (batch_size // procs), (p + 1) * (batch_size // procs))
      mine = mine[mine < k]
      x = np.zeros((k,) + images.shape[1:], np.uint8)
      x[mine] = images[s + mine]
    else:
      x = images[s:s + batch_size]
    mask = np.ones(batch_size, np.float32)
    if k < batch_size:
      pad = batch_size - k
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, np.zeros(pad, y.dtype)])
      mask[k:] = 0.0
    yield {"image": x, "label": y, "task": np.full(batch_size, task, np.int32), "mask": mask}


def channel_moments(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation (population, ``ddof=0``) of ``images / 255``: float64 ``[C]``
  each, for images ``[..., C]`` (uint8: exact sums from a histogram of the 256 values, a fraction of
  the time and memory of float64 copies; other dtypes: numpy's mean and std)."""
  c = images.shape[-1]
  if images.dtype != np.uint8:
    x = images.reshape(-1, c).astype(np.float64) / 255.0
    return x.mean(0), x.std(0)
  flat = images.reshape(-1, c)
  values = np.arange(256, dtype=np.float64) / 255.0
  counts = np.zeros((c, 256), np.int64)
  rows = max(1, (1 << 20) // c)  # chunks: np.bincount copies its input to int64 first
  for start in range(0, len(flat), rows):
    chunk = flat[start:start + rows]
    for k in range(c):
      counts[k] += np.bincount(chunk[:, k], minlength=256)
  counts = counts.astype(np.float64)
  n = counts.sum(1)
  mean = counts @ values / n
  var = np.sum(counts * (values[None, :] - mean[:, None]) ** 2, axis=1) / n
  return mean, np.sqrt(var)


@dataclasses.dataclass(frozen=True)
class Preprocessor:
  """Turns uint8 images into normalized float32 on the device, with optional augmentation.

  Attributes:
    mean, std: per-channel statistics in [0, 1] units (tuples of length C); identity for ``'none'``.
    random_crop: pad by ``crop_padding`` pixels (zeros) and crop back at a random offset.
    crop_padding: pixels of padding for the random crop.
    horizontal_flip: flip each image left-right with probability 1/2.
  """
  mean: tuple
  std: tuple
  random_crop: bool = False
  crop_padding: int = 4
  horizontal_flip: bool = False

  @classmethod
  def from_config(cls, data_config, train_images: np.ndarray) -> "Preprocessor":
    """Statistics per channel from the training images, as ``data.normalize`` asks:
    ``standardize`` (zero mean, unit variance), ``unit`` (scale to [0, 1]) or ``none``."""
    c = train_images.shape[-1]
    mode = data_config.normalize
    if mode == "standardize":  # streamed images: the feature spec's statistics, or one pass in chunks
      if isinstance(train_images, LazyImages):
        mean, std = train_images.channel_stats()
      else:
        mean, std = channel_moments(train_images)
        std = np.maximum(std, 1e-6)
    elif mode == "unit":
      mean, std = (0.0,) * c, (1.0,) * c
    elif mode == "none":
      mean, std = (0.0,) * c, (1.0 / 255.0,) * c
    else:
      raise ConfigError(f"unknown data.normalize '{mode}'; use standardize, unit or none")
    aug = data_config.augment
    return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std), bool(aug.random_crop),
               int(aug.crop_padding), bool(aug.horizontal_flip))

  def __call__(self, images: jax.Array, rng: jax.Array | None = None) -> jax.Array:
    """Args: ``images`` uint8 ``[B, H, W, C]``; ``rng`` a PRNG key, or None for no augmentation
    (evaluation). Returns float32 ``[B, H, W, C]``."""
    x = images.astype(jnp.float32) / 255.0
    x = (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)
    if rng is None:
      return x
    crop_key, flip_key = jax.random.split(rng)
    b, h, w, _ = x.shape
    if self.random_crop and self.crop_padding > 0:
      p = self.crop_padding
      padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
      offsets = jax.random.randint(crop_key, (b, 2), 0, 2 * p + 1)
      x = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, im.shape[-1])))(
          padded, offsets)
    if self.horizontal_flip:
      flip = jax.random.bernoulli(flip_key, 0.5, (b, 1, 1, 1))
      x = jnp.where(flip, x[:, :, ::-1, :], x)
    return x

  @property
  def augments(self) -> bool:
    return (self.random_crop and self.crop_padding > 0) or self.horizontal_flip
