"""The small record data sets the tests of the streaming source share (tests/data/, tests/models/,
tests/e2e/test_streaming.py; their fixtures ``folders`` and ``jpeg_records`` are in tests/conftest.py)."""

import os

import numpy as np

from lwcl.data import records, sources
from lwcl.data.synthetic import FILES, write_idx

from helpers import ROOT, small_config

TRAIN, TEST = 3000, 1000  # the first examples of Fashion-MNIST (or of the synthetic set without it)


def write_folders(base):
  """The same small data set twice: IDX files (in-memory source) and ArrayRecord shards (streamed)."""
  ds = sources.load_dataset(small_config().data)
  x, y = ds.train_images[:TRAIN], ds.train_labels[:TRAIN]
  xt, yt = ds.test_images[:TEST], ds.test_labels[:TEST]
  idx_dir, rec_dir = str(base / "idx"), str(base / "records")
  os.makedirs(idx_dir)
  arrays = {("train", "images"): x[..., 0], ("train", "labels"): y, ("test", "images"): xt[..., 0],
            ("test", "labels"): yt}
  for key, name in FILES.items():
    write_idx(os.path.join(idx_dir, name), arrays[key])
  records.write_dataset(rec_dir, (x, y), (xt, yt), class_names=ds.class_names, num_shards=3)
  return {"idx": idx_dir, "records": rec_dir, "arrays": (x, y, xt, yt)}


def data_config(**overrides):
  return small_config(**{f"data.{k}": v for k, v in overrides.items()}).data


def write_jpeg_set(directory, train=48, test=16, classes=4):
  """A tiny ImageNet-like record folder: JPEGs of varying sizes (36-52 pixels), ``classes`` colours; splits
  ``train`` and ``validation`` (ImageNet's names)."""
  rng = np.random.default_rng(0)
  spec = records.FeatureSpec((0, 0, 3), "jpeg", classes)
  colours = rng.integers(0, 256, (classes, 3))
  for split, n in (("train", train), ("validation", test)):
    labels = np.arange(n) % classes
    images = [np.clip(colours[y] + rng.normal(0, 30, (int(rng.integers(36, 53)), int(rng.integers(36, 53)), 3)),
                      0, 255).astype(np.uint8) for y in labels]
    records.write_split(directory, split, [([x], [y]) for x, y in zip(images, labels)], spec, num_shards=2)
  records.write_features(directory, spec)
  return directory


def imagenet_config(base, arg):
  """``configs/layerwise_imagenet.py:arg`` shrunk to the tiny JPEG records: 32 x 32, width 8, batch 16."""
  from lwcl.config import files as config_files
  c = config_files.load(os.path.join(ROOT, "configs", "layerwise_imagenet.py")).get_config(arg)
  greedy = arg.endswith("greedy")
  overrides = {"data.source": "arrayrecord", "data.record_dir": str(base), "data.name": "tiny_jpegs",
               "data.image_size": 32, "data.stream.threads": 2, "model.width": 8,
               "model.conv_stages": ((8,), (16, 16)), "train.batch_size": 16, "train.eval_batch_size": 16,
               "train.epochs_per_task": 1, "train.progress": False, "checkpoint.every_steps": 0,
               "layerwise.greedy_epochs_per_block": 1 if greedy else 0}
  for key, value in overrides.items():
    config_files.set_key(c, key, value)
  if greedy:  # one epoch per local block: ResNet-18 4 stages, the shrunk VGG 2
    config_files.set_key(c, "train.epochs_per_task", 4 if c.model.name == "imagenet_resnet18" else 2)
  c.lock()
  return c
