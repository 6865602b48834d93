"""Labelled images in ArrayRecord files: the feature spec, the writer, and the random-access readers.

A record folder (``data.record_dir``) holds ``features.json`` (a :class:`FeatureSpec`) and each split's
ArrayRecord shards ``<split>.array_record-<i>-of-<n>``, every record a serialized ``tf.train.Example``
(TFDS's own record format) with a bytes feature ``image`` (raw uint8 ``H*W*C``, PNG or JPEG) and an
int64 feature ``label``. TensorFlow is not needed: the Example message is parsed with ``protobuf``.
TFDS data sets prepared with ``file_format='array_record'`` are read through ``tfds.data_source``
(:class:`TfdsReader`).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import io
import json
import os

import numpy as np

from lwcl.errors import DataError

FEATURES_FILE = "features.json"
ENCODINGS = ("raw", "png", "jpeg")
# One record per chunk (random access reads one record, as TFDS writes them), zstd level 1: the size of
# the default compression, about twice as fast to read (15 -> 7 us a Fashion-MNIST record).
WRITER_OPTIONS = "group_size:1,zstd:1"
LABELS_SUFFIX = ".labels.npy"


def _example_class():
  """The ``tf.train.Example`` message class, built from its descriptor in a private pool."""
  # pylint: disable-next=g-import-not-at-top
  from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
  f = descriptor_pb2.FileDescriptorProto(name="lwcl_example.proto", package="lwcl_tf", syntax="proto3")
  T = descriptor_pb2.FieldDescriptorProto

  def message(name, fields, nested=()):
    m = f.message_type.add(name=name) if not nested else nested
    for num, (fname, ftype, label, type_name) in enumerate(fields, 1):
      fd = m.field.add(name=fname, number=num, type=ftype, label=label)
      if type_name:
        fd.type_name = type_name
    return m

  rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL
  message("BytesList", [("value", T.TYPE_BYTES, rep, "")])
  message("FloatList", [("value", T.TYPE_FLOAT, rep, "")])
  message("Int64List", [("value", T.TYPE_INT64, rep, "")])
  feature = message("Feature", [("bytes_list", T.TYPE_MESSAGE, opt, ".lwcl_tf.BytesList"),
                                ("float_list", T.TYPE_MESSAGE, opt, ".lwcl_tf.FloatList"),
                                ("int64_list", T.TYPE_MESSAGE, opt, ".lwcl_tf.Int64List")])
  feature.oneof_decl.add(name="kind")
  for fd in feature.field:
    fd.oneof_index = 0
  features = f.message_type.add(name="Features")
  entry = features.nested_type.add(name="FeatureEntry")
  entry.options.map_entry = True
  entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=opt)
  entry.field.add(name="value", number=2, type=T.TYPE_MESSAGE, label=opt, type_name=".lwcl_tf.Feature")
  features.field.add(name="feature", number=1, type=T.TYPE_MESSAGE, label=rep,
                     type_name=".lwcl_tf.Features.FeatureEntry")
  message("Example", [("features", T.TYPE_MESSAGE, opt, ".lwcl_tf.Features")])
  pool = descriptor_pool.DescriptorPool()
  pool.Add(f)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("lwcl_tf.Example"))


_EXAMPLE = []


def example_class():
  if not _EXAMPLE:
    _EXAMPLE.append(_example_class())
  return _EXAMPLE[0]


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
  """
  image_shape: tuple
  encoding: str
  num_classes: int
  class_names: tuple = ()
  image_key: str = "image"
  label_key: str = "label"
  stats: dict | None = None

  def to_json(self) -> dict:
    return {"image": {"shape": list(self.image_shape), "dtype": "uint8", "encoding": self.encoding},
            "label": {"num_classes": self.num_classes, "names": list(self.class_names)},
            "image_key": self.image_key, "label_key": self.label_key, "stats": self.stats}

  @classmethod
  def from_json(cls, d: dict, where: str) -> "FeatureSpec":
    """Raises DataError naming the first missing or wrong entry of ``where`` (a features.json)."""
    try:
      image, label = d["image"], d["label"]
      shape = tuple(int(v or 0) for v in image["shape"])
      encoding, num_classes = str(image.get("encoding", "raw")), int(label["num_classes"])
    except (KeyError, TypeError, ValueError) as e:
      raise DataError(f"feature spec {where} lacks or mistypes {e}; give image.shape [H, W, C] and "
                      "label.num_classes (see lwcl.data.records.FeatureSpec)") from None
    problem = None
    if len(shape) != 3 or min(shape) < 0 or shape[2] < 1:
      problem = f"image.shape {list(shape)} is not [H, W, C]"
    elif min(shape) == 0 and encoding == "raw":
      problem = f"raw images need a fixed image.shape, not {list(shape)}"
    elif image.get("dtype", "uint8") != "uint8":
      problem = f"image.dtype {image.get('dtype')} is not uint8"
    elif encoding not in ENCODINGS:
      problem = f"image.encoding '{encoding}' is not one of {ENCODINGS}"
    elif num_classes < 1:
      problem = f"label.num_classes={num_classes} is below 1"
    if problem:
      raise DataError(f"feature spec {where}: {problem}; fix it (see lwcl.data.records.FeatureSpec)")
    names = tuple(str(n) for n in label.get("names") or range(num_classes))
    return cls(shape, encoding, num_classes, names, str(d.get("image_key", "image")),
               str(d.get("label_key", "label")), d.get("stats"))


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
  x = np.asarray(Image.open(io.BytesIO(data)))
  x = x.reshape(x.shape[:2] + (-1,))
  fixed = spec.image_shape if min(spec.image_shape) > 0 else (x.shape[0], x.shape[1], spec.image_shape[2])
  if x.shape != tuple(fixed):
    raise DataError(f"a record of {where} decodes to an image of shape {list(x.shape)}, the feature spec "
                    f"says {list(spec.image_shape)}; fix image.shape in {FEATURES_FILE} (0 for varying sizes)")
  return x


def serialize(image_bytes: bytes, label: int, spec: FeatureSpec) -> bytes:
  """One record: a serialized ``tf.train.Example`` with ``image`` bytes and an int64 ``label``."""
  ex = example_class()()
  ex.features.feature[spec.image_key].bytes_list.value.append(image_bytes)
  ex.features.feature[spec.label_key].int64_list.value.append(int(label))
  return ex.SerializeToString()


def parse(record: bytes, spec: FeatureSpec, where: str) -> tuple[bytes, int]:
  """``(image bytes, label)`` of one record; DataError when a feature of the spec is missing."""
  ex = example_class().FromString(record)
  feats = ex.features.feature
  if spec.image_key not in feats or spec.label_key not in feats:
    raise DataError(f"records of {where} have features {sorted(feats)}, not '{spec.image_key}' and "
                    f"'{spec.label_key}'; set image_key / label_key in {FEATURES_FILE}")
  return feats[spec.image_key].bytes_list.value[0], int(feats[spec.label_key].int64_list.value[0])


def split_files(directory: str, split: str) -> list:
  """The sorted ArrayRecord shards of ``split`` in ``directory``."""
  return sorted(p for p in glob.glob(os.path.join(directory, f"{split}.array_record*"))
                if not p.endswith(LABELS_SUFFIX))


def write_split(directory: str, split: str, chunks, spec: FeatureSpec, num_shards: int = 1) -> int:
  """Writes ``split``'s records from ``chunks`` (an iterable of ``(uint8 [n, H, W, C], int [n])``) into
  ``num_shards`` ArrayRecord files, examples in order and shards filled round-robin by chunk, and each
  shard's labels beside it (``<shard>.labels.npy``, int32, what :meth:`RecordReader.read_labels` reads).

  Returns the number of examples written.
  """
  from array_record.python.array_record_module import ArrayRecordWriter  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  writers = [ArrayRecordWriter(os.path.join(directory, f"{split}.array_record-{i:05d}-of-{num_shards:05d}"),
                               WRITER_OPTIONS) for i in range(num_shards)]
  n, shard_labels = 0, [[] for _ in range(num_shards)]
  for k, (images, labels) in enumerate(chunks):
    w = writers[k % num_shards]
    for x, y in zip(images, labels):
      w.write(serialize(encode_image(x, spec.encoding), int(y), spec))
    shard_labels[k % num_shards].append(np.asarray(labels, np.int32))
    n += len(labels)
  for w, labels in zip(writers, shard_labels):
    w.close()
  for i, labels in enumerate(shard_labels):  # the labels beside each shard: read once, not parsed again
    path = os.path.join(directory, f"{split}.array_record-{i:05d}-of-{num_shards:05d}{LABELS_SUFFIX}")
    np.save(path, np.concatenate(labels) if labels else np.zeros(0, np.int32))
  return n


def write_features(directory: str, spec: FeatureSpec) -> None:
  """Writes ``features.json``."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, FEATURES_FILE), "w") as f:
    json.dump(spec.to_json(), f, indent=1)


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
    step = -(-len(y) // num_shards)
    write_split(directory, split, ((x[s:s + step], y[s:s + step]) for s in range(0, len(y), step)), spec,
                num_shards)
  write_features(directory, spec)
  return spec


def read_spec(directory: str) -> FeatureSpec:
  """The folder's feature spec; DataError when the folder or its ``features.json`` is missing or wrong."""
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
  return FeatureSpec.from_json(d if isinstance(d, dict) else {}, path)


class RecordReader:
  """Random access to one split of a record folder.

  Attributes:
    num_examples, image_shape ``(H, W, C)``, spec, paths, stats (the spec's, for the train split).
  """

  def __init__(self, directory: str, split: str, spec: FeatureSpec | None = None, image_size: int = 0):
    spec = spec or read_spec(directory)
    paths = split_files(directory, split)
    if not paths:
      raise DataError(f"no ArrayRecord files for split '{split}' in {directory} (expected "
                      f"{split}.array_record-*); write them (lwcl.data.records.write_split) or fix "
                      "--config.data.record_dir / data.train_split / data.test_split")
    self._open(paths, spec, f"{directory} ({split})", split == "train", image_size)

  @classmethod
  def of_files(cls, paths: list, spec: FeatureSpec, where: str, train: bool,
               image_size: int = 0) -> "RecordReader":
    """A reader of the ArrayRecord files ``paths`` (e.g. a TFDS split's shards), described by ``spec``."""
    reader = cls.__new__(cls)
    reader._open(list(paths), spec, where, train, image_size)
    return reader

  def _open(self, paths: list, spec: FeatureSpec, where: str, train: bool, image_size: int) -> None:
    self.spec, self.paths, self.where, self.image_size = spec, paths, where, int(image_size)
    if not self.image_size and min(spec.image_shape) == 0:
      raise DataError(f"the images of {where} vary in size; set --config.data.image_size (e.g. 224) to read "
                      "them at one size")
    c = spec.image_shape[2]
    self.image_shape = (self.image_size, self.image_size, c) if self.image_size else tuple(spec.image_shape)
    self.stats = spec.stats if train and not self.image_size else None
    self._source = None
    self.num_examples = int(self._starts[-1]) if self._readers() else 0

  def _readers(self) -> list:
    """One ``ArrayRecordReader`` per file (opened on first use, and again in a grain worker process)."""
    if self._source is None:
      from array_record.python.array_record_module import ArrayRecordReader  # pylint: disable=g-import-not-at-top
      try:
        self._source = [ArrayRecordReader(p, "readahead_buffer_size:0") for p in self.paths]
      except Exception as e:  # array_record raises plain RuntimeErrors / ValueErrors for bad files
        raise DataError(f"cannot open the ArrayRecord files of {self.where} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); rewrite them") from None
      self._starts = np.cumsum([0] + [r.num_records() for r in self._source])
    return self._source

  def __len__(self) -> int:
    return self.num_examples

  def __getstate__(self):  # grain worker processes reopen the files
    return {**self.__dict__, "_source": None}

  def read(self, indices: np.ndarray) -> list:
    """The serialized records at ``indices`` (int ``[n]``, in range), in that order; one batched read per
    file (ascending indices read fastest)."""
    readers = self._readers()
    indices = np.asarray(indices, np.int64).reshape(-1)
    shard = np.searchsorted(self._starts, indices, side="right") - 1
    out = [None] * indices.size
    for k in np.unique(shard):
      rows = np.flatnonzero(shard == k)
      for i, rec in zip(rows, readers[k].read((indices[rows] - self._starts[k]).tolist())):
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
    """int32 ``[num_examples]``: every record's label, read once: a shard's ``.labels.npy`` when it is
    newer than the shard and as long, else parsed from the records (images skipped, not decoded)."""
    readers = self._readers()
    parts = []
    for k, path in enumerate(self.paths):
      n, side = readers[k].num_records(), path + LABELS_SUFFIX
      if os.path.exists(side) and os.path.getmtime(side) >= os.path.getmtime(path):
        labels = np.load(side)
        if labels.shape == (n,):
          parts.append(labels.astype(np.int32))
          continue
      labels = np.empty(n, np.int32)
      for s in range(0, n, chunk):
        for i, rec in enumerate(readers[k].read(list(range(s, min(s + chunk, n))))):
          labels[s + i] = parse(rec, self.spec, self.where)[1]
      parts.append(labels)
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)

  def fingerprint_parts(self) -> list:
    """What identifies these records cheaply: each file's size and the SHA-256 of its first and last MiB
    (with the labels, :func:`lwcl.data.sources.dataset_fingerprint`)."""
    parts = []
    for p in self.paths:
      size = os.path.getsize(p)
      h = hashlib.sha256()
      with open(p, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(size - (1 << 20), 0))
        h.update(f.read(1 << 20))
      parts.append(f"{size}:{h.hexdigest()}")
    return [json.dumps(self.spec.to_json(), sort_keys=True)] + parts
