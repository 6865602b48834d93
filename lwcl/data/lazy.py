"""Images that stay on disk: a view of rows of one or more record readers, read when indexed.

The streaming source (:mod:`lwcl.data.records`) hands the scenario :class:`LazyImages` instead of arrays:
selecting a task's classes, holding out validation examples and attaching a task's permutation or rotation
only compose index arrays and transforms; ``images[idx]`` reads those rows (and applies the transform)
then. The in-memory source's arrays and these views give the same pixels for the same rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lwcl.data import transforms
from lwcl.errors import DataError


@dataclasses.dataclass(frozen=True)
class StreamOptions:
  """How the streaming loader reads (``data.stream.*``): ``threads`` grain read threads, ``prefetch``
  batches read ahead, ``workers`` grain worker processes (0: threads only)."""
  threads: int = 2
  prefetch: int = 4
  workers: int = 0


@dataclasses.dataclass(frozen=True)
class Segment:
  """Rows ``indices`` (int64 ``[n]``) of ``reader`` (anything with ``read_images(sorted int64) -> uint8
  [n, H, W, C]`` and ``image_shape``), each image passed through ``transform`` (:func:`transforms.apply`)."""
  reader: object
  indices: np.ndarray
  transform: dict | None = None


class LazyImages:
  """uint8 ``[N, H, W, C]`` images read from disk when indexed.

  Indexing with an int array (any shape S), a boolean mask, a slice or an int returns NumPy uint8
  (``S + [H, W, C]``, ``[n, H, W, C]``, or ``[H, W, C]`` for an int), in the order asked; :meth:`view` and
  :meth:`with_transform` return new lazy
  views without reading.
  """

  __array_priority__ = 1000

  def __init__(self, segments, options: StreamOptions = StreamOptions()):
    self.segments = tuple(segments)
    if not self.segments:
      raise ValueError("LazyImages needs at least one segment")
    self.options = options
    self._offsets = np.cumsum([0] + [len(s.indices) for s in self.segments])

  @classmethod
  def of_reader(cls, reader, options: StreamOptions = StreamOptions()) -> "LazyImages":
    """All rows of ``reader`` (``reader.num_examples``), in order."""
    return cls([Segment(reader, np.arange(reader.num_examples, dtype=np.int64))], options)

  @property
  def shape(self) -> tuple:
    return (int(self._offsets[-1]),) + tuple(self.segments[0].reader.image_shape)

  dtype = np.dtype(np.uint8)
  ndim = 4

  def __len__(self) -> int:
    return int(self._offsets[-1])

  def _positions(self, key) -> np.ndarray:
    if isinstance(key, slice):
      return np.arange(len(self), dtype=np.int64)[key]
    key = np.asarray(key)
    if key.dtype == bool:
      if key.shape != (len(self),):
        raise IndexError(f"boolean index of shape {key.shape} for {len(self)} images")
      return np.flatnonzero(key)
    pos = key.astype(np.int64).reshape(-1)
    if pos.size and (pos.min() < -len(self) or pos.max() >= len(self)):
      raise IndexError(f"index out of range for {len(self)} images")
    return np.where(pos < 0, pos + len(self), pos)

  def view(self, key) -> "LazyImages":
    """The rows ``key`` (int array, mask or slice) as a new lazy view; nothing is read."""
    pos = self._positions(key)
    seg_of = np.searchsorted(self._offsets, pos, side="right") - 1
    out = []
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(seg_of)) + 1, [pos.size]]) if pos.size else []
    for start, stop in zip(bounds[:-1], bounds[1:]):  # runs of one segment keep their order
      k = seg_of[start]
      seg = self.segments[k]
      out.append(Segment(seg.reader, seg.indices[pos[start:stop] - self._offsets[k]], seg.transform))
    if not out:  # an empty view keeps a segment to know its image shape
      out = [Segment(self.segments[0].reader, np.zeros(0, np.int64), self.segments[0].transform)]
    return LazyImages(out, self.options)

  def with_transform(self, transform: dict | None) -> "LazyImages":
    """These rows with ``transform`` applied when read (rows that have one already are refused)."""
    if any(s.transform for s in self.segments) and transform:
      raise ValueError("these images already have a transform")
    return LazyImages([dataclasses.replace(s, transform=transform) for s in self.segments], self.options)

  @classmethod
  def concatenate(cls, parts) -> "LazyImages":
    """The rows of ``parts`` in turn."""
    segments = [s for p in parts for s in p.segments if len(s.indices)]
    return cls(segments or list(parts[0].segments[:1]), parts[0].options)

  def __getitem__(self, key) -> np.ndarray:
    if isinstance(key, (int, np.integer)):
      return self[np.asarray([key])][0]
    return self.read(key)

  def read(self, key, augment: tuple | None = None) -> np.ndarray:
    """``self[key]``; ``augment = (seed, task, epoch)`` asks readers that crop (``data.image_size``) for
    the training view of each image (:func:`lwcl.data.image_ops.view`)."""
    pos = self._positions(key)
    lead = np.shape(key) if not isinstance(key, slice) and np.asarray(key).dtype != bool else pos.shape
    out = np.empty((pos.size,) + self.shape[1:], np.uint8)
    seg_of = np.searchsorted(self._offsets, pos, side="right") - 1
    for k in np.unique(seg_of):
      rows = np.flatnonzero(seg_of == k)
      seg = self.segments[k]
      wanted = seg.indices[pos[rows] - self._offsets[k]]
      unique, inverse = np.unique(wanted, return_inverse=True)
      images = (seg.reader.read_images(unique) if augment is None else
                seg.reader.read_images(unique, augment))
      out[rows] = transforms.apply(images, seg.transform)[inverse.reshape(-1)]
    return out.reshape(tuple(lead) + self.shape[1:])

  def __array__(self, dtype=None, copy=None):
    raise DataError("streamed images cannot be loaded whole; this use needs the in-memory source "
                    "(--config.data.source=auto without data.record_dir) or train.steps_per_dispatch=1")

  def channel_stats(self, chunk: int = 4096) -> tuple[tuple, tuple]:
    """Per-channel mean and std (``[0, 1]`` units) of these images: the reader's stored statistics when
    this is one whole untransformed reader (``FeatureSpec.stats``), else one pass in chunks (exact sums of
    value counts: the in-memory statistics)."""
    if len(self.segments) == 1:
      seg = self.segments[0]
      stats = getattr(seg.reader, "stats", None)
      if stats and seg.transform is None and np.array_equal(seg.indices, np.arange(seg.reader.num_examples)):
        return tuple(stats["mean"]), tuple(stats["std"])
    counts = np.zeros((self.shape[-1], 256), np.int64)
    for s in range(0, len(self), chunk):
      counts += value_counts(self[s:s + chunk])
    return moments(counts)


def value_counts(images: np.ndarray) -> np.ndarray:
  """int64 ``[C, 256]``: how often each uint8 value occurs in each channel of ``images`` ``[..., C]``."""
  c = images.shape[-1]
  flat = images.reshape(-1, c)
  counts = np.zeros((c, 256), np.int64)
  rows = max(1, (1 << 20) // c)  # chunks: np.bincount copies its input to int64 first
  for start in range(0, len(flat), rows):
    for k in range(c):
      counts[k] += np.bincount(flat[start:start + rows, k], minlength=256)
  return counts


def moments(counts: np.ndarray) -> tuple[tuple, tuple]:
  """Per-channel mean and std (at least 1e-6) in ``[0, 1]`` units from :func:`value_counts`: exact sums,
  the arithmetic of :func:`lwcl.data.pipeline.channel_moments`, so a streamed data set's statistics equal
  the in-memory ones bit for bit however it was read in chunks."""
  values = np.arange(256, dtype=np.float64) / 255.0
  counts = counts.astype(np.float64)
  n = counts.sum(1)
  mean = counts @ values / n
  std = np.sqrt(np.sum(counts * (values[None, :] - mean[:, None]) ** 2, axis=1) / n)
  return tuple(float(m) for m in mean), tuple(float(v) for v in np.maximum(std, 1e-6))


def channel_stats(images) -> tuple[tuple, tuple]:
  """Per-channel mean and std in ``[0, 1]`` units (std at least 1e-6) of uint8 ``[N, H, W, C]`` images:
  NumPy arrays or :class:`LazyImages`. Returns two tuples of C floats."""
  if isinstance(images, LazyImages):
    return images.channel_stats()
  return moments(value_counts(images))
