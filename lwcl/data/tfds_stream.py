"""``data.source=tfds_stream``: a TFDS data set prepared in ArrayRecord format, streamed from its files.

A data set prepared with ``tfds build --file_format=array_record`` (or
``builder.download_and_prepare(file_format='array_record')``) has, per split, ArrayRecord shards of
serialized ``tf.train.Example`` records: the very format of :mod:`lwcl.data.records`. This module reads the
builder's metadata once (image shape and encoding, classes, the split's files, as ``tfds.data_source``
does) and then reads the records with :class:`lwcl.data.records.RecordReader`: no TensorFlow at read time,
labels parsed without decoding images, each shard's record count checked against the builder's, and every
byte of the shards hashed for the data fingerprint when opened (:mod:`lwcl.data.shards`).
"""

from __future__ import annotations

import os

import numpy as np

from lwcl.data import records
from lwcl.errors import DataError
from lwcl.platform import quiet


def _builder(name: str, data_dir: str | None):
  from lwcl.platform.devices import hide_gpus_from_tensorflow  # pylint: disable=g-import-not-at-top
  hide_gpus_from_tensorflow()
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(f"tensorflow-datasets is not installed ({e}); run bin/setup") from None
  try:
    with quiet.warnings_of("tensorflow_datasets"):  # e.g. a folder without dataset_info.json: said below
      builder = tfds.builder(name, data_dir=data_dir)
      prepared = builder.is_prepared()
  except Exception as e:  # TFDS raises many kinds for an unknown or unregistered name
    first = str(e).splitlines()[0][:200] if str(e) else ""
    folder = os.path.join(os.path.expanduser(data_dir or "~/tensorflow_datasets"), name)
    if os.path.isdir(folder):  # prepared here, but its metadata does not load
      raise DataError(f"cannot read the metadata of TFDS data set '{name}' in {folder} ({type(e).__name__}: "
                      f"{first}): its features.json or dataset_info.json is damaged; prepare it again (`tfds "
                      f"build {name} --file_format=array_record`) or restore them") from None
    raise DataError(f"unknown TFDS data set '{name}' ({type(e).__name__}: {first}); check "
                    "--config.data.name") from None
  if not prepared:
    raise DataError(f"TFDS data set '{name}' is not prepared in {builder.data_dir}; prepare it with `tfds build "
                    f"{name} --file_format=array_record --data_dir=DIR` and set --config.data.data_dir=DIR")
  fmt = getattr(builder.info.file_format, "value", str(builder.info.file_format))
  if fmt != "array_record":
    raise DataError(f"TFDS data set '{name}' in {builder.data_dir} is prepared as {fmt}, not array_record; "
                    f"rebuild it with --file_format=array_record or use --config.data.source=tfds")
  return builder


def feature_spec(builder) -> records.FeatureSpec:
  """The :class:`~lwcl.data.records.FeatureSpec` of a prepared builder's ``image`` and ``label`` features.

  Raises:
    DataError: the data set lacks them, or its images have no fixed shape.
  """
  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise DataError(f"TFDS data set '{builder.name}' has features {sorted(features)}, not 'image' and "
                    "'label'; choose an image-classification data set")
  image, label = features["image"], features["label"]
  shape = tuple(image.shape)
  if len(shape) != 3 or shape[2] is None:
    raise DataError(f"TFDS data set '{builder.name}' has images of shape {shape}, not [H, W, C]; choose an "
                    "image-classification data set")
  shape = tuple(int(d or 0) for d in shape)  # None: varying sizes, read at data.image_size
  encoding = {"jpeg": "jpeg", "png": "png", None: "png"}.get(getattr(image, "encoding_format", None), "png")
  num_classes = int(getattr(label, "num_classes", 0) or 0)
  # float32 images are stored bit-cast to 4 uint8 channels: read as uint8 they would be other images
  problem = records.spec_problem(shape, np.dtype(getattr(image, "np_dtype", np.uint8)).name, num_classes)
  if problem:
    raise DataError(f"TFDS data set '{builder.name}' in {builder.data_dir}: {problem} (its features.json); "
                    "lwcl reads uint8 images of a class label: prepare the data set again, or choose another")
  names = tuple(getattr(label, "names", None) or (str(i) for i in range(num_classes)))
  return records.FeatureSpec(shape, encoding, num_classes, names)


def split_reader(builder, split: str, spec: records.FeatureSpec, train: bool,
                 image_size: int = 0) -> records.RecordReader:
  """A :class:`~lwcl.data.records.RecordReader` of one split's ArrayRecord shards."""
  if split not in builder.info.splits:
    raise DataError(f"TFDS data set '{builder.name}' has no split '{split}' (it has "
                    f"{', '.join(builder.info.splits)}); fix --config.data.train_split / test_split")
  paths = [os.fspath(p) for p in builder.info.splits[split].filepaths]
  missing = [p for p in paths if not os.path.exists(p)]
  if not paths or missing:
    raise DataError(f"the ArrayRecord files of {builder.name} ({split}) are missing in {builder.data_dir} "
                    f"({len(missing)} of {len(paths)}); prepare it again with --file_format=array_record")
  lengths = [int(n) for n in getattr(builder.info.splits[split], "shard_lengths", None) or []]
  if len(lengths) != len(paths):  # each shard must hold the records the builder wrote (truncated: fewer)
    raise DataError(f"TFDS data set '{builder.name}' ({split}) lists {len(paths)} files but {len(lengths)} "
                    "shard lengths; prepare it again with --file_format=array_record")
  return records.RecordReader.of_files(paths, spec, f"{builder.name} ({split})", train, image_size, lengths,
                                       f"the dataset_info of {builder.name} in {builder.data_dir}")


def open_tfds_stream(data_config) -> tuple:
  """The prepared TFDS data set ``data.name`` in ``data.data_dir``: ``(train reader, test reader, spec,
  data_dir)``; :func:`lwcl.data.sources.load_dataset` makes the streamed data set of them.

  Raises:
    DataError: tensorflow-datasets missing, an unknown or unprepared data set, another file format, a
      missing split or files, or features that are not a fixed-shape image and a class label.
  """
  builder = _builder(data_config.name, data_config.data_dir or None)
  spec = feature_spec(builder)
  size = int(data_config.get("image_size", 0) or 0)
  return (split_reader(builder, data_config.train_split, spec, True, size),
          split_reader(builder, data_config.test_split, spec, False, size), spec, str(builder.data_dir))
