"""Data sources: local MNIST-format IDX files, tensorflow-datasets (TFDS), and streamed ArrayRecord files.

``load_dataset(config.data)`` returns the whole data set as NumPy arrays (uint8 images, int32 labels).
The ``auto`` source uses local IDX files when they are present (Fashion-MNIST from Debian's
``dataset-fashion-mnist`` is the built-in default) and TFDS otherwise; a folder given as ``data.idx_dir``
must hold them (``auto`` never falls back to TFDS past the user's own folder). With ``data.record_dir``
(``auto`` or ``arrayrecord``) or ``tfds_stream`` the images stay on disk (:mod:`lwcl.data.records`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from lwcl.core.options import Option
from lwcl.data import idx, records
from lwcl.data.lazy import LazyImages, StreamOptions
from lwcl.errors import DataError
from lwcl.platform import quiet

SOURCES = ("auto", "idx", "tfds", "arrayrecord", "tfds_stream")
STREAMED = ("arrayrecord", "tfds_stream")  # sources read batch by batch (train.steps_per_dispatch = 1)

OPTIONS = (
    Option("data.name", "fashion_mnist", "TFDS name; mnist / fashion_mnist / kmnist also read from local IDX "
           "files"),
    Option("data.source", "auto", "auto (data.record_dir set: arrayrecord; else local IDX files when present, "
           "else TFDS) | idx | tfds (in memory) | arrayrecord (streamed from data.record_dir) | tfds_stream "
           "(streamed from a TFDS data set prepared with file_format=array_record)", choices=SOURCES),
    Option("data.record_dir", "", "folder of ArrayRecord files + features.json (lwcl/data/records.py)"),
    Option("data.image_size", 0, "streamed images read at this size (random-resized crop + flip in training, "
           "resize + centre crop in evaluation); 0 = as stored", minimum=0),
    Option("data.idx_dir", "", "folder of MNIST-format files; '' = $LWCL_IDX_DIR, then Debian's folder"),
    Option("data.data_dir", "", "TFDS data_dir ('' = TFDS default, ~/tensorflow_datasets)"),
    Option("data.train_split", "train", "the split tasks train on"),
    Option("data.test_split", "test", "the split tasks are tested on"),
    Option("data.download", True, "let TFDS download missing data sets"),
)

# Where Debian's dataset packages put MNIST-format files, by TFDS name.
DEFAULT_IDX_DIRS = {
    "fashion_mnist": "/usr/share/datasets/fashion-mnist",
}
IDX_DIR_ENV = "LWCL_IDX_DIR"

# The classes of the data sets read from IDX files by name: their labels must lie in [0, count).
KNOWN_CLASSES = {"mnist": 10, "fashion_mnist": 10, "kmnist": 10}

FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                         "sneaker", "bag", "ankle boot")


@dataclasses.dataclass(frozen=True)
class ImageDataset:
  """A labelled image-classification data set held in memory.

  Attributes:
    name: data set name (TFDS naming, e.g. ``fashion_mnist``).
    train_images: uint8 ``[N, H, W, C]`` (a NumPy array, or :class:`~lwcl.data.lazy.LazyImages`).
    train_labels: int32 ``[N]`` in ``[0, num_classes)``.
    test_images: uint8 ``[M, H, W, C]``.
    test_labels: int32 ``[M]``.
    num_classes: number of classes.
    class_names: one name per class (may be generic ``'0', '1', ...``).
    source: where it came from, e.g. ``'idx:/usr/share/datasets/fashion-mnist'`` or ``'tfds'``.
  """
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  class_names: tuple
  source: str

  @property
  def image_shape(self) -> tuple:
    return tuple(self.train_images.shape[1:])


def dataset_fingerprint(ds: ImageDataset) -> str:
  """SHA-256 (64 hex digits) of what a run trains and tests on: the data set's train and test images and
  labels (dtype, shape and bytes of each) and its number of classes.

  The whole data set, not only the examples the scenario picks: the scenario is a function of the config
  and these arrays, and ``data.normalize=standardize`` takes its statistics from all training images. One
  pass over the arrays (Fashion-MNIST, 55 MB: about 0.1 s), cheaper than hashing each task's permuted or
  rotated copies. Streamed images (:class:`~lwcl.data.lazy.LazyImages`) are not decoded: the spec, the
  layout and the SHA-256 of every byte of each shard stand for them (verified against the writer's manifest
  when the folder was opened, :mod:`lwcl.data.shards`), with every label.

  Args:
    ds: the loaded data set.
  Returns:
    str: the hex digest; the same data from another folder or source gives the same fingerprint.
  """
  digest = hashlib.sha256(f"classes={ds.num_classes}|".encode())
  for name in ("train_images", "train_labels", "test_images", "test_labels"):
    if isinstance(getattr(ds, name), LazyImages):  # streamed: the shards' digests (every byte)
      parts = [p for s in getattr(ds, name).segments for p in s.reader.fingerprint_parts()]
      digest.update(f"{name}|records|{len(getattr(ds, name))}|{'|'.join(parts)}|".encode())
      continue
    a = np.ascontiguousarray(getattr(ds, name))
    digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
    digest.update(memoryview(a).cast("B"))
  return digest.hexdigest()


def location_key(data_config) -> str:
  """The config key that points at the files of the data set ``data_config`` loads (for messages):
  ``data.record_dir``, ``data.data_dir`` (TFDS) or ``data.idx_dir``."""
  source = data_config.get("source", "auto")
  if source == "arrayrecord" or (source == "auto" and data_config.get("record_dir")):
    return "data.record_dir"
  return "data.data_dir" if source in ("tfds", "tfds_stream") else "data.idx_dir"


def idx_dir_for(data_config) -> str | None:
  """The folder of IDX files the config points at: ``data.idx_dir``, ``$LWCL_IDX_DIR``, or the default."""
  if data_config.idx_dir:
    return data_config.idx_dir
  if os.environ.get(IDX_DIR_ENV):
    return os.environ[IDX_DIR_ENV]
  return DEFAULT_IDX_DIRS.get(data_config.name)


def load_idx_dataset(name: str, directory: str) -> ImageDataset:
  """Loads an MNIST-format data set from ``directory``.

  Raises:
    DataError: missing or corrupt files (:func:`lwcl.data.idx.load_idx_split`), train and test images of
      different sizes, a label outside the classes of ``name`` (:data:`KNOWN_CLASSES`), or a class (below
      the largest label) without a training example: labels that do not describe the data set ``name`` says.
  """
  train_x, train_y = idx.load_idx_split(directory, "train")
  test_x, test_y = idx.load_idx_split(directory, "test")
  if train_x.shape[1:] != test_x.shape[1:]:
    raise DataError(f"the IDX files in {directory} hold training images of {list(train_x.shape[1:3])} and test "
                    f"images of {list(test_x.shape[1:3])} pixels; give both splits images of one size")
  top = int(max(train_y.max(), test_y.max()))
  known = KNOWN_CLASSES.get(name)
  if known is not None and top >= known:
    split = "train" if train_y.max() == top else "test"
    labels = idx.find_idx_file(directory, idx.SPLIT_FILES[split][1])
    raise DataError(f"{labels} has label {top}, outside {name}'s {known} classes (0-{known - 1}); fix the labels "
                    "file, or set --config.data.name to the data set these files hold")
  num_classes = known or top + 1
  _check_every_class_occurs(train_y, num_classes, top, f"the training labels in {directory}", "fix the labels files"
                            + (", or set --config.data.name to the data set these files hold" if known else ""))
  names = FASHION_MNIST_CLASSES if name == "fashion_mnist" else tuple(str(i) for i in range(num_classes))
  return ImageDataset(name, train_x, train_y, test_x, test_y, num_classes, names, f"idx:{directory}")


def _check_every_class_occurs(train_y: np.ndarray, num_classes: int, top: int, what: str, fix: str) -> None:
  """Refuses training labels that leave a class in ``[0, num_classes)`` without an example, counting only
  the labels that occur: never an array of ``num_classes`` (a label near 2**31 grew the process to 23 GB).

  Raises:
    DataError: one line naming the first missing class, the largest label ``top`` and how many occur.
  """
  present = np.unique(train_y)  # sorted, each >= its position: the first gap is the first missing class
  if present.size < num_classes:
    gaps = np.flatnonzero(present != np.arange(present.size))
    first = int(gaps[0]) if gaps.size else present.size
    raise DataError(f"{what} leave {num_classes - present.size} of {num_classes} classes without an example "
                    f"(class {first} first; the largest label is {top}, and {present.size} distinct labels "
                    f"occur); {fix}")


# TFDS fetches a data set from its GCS mirror first, then from the data set's own URLs.
TFDS_HOST = "storage.googleapis.com"


def _resolves(host: str, timeout: float = 5.0) -> bool:
  """Whether ``host`` resolves within ``timeout`` seconds (a thread: ``getaddrinfo`` has no timeout)."""
  import socket  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  found = []
  def look():
    try:
      found.append(bool(socket.getaddrinfo(host, 443)))
    except OSError:
      found.append(False)
  thread = threading.Thread(target=look, daemon=True)
  thread.start()
  thread.join(timeout)
  return bool(found and found[0])


def _offline_error(name: str, where: str | None) -> DataError | None:
  """The error for a TFDS data set that is not prepared (in ``where``) on a machine that cannot resolve
  TFDS's download host, or None when the machine is online or behind a proxy (``HTTPS_PROXY`` /
  ``HTTP_PROXY``: name resolution is then the proxy's business). TFDS itself would retry its downloads for
  40-150 s (issue 32)."""
  if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
    return None
  if _resolves(TFDS_HOST):
    return None
  where = where or "TFDS's default folder (~/tensorflow_datasets)"
  return DataError(f"TFDS data set '{name}' is not prepared in {where} and this machine "
                   f"is offline ({TFDS_HOST} does not resolve); prepare it on a machine with a network (`tfds "
                   f"build {name} --data_dir=DIR`) and copy DIR here, then pass --config.data.data_dir=DIR, or use "
                   "local MNIST-format files (--config.data.source=idx --config.data.idx_dir=...)")


def _to_numpy(batches) -> tuple[np.ndarray, np.ndarray]:
  xs, ys = [], []
  for x, y in batches:
    xs.append(np.asarray(x))
    ys.append(np.asarray(y))
  if not xs:
    raise ValueError("the split is empty")
  return np.concatenate(xs), np.concatenate(ys)


def load_tfds_dataset(name: str, data_dir: str | None, train_split: str = "train",
                      test_split: str = "test", download: bool = True) -> ImageDataset:
  """Loads a TFDS image-classification data set whole, as NumPy arrays.

  Works for any data set with ``image`` and ``label`` features (mnist, fashion_mnist, kmnist, cifar10,
  cifar100, svhn_cropped, ...). Downloads into ``data_dir`` on first use when ``download`` is true.

  Raises:
    DataError: unknown data set, no network, or features that are not an image and a class label.
  """
  from lwcl.platform.devices import hide_gpus_from_tensorflow  # pylint: disable=g-import-not-at-top
  hide_gpus_from_tensorflow()
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(f"tensorflow-datasets is not installed ({e}); run bin/setup") from None
  try:
    try:  # what is prepared loads without the network; only a missing data set is downloaded
      with quiet.warnings_of("tensorflow_datasets"):  # e.g. a folder without dataset_info.json: said below
        (train, test), info = tfds.load(name, split=[train_split, test_split], data_dir=data_dir,
                                        as_supervised=True, with_info=True, download=False)
    except Exception:  # pylint: disable=broad-except  (not prepared: TFDS's AssertionError or its own kinds)
      if not download:
        raise
      offline = _offline_error(name, data_dir)
      if offline is not None:
        raise offline from None
      (train, test), info = tfds.load(name, split=[train_split, test_split], data_dir=data_dir,
                                      as_supervised=True, with_info=True, download=True)
    # Read in large batches rather than batch_size=-1, which needs a known cardinality.
    train_x, train_y = _to_numpy(tfds.as_numpy(train.batch(8192)))
    test_x, test_y = _to_numpy(tfds.as_numpy(test.batch(8192)))
  except DataError:
    raise
  except ImportError as e:  # TFDS imports most of its modules lazily, at the first load
    raise DataError(f"tensorflow-datasets cannot load '{name}': a module it needs is missing ({e}); "
                    f"install it (pip install {e.name or 'it'}) or run bin/setup") from None
  except Exception as e:  # TFDS raises many kinds; all mean the same thing to the user.
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise DataError(f"cannot load TFDS data set '{name}' ({type(e).__name__}: {msg}); check the name, "
                    "the network, or prepare it first with `tfds build` into --config.data.data_dir")
  label = info.features["label"]
  num_classes = int(getattr(label, "num_classes", 0))
  if not num_classes:  # labels without a declared class count: every class below the largest must occur
    top = int(max(train_y.max(), test_y.max()))
    num_classes = top + 1
    _check_every_class_occurs(train_y, num_classes, top, f"the training labels of TFDS data set '{name}'",
                              "choose a data set whose labels are class ids 0..N-1")
  names = tuple(getattr(label, "names", None) or (str(i) for i in range(num_classes)))
  if train_x.ndim != 4:
    raise DataError(f"TFDS data set '{name}' has images of shape {train_x.shape[1:]}, expected "
                    "[H, W, C]; choose an image-classification data set")
  if not 1 <= num_classes <= records.MAX_CLASSES:  # e.g. a damaged features.json (sizes every label mask)
    raise DataError(f"TFDS data set '{name}' declares {num_classes} classes, not in [1, {records.MAX_CLASSES}]; "
                    "prepare it again, or choose another data set")
  return ImageDataset(name, np.asarray(train_x, np.uint8), np.asarray(train_y, np.int32),
                      np.asarray(test_x, np.uint8), np.asarray(test_y, np.int32), num_classes, names,
                      "tfds")


def stream_options(data_config) -> StreamOptions:
  """The streaming loader's ``data.stream`` settings (defaults where a config lacks them)."""
  stream = data_config.get("stream") or {}
  return StreamOptions(int(stream.get("threads", 2)), int(stream.get("prefetch", 4)),
                       int(stream.get("workers", 0)))


def load_record_dataset(data_config) -> ImageDataset:
  """A record folder (``data.record_dir``, :mod:`lwcl.data.records`) as a streamed data set: labels read
  once into int32 arrays, images :class:`~lwcl.data.lazy.LazyImages` read when indexed.

  Raises:
    DataError: no ``data.record_dir``, a missing folder, ``features.json`` or split, or a bad feature spec.
  """
  directory = data_config.get("record_dir")
  if not directory:
    raise DataError("data.source=arrayrecord needs a record folder; set --config.data.record_dir")
  spec = records.read_spec(directory)
  size = int(data_config.get("image_size", 0) or 0)
  train = records.RecordReader(directory, data_config.train_split, spec, size)
  test = records.RecordReader(directory, data_config.test_split, spec, size)
  dataset = streamed_dataset(data_config, train, test, spec, f"arrayrecord:{directory}")
  records.warn_unlisted(directory, spec)  # after the checks: a refused folder gets its error line alone
  return dataset


def streamed_dataset(data_config, train, test, spec, source: str) -> ImageDataset:
  r"""The :class:`ImageDataset` of two :class:`~lwcl.data.records.RecordReader`\ s: every label read once
  (int32, checked against the spec's classes), the images left on disk."""
  options = stream_options(data_config)
  for r in (train, test):  # one image each now: a spec that does not fit the records fails here, not mid-run
    if r.num_examples:
      r.read_images(np.zeros(1, np.int64))
  train_y, test_y = train.read_labels(), test.read_labels()
  for y, r in ((train_y, train), (test_y, test)):
    if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
      raise DataError(f"labels of {r.where} lie in [{y.min()}, {y.max()}], outside the feature spec's "
                      f"{spec.num_classes} classes; fix label.num_classes in {records.FEATURES_FILE}")
  return ImageDataset(data_config.name, LazyImages.of_reader(train, options), train_y,
                      LazyImages.of_reader(test, options), test_y, spec.num_classes,
                      tuple(spec.class_names), source)


def concatenate(parts: list) -> ImageDataset:
  """One data set whose classes are those of ``parts`` in turn: part k's labels are offset by the number
  of classes before it, and class names are qualified (``'cifar100:apple'``). Used for streams over
  several data sets, e.g. ``cifar10+cifar100`` (CIFAR-10 as classes 0-9, CIFAR-100 as 10-109: with 11
  tasks of 10 classes, the split CIFAR-10/100 stream of HAT and NAI).

  Raises:
    DataError: if the parts' images differ in shape.
  """
  shapes = {p.image_shape for p in parts}
  if len(shapes) != 1:
    raise DataError(f"cannot combine {'+'.join(p.name for p in parts)}: image shapes differ {sorted(shapes)}; "
                    "combine data sets of one image size")
  offsets = np.cumsum([0] + [p.num_classes for p in parts[:-1]])
  cat = lambda f: np.concatenate([f(p, o) for p, o in zip(parts, offsets)])
  return ImageDataset(
      "+".join(p.name for p in parts),
      cat(lambda p, o: p.train_images), cat(lambda p, o: p.train_labels + o).astype(np.int32),
      cat(lambda p, o: p.test_images), cat(lambda p, o: p.test_labels + o).astype(np.int32),
      int(sum(p.num_classes for p in parts)),
      tuple(f"{p.name}:{n}" for p in parts for n in p.class_names),
      "+".join(p.source for p in parts))


def load_dataset(data_config) -> ImageDataset:
  r"""Loads the data set a config's ``data`` section names.

  Args:
    data_config: ``config.data`` with ``name``, ``source`` (``auto`` | ``idx`` | ``tfds`` |
      ``arrayrecord`` | ``tfds_stream``), ``idx_dir``, ``record_dir``, ``image_size``, ``stream``,
      ``data_dir``, ``train_split``, ``test_split``, ``download``. A name joining several data sets with
      ``+`` (``cifar10+cifar100``) loads each and :func:`concatenate`\ s their classes.
  Returns:
    The :class:`ImageDataset`: whole in memory, or (``arrayrecord``, ``tfds_stream``, or ``auto`` with a
    ``record_dir``) its labels in memory and its images :class:`~lwcl.data.lazy.LazyImages` on disk.
  Raises:
    DataError: unknown source, missing files, or a TFDS failure.
  """
  if "+" in data_config.name:
    parts = []
    for name in data_config.name.split("+"):
      part_config = data_config.copy_and_resolve_references()
      with part_config.unlocked():
        part_config.name = name.strip()
      parts.append(load_dataset(part_config))
    return concatenate(parts)
  source = data_config.source
  if source not in SOURCES:
    raise DataError(f"unknown data source '{source}'; use --config.data.source=auto, idx, tfds, arrayrecord "
                    "or tfds_stream")
  if source == "arrayrecord" or (source == "auto" and data_config.get("record_dir")):
    return load_record_dataset(data_config)
  if source == "tfds_stream":
    from lwcl.data import tfds_stream  # pylint: disable=g-import-not-at-top  (tensorflow-datasets: slow)
    train, test, spec, where = tfds_stream.open_tfds_stream(data_config)
    return streamed_dataset(data_config, train, test, spec, f"tfds_stream:{where}")
  directory = idx_dir_for(data_config)
  named = "data.idx_dir" if data_config.idx_dir else f"${IDX_DIR_ENV}" if os.environ.get(IDX_DIR_ENV) else None
  if source == "auto" and named and not idx.has_idx_dataset(directory):  # a folder named is never a fallback
    what = ("does not exist" if not os.path.isdir(directory) else
            f"lacks {', '.join(f + '[.gz]' for f in idx.missing_idx_files(directory))}")
    fix = "fix --config.data.idx_dir" if named == "data.idx_dir" else f"fix or unset ${IDX_DIR_ENV}"
    raise DataError(f"{named} {directory} {what}; put the MNIST-format files there, {fix}, or leave it empty "
                    "to use the default folder or TFDS")
  if source == "idx" or (source == "auto" and idx.has_idx_dataset(directory)):
    if not directory:
      raise DataError(f"no IDX folder known for '{data_config.name}'; set --config.data.idx_dir")
    if not idx.has_idx_dataset(directory):
      raise DataError(f"MNIST-format files for '{data_config.name}' not found in {directory}; install "
                      "Debian's dataset-fashion-mnist (bin/setup does it as root), set "
                      "--config.data.idx_dir, or use --config.data.source=tfds")
    return load_idx_dataset(data_config.name, directory)
  return load_tfds_dataset(data_config.name, data_config.data_dir or None, data_config.train_split,
                           data_config.test_split, data_config.download)
