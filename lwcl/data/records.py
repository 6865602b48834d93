"""Labelled images in ArrayRecord files: the feature spec, the writer, and the random-access readers.

A record folder (``data.record_dir``) holds ``features.json`` (a :class:`FeatureSpec`, and the manifest of
the shards written: :mod:`lwcl.data.shards`) and each split's ArrayRecord shards
``<split>.array_record-<i>-of-<n>`` with their labels beside them (``<shard>.labels.npy``), every record a
serialized ``tf.train.Example`` (TFDS's own record format) with a bytes feature ``image`` (raw uint8
``H*W*C``, PNG or JPEG) and an int64 feature ``label``. TensorFlow is not needed: the Example message is
parsed with ``protobuf``. The writer is deterministic: the same examples and shard count give the same
bytes in any process. TFDS data sets prepared with ``file_format='array_record'`` are read by the same
reader (:mod:`lwcl.data.tfds_stream`).

Nothing the writer did not record is trusted: :class:`RecordReader` verifies every byte of a split's
shards and labels files, the shard set and each shard's record count against the manifest when it opens
the split (the choice of verifying at open, and its cost: :mod:`lwcl.data.shards`).
"""

from __future__ import annotations

import dataclasses
import glob
import io
import json
import math
import os

import numpy as np
from absl import logging

from lwcl.data import shards
from lwcl.data.shards import FEATURES_FILE, LABELS_SUFFIX, REWRITE
from lwcl.data.tf_example import example_class, parse, serialize  # noqa: F401  (re-exported)
from lwcl.errors import DataError

ENCODINGS = ("raw", "png", "jpeg")
# One record per chunk (random access reads one record, as TFDS writes them), zstd level 1: the size of
# the default compression, about twice as fast to read (15 -> 7 us a Fashion-MNIST record).
WRITER_OPTIONS = "group_size:1,zstd:1"
MAX_CLASSES = 1 << 20
MAX_IMAGE_BYTES = 1 << 31  # H * W * C of one image: past it a shape is nonsense (NumPy cannot hold a batch)
_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}  # PIL image modes read as uint8, and their channels
_WARNED = set()  # folders without a manifest warned about (once a process)


def _integer(v) -> int:
  if isinstance(v, int) and not isinstance(v, bool):  # any size (math.isfinite overflows past 1e308)
    return v
  if not isinstance(v, float) or not math.isfinite(v) or v != int(v):
    raise ValueError(f"{v!r} is not an integer")
  return int(v)


def _stats_problem(stats, channels: int) -> str | None:
  """What is wrong with a spec's ``stats`` (None, or ``{'mean': [C], 'std': [C]}`` in ``[0, 1]`` units)."""
  if stats is None:
    return None
  ok = isinstance(stats, dict) and all(
      isinstance(stats.get(k), list) and len(stats[k]) == channels and all(
          isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in stats[k])
      for k in ("mean", "std"))
  if not ok or min(stats["std"]) <= 0:
    return f"stats {json.dumps(stats)[:60]} is not {{'mean': [{channels} numbers], 'std': [{channels} positive]}}"
  return None


def spec_problem(shape: tuple, dtype: str, num_classes: int) -> str | None:
  """What is wrong with a feature spec's image shape ``(H, W, C)`` (0: varying), dtype and class count
  (a spec of lwcl's or of a TFDS data set, :mod:`lwcl.data.tfds_stream`), or None."""
  if len(shape) != 3 or min(shape) < 0 or shape[2] < 1:
    return f"image.shape {list(shape)} is not [H, W, C]"
  if math.prod(max(d, 1) for d in shape) > MAX_IMAGE_BYTES:
    return f"image.shape {str(list(shape))[:60]} needs over {MAX_IMAGE_BYTES} bytes an image"
  if dtype != "uint8":
    return f"image.dtype {dtype} is not uint8"
  if not 1 <= num_classes <= MAX_CLASSES:
    return f"label.num_classes={num_classes} is not in [1, {MAX_CLASSES}]"
  return None


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """What the records of a folder hold (``features.json``).

  Attributes:
    image_shape: ``(H, W, C)`` of the decoded uint8 images; ``H = W = 0`` (null in JSON): PNG / JPEG images
      of varying size, read at ``data.image_size`` (:mod:`lwcl.data.image_ops`).
    encoding: ``raw`` (``H*W*C`` bytes), ``png`` or ``jpeg``.
    num_classes: labels are int in ``[0, num_classes)``.
    class_names: one name per class.
    image_key, label_key: the Example's feature names.
    stats: ``{'mean': [C], 'std': [C]}`` of the training images in ``[0, 1]`` units, or None.
    splits: the manifest of the shards written (:mod:`lwcl.data.shards`), by split; None for a folder
      written without one (older lwcl) or a spec not read from a folder.
  """
  image_shape: tuple
  encoding: str
  num_classes: int
  class_names: tuple = ()
  image_key: str = "image"
  label_key: str = "label"
  stats: dict | None = None
  splits: dict | None = dataclasses.field(default=None, compare=False)

  def to_json(self) -> dict:
    """The spec (what the records are; not the manifest of where they are)."""
    return {"image": {"shape": list(self.image_shape), "dtype": "uint8", "encoding": self.encoding},
            "label": {"num_classes": self.num_classes, "names": list(self.class_names)},
            "image_key": self.image_key, "label_key": self.label_key, "stats": self.stats}

  def written_as(self) -> dict:
    """What a reader must agree on to decode the records: a split's manifest records it when written."""
    return {"shape": list(self.image_shape), "encoding": self.encoding, "image_key": self.image_key,
            "label_key": self.label_key}

  @classmethod
  def from_json(cls, d, where: str) -> "FeatureSpec":
    """Raises DataError naming the first missing or wrong entry of ``where`` (a features.json)."""
    if not isinstance(d, dict):
      raise DataError(f"feature spec {where} holds a JSON {type(d).__name__}, not an object; give image.shape "
                      "[H, W, C] and label.num_classes (see lwcl.data.records.FeatureSpec)")
    try:
      image, label = d["image"], d["label"]
      shape = tuple(_integer(v or 0) for v in image["shape"])
      encoding, num_classes = str(image.get("encoding", "raw")), _integer(label["num_classes"])
      dtype, names = image.get("dtype", "uint8"), label.get("names") or ()
      keys = (d.get("image_key", "image"), d.get("label_key", "label"))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
      raise DataError(f"feature spec {where} lacks or mistypes {e}; give image.shape [H, W, C] and "
                      "label.num_classes (see lwcl.data.records.FeatureSpec)") from None
    problem = spec_problem(shape, str(dtype), num_classes)
    if problem is None:
      if min(shape) == 0 and encoding == "raw":
        problem = f"raw images need a fixed image.shape, not {list(shape)}"
      elif encoding not in ENCODINGS:
        problem = f"image.encoding '{encoding}' is not one of {ENCODINGS}"
      elif names and (not isinstance(names, list) or len(names) != num_classes
                      or not all(isinstance(n, (str, int)) for n in names)):
        problem = f"label.names is not a list of {num_classes} names (one per class)"
      elif not all(isinstance(k, str) and k for k in keys):
        problem = f"image_key / label_key {list(keys)} are not feature names"
      else:
        problem = _stats_problem(d.get("stats"), shape[2])
    if problem:
      raise DataError(f"feature spec {where}: {problem}; fix it (see lwcl.data.records.FeatureSpec)")
    splits = d.get("splits")
    if splits is not None:
      if not isinstance(splits, dict):
        raise DataError(f"{where}: splits is not an object; {REWRITE}")
      splits = {s: shards.parse_manifest(s, m, where) for s, m in splits.items()}
    return cls(shape, encoding, num_classes, tuple(str(n) for n in names or range(num_classes)), keys[0],
               keys[1], d.get("stats"), splits)


def encode_image(image: np.ndarray, encoding: str) -> bytes:
  """uint8 ``[H, W, C]`` as the bytes of ``encoding``."""
  if encoding == "raw":
    return np.ascontiguousarray(image, np.uint8).tobytes()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
      buf, format="PNG" if encoding == "png" else "JPEG", quality=95)
  return buf.getvalue()


def decode_image(data: bytes, spec: FeatureSpec, where: str) -> np.ndarray:
  """The uint8 ``[H, W, C]`` image of a record's image bytes; DataError when it does not fit the spec."""
  if spec.encoding == "raw":
    x = np.frombuffer(data, np.uint8)
    if x.size != int(np.prod(spec.image_shape)):
      raise DataError(f"a record of {where} has {x.size} image bytes, the feature spec's shape "
                      f"{list(spec.image_shape)} needs {int(np.prod(spec.image_shape))}; fix image.shape in "
                      f"{FEATURES_FILE} or rewrite the records")
    return x.reshape(spec.image_shape)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(data)) as im:
      mode, x = im.mode, np.asarray(im)
  except Exception as e:  # pylint: disable=broad-except  (PIL: UnidentifiedImageError, OSError, bombs, ...)
    raise DataError(f"a record of {where} is no readable {spec.encoding.upper()} image ({type(e).__name__}); "
                    f"fix image.encoding in {FEATURES_FILE} or rewrite the records") from None
  if mode not in _MODES or x.dtype != np.uint8:
    raise DataError(f"a record of {where} is a {mode}-mode image ({x.dtype}), not 8-bit grey or RGB(A); "
                    "convert the images to 8 bits and rewrite the records")
  x = x.reshape(x.shape[:2] + (_MODES[mode],))
  fixed = spec.image_shape if min(spec.image_shape) > 0 else (x.shape[0], x.shape[1], spec.image_shape[2])
  if x.shape != tuple(fixed):
    raise DataError(f"a record of {where} decodes to an image of shape {list(x.shape)}, the feature spec "
                    f"says {list(spec.image_shape)}; fix image.shape in {FEATURES_FILE} (0 for varying sizes)")
  return x


def split_files(directory: str, split: str) -> list:
  """The sorted ArrayRecord shards of ``split`` in ``directory``."""
  return sorted(p for p in glob.glob(os.path.join(directory, f"{split}.array_record*"))
                if not p.endswith(LABELS_SUFFIX) and not p.endswith(".tmp"))


def write_split(directory: str, split: str, chunks, spec: FeatureSpec, num_shards: int = 1) -> int:
  """Writes ``split``'s records from ``chunks`` (an iterable of ``(uint8 [n, H, W, C], int [n])``) into
  ``num_shards`` ArrayRecord files, interleaved (example ``g`` in shard ``g % num_shards``, so the split
  reads back in this order), each shard's labels beside it (``<shard>.labels.npy``, int32), and records
  them in ``features.json`` (the manifest, :mod:`lwcl.data.shards`, with ``spec``; the folder's other
  splits kept). Shards of the split from an earlier write with another count are refused when read.

  Returns the number of examples written.
  Raises:
    DataError: an encoding not in :data:`ENCODINGS`, ``directory`` a file, or a write that fails (a full
      disk, too many shards open): the split written in part is then refused when read.
  """
  from array_record.python.array_record_module import ArrayRecordWriter  # pylint: disable=g-import-not-at-top
  if spec.encoding not in ENCODINGS:
    raise DataError(f"image encoding '{spec.encoding}' is not one of {ENCODINGS}; pick one of them")
  names = [shards.shard_name(split, i, num_shards) for i in range(num_shards)]
  n, shard_labels, writers = 0, [[] for _ in range(num_shards)], []
  with shards.writing(directory):
    try:
      writers += [ArrayRecordWriter(os.path.join(directory, name), WRITER_OPTIONS) for name in names]
      for images, labels in chunks:
        for x, y in zip(images, labels):
          writers[n % num_shards].write(serialize(encode_image(np.asarray(x), spec.encoding), int(y), spec))
          shard_labels[n % num_shards].append(int(y))
          n += 1
    finally:
      for w in writers:
        w.close()
    for name, labels in zip(names, shard_labels):  # the labels beside each shard: read once, not parsed again
      np.save(os.path.join(directory, name + LABELS_SUFFIX), np.asarray(labels, np.int32))
    splits = shards.recorded_splits(directory)
    splits[split] = {"layout": shards.INTERLEAVED, "examples": n, "written_as": spec.written_as(),
                     "shards": [shards.shard_entry(directory, name, len(labels))
                                for name, labels in zip(names, shard_labels)]}
    shards.write_features_file(directory, {**spec.to_json(), "splits": splits})
  return n


def write_features(directory: str, spec: FeatureSpec) -> None:
  """Writes ``features.json``: ``spec``, and the manifest of the splits written so far."""
  with shards.writing(directory):
    splits = shards.recorded_splits(directory)
    shards.write_features_file(directory, {**spec.to_json(), **({"splits": splits} if splits else {})})


def write_dataset(directory: str, train: tuple, test: tuple, class_names=(), encoding: str = "raw",
                  num_shards: int = 1) -> FeatureSpec:
  """Writes an in-memory data set (``train``, ``test``: ``(uint8 [N, H, W, C], int [N])``) as a record
  folder, with the training images' channel statistics in the spec; returns the spec."""
  from lwcl.data.lazy import channel_stats  # pylint: disable=g-import-not-at-top
  mean, std = channel_stats(train[0])
  num_classes = int(max(np.max(train[1]), np.max(test[1]))) + 1
  spec = FeatureSpec(tuple(train[0].shape[1:]), encoding, num_classes,
                     tuple(class_names) or tuple(str(i) for i in range(num_classes)),
                     stats={"mean": list(mean), "std": list(std)})
  for split, (x, y) in (("train", train), ("test", test)):
    write_split(directory, split, ((x[s:s + 8192], y[s:s + 8192]) for s in range(0, len(y), 8192)), spec,
                num_shards)
  write_features(directory, spec)
  return spec


def read_spec(directory: str) -> FeatureSpec:
  """The folder's feature spec and manifest; DataError when the folder or its ``features.json`` is
  missing or wrong, or changed since it was written."""
  path = os.path.join(directory, FEATURES_FILE)
  if not os.path.isdir(directory):
    raise DataError(f"data.record_dir {directory} does not exist; fix --config.data.record_dir")
  if not os.path.exists(path):
    raise DataError(f"{path} is missing; write the feature spec there (lwcl.data.records.write_features) "
                    "or point --config.data.record_dir at a record folder")
  try:
    with open(path) as f:
      d = json.load(f)
  except (OSError, ValueError) as e:
    raise DataError(f"{path} is not readable JSON ({e}); fix or rewrite it") from None
  if isinstance(d, dict):
    shards.check_self_digest(d, path)
  return FeatureSpec.from_json(d, path)


def warn_unlisted(directory: str, spec: FeatureSpec) -> None:
  """Warns (once a process) that the folder's features.json lists no shards; called once its splits are
  read (a folder refused is reported by its error line alone)."""
  if spec.splits is None and directory not in _WARNED:
    _WARNED.add(directory)
    logging.warning("%s/%s lists no shards (written by an older lwcl): shards read one after the other, labels "
                    "parsed from the records; rewrite the folder to have them verified", directory, FEATURES_FILE)


class RecordReader:
  """Random access to one split of a record folder, verified when opened (:mod:`lwcl.data.shards`).

  Attributes:
    num_examples, image_shape ``(H, W, C)``, spec, paths, stats (the spec's, for the train split),
    layout (``interleaved`` or ``concatenated``).
  """

  def __init__(self, directory: str, split: str, spec: FeatureSpec | None = None, image_size: int = 0):
    spec = spec or read_spec(directory)
    where, found = f"{directory} ({split})", split_files(directory, split)
    if spec.splits is None:  # written without a manifest: nothing recorded to check but the -of-N set
      if not found:
        raise DataError(f"no ArrayRecord files for split '{split}' in {directory} (expected "
                        f"{split}.array_record-*); write them (lwcl.data.records.write_split) or fix "
                        "--config.data.record_dir / data.train_split / data.test_split")
      shards.check_shard_set(found, where)
      self._open(found, spec, where, split == "train", image_size)
      return
    manifest = spec.splits.get(split)
    if manifest is None:
      raise DataError(f"{directory}/{FEATURES_FILE} lists no shards of split '{split}' (it lists "
                      f"{', '.join(sorted(spec.splits)) or 'none'}); {REWRITE}, or fix "
                      "--config.data.train_split / data.test_split")
    paths = shards.check_listed(directory, split, manifest, found)
    now = spec.written_as()
    for key, was in manifest["written_as"].items():
      if now.get(key) != was:
        raise DataError(f"{directory}/{FEATURES_FILE} declares {key} {now.get(key)}, the '{split}' shards were "
                        f"written with {was}; write the spec they were written with, or {REWRITE}")
    self._open(paths, spec, where, split == "train", image_size, manifest["shards"], shards.INTERLEAVED)

  @classmethod
  def of_files(cls, paths: list, spec: FeatureSpec, where: str, train: bool, image_size: int = 0,
               lengths: list | None = None, listed_by: str = "") -> "RecordReader":
    """A reader of the ArrayRecord files ``paths`` (e.g. a TFDS split's shards, read one after the other),
    described by ``spec``; ``lengths``: each file's records, as ``listed_by`` says, checked."""
    reader = cls.__new__(cls)
    expected = None if lengths is None else [{"records": int(n)} for n in lengths]
    reader._open(list(paths), spec, where, train, image_size, expected, shards.CONCATENATED, listed_by)
    return reader

  def _open(self, paths: list, spec: FeatureSpec, where: str, train: bool, image_size: int,
            expected: list | None = None, layout: str = shards.CONCATENATED, listed_by: str = "") -> None:
    self.spec, self.paths, self.where, self.image_size = spec, paths, where, int(image_size)
    self.layout, self._expected = layout, expected
    self._listed_by = listed_by or f"{os.path.dirname(paths[0]) if paths else where}/{FEATURES_FILE}"
    if not self.image_size and min(spec.image_shape) == 0:
      raise DataError(f"the images of {where} vary in size; set --config.data.image_size (e.g. 224) to read "
                      "them at one size")
    c = spec.image_shape[2]
    if self.image_size and c not in _MODES.values():  # resized by PIL (lwcl.data.image_ops): 1-4 channels
      raise DataError(f"the images of {where} have {c} channels; data.image_size resizes images of 1 to 4 "
                      f"channels only: read them at their stored size (--config.data.image_size=0) or fix "
                      f"image.shape in {FEATURES_FILE}")
    self.image_shape = (self.image_size, self.image_size, c) if self.image_size else tuple(spec.image_shape)
    self.stats = spec.stats if train and not self.image_size else None
    self._digests = shards.verify_files(paths, expected, self._listed_by)  # every byte, before any read
    self._source = None
    self.num_examples = int(self._starts[-1]) if self._readers() else 0
    if expected is None:  # no manifest: a labels file as long as its shard, if any (a truncated shard is not)
      for p, n in zip(paths, self._counts):
        side = shards.sidecar_length(p + LABELS_SUFFIX) if os.path.exists(p + LABELS_SUFFIX) else None
        if side is not None and side != n:
          raise DataError(f"{p} holds {n} records, its labels file {side} (truncated, or stale labels); "
                          f"restore it or {REWRITE}")

  def _readers(self) -> list:
    """One ``ArrayRecordReader`` per file (opened on first use, and again in a grain worker process), each
    holding the records it should."""
    if self._source is None:
      from array_record.python.array_record_module import ArrayRecordReader  # pylint: disable=g-import-not-at-top
      source = []
      for p in self.paths:
        try:
          source.append(ArrayRecordReader(p, "readahead_buffer_size:0"))
        except Exception as e:  # pylint: disable=broad-except  (array_record raises RuntimeError / ValueError)
          raise DataError(f"cannot open {p} as an ArrayRecord file ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); restore it or {REWRITE}") from None
      self._counts = [r.num_records() for r in source]
      shards.check_counts(self.paths, self._counts, self._expected, self._listed_by)
      self._source, self._starts = source, np.cumsum([0] + self._counts)
    return self._source

  def __len__(self) -> int:
    return self.num_examples

  def __getstate__(self):  # grain worker processes reopen the files
    return {**self.__dict__, "_source": None}

  def _locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shard and position in it of each of the split's ``indices``."""
    if self.layout == shards.INTERLEAVED:
      return indices % len(self.paths), indices // len(self.paths)
    shard = np.searchsorted(self._starts, indices, side="right") - 1
    return shard, indices - self._starts[shard]

  def read(self, indices: np.ndarray) -> list:
    """The serialized records at ``indices`` (int ``[n]``, in range), in that order; one batched read per
    file (ascending indices read fastest)."""
    readers = self._readers()
    indices = np.asarray(indices, np.int64).reshape(-1)
    shard, local = self._locate(indices)
    out = [None] * indices.size
    for k in np.unique(shard):
      rows = np.flatnonzero(shard == k)
      try:
        records = readers[k].read(local[rows].tolist())
      except Exception as e:  # pylint: disable=broad-except  (riegeli: RuntimeError on a corrupt chunk)
        first = str(e).splitlines()[0][:160] if str(e) else ""
        raise DataError(f"cannot read records of {self.paths[k]} ({type(e).__name__}: {first}): damaged on "
                        f"disk, or changed since it was verified; restore it or {REWRITE}") from None
      for i, rec in zip(rows, records):
        out[i] = rec
    return out

  def read_images(self, indices: np.ndarray, augment: tuple | None = None) -> np.ndarray:
    """uint8 ``[n, H, W, C]`` images of the records ``indices``. With ``data.image_size`` S they are read
    at S x S: ``augment = (seed, task, epoch)`` gives the training view (random-resized crop and flip),
    None the evaluation view (:func:`lwcl.data.image_ops.view`); without, ``augment`` is unused."""
    from lwcl.data import image_ops  # pylint: disable=g-import-not-at-top
    out = np.empty((len(indices),) + self.image_shape, np.uint8)
    for k, rec in enumerate(self.read(indices)):
      image = decode_image(parse(rec, self.spec, self.where)[0], self.spec, self.where)
      out[k] = image_ops.view(image, self.image_size, augment, indices[k]) if self.image_size else image
    return out

  def read_labels(self, chunk: int = 8192) -> np.ndarray:
    """int32 ``[num_examples]``: every record's label, read once: a shard's ``.labels.npy`` when the
    manifest has its digest and it matches, else parsed from the records (images skipped, not decoded)."""
    self._readers()
    parts = []
    for k, path in enumerate(self.paths):
      n, side = self._counts[k], path + LABELS_SUFFIX
      digest = (self._expected[k] if self._expected else {}).get("labels_sha256")
      if digest and os.path.exists(side):
        parts.append(shards.load_sidecar(side, digest, n))
        continue
      labels = np.empty(n, np.int32)
      for s in range(0, n, chunk):
        rows = np.arange(s, min(s + chunk, n))
        rows = rows * len(self.paths) + k if self.layout == shards.INTERLEAVED else rows + self._starts[k]
        for i, rec in enumerate(self.read(rows)):
          labels[s + i] = parse(rec, self.spec, self.where)[1]
      parts.append(labels)
    if self.layout == shards.INTERLEAVED:
      out = np.empty(self.num_examples, np.int32)
      for k, labels in enumerate(parts):
        out[k::len(parts)] = labels
      return out
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)

  def fingerprint_parts(self) -> list:
    """What identifies these records: the spec, the layout, and each shard's records, size and SHA-256 of
    every byte, verified at open (with the labels, :func:`lwcl.data.sources.dataset_fingerprint`)."""
    return ([json.dumps(self.spec.to_json(), sort_keys=True), f"layout={self.layout}"]
            + [f"{n}:{d}" for n, d in zip(self._counts, self._digests)])
