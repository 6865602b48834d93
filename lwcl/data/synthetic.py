"""Small learnable synthetic data sets in MNIST's IDX format, for machines without the real files.

The end-to-end tests run on Fashion-MNIST when its files are installed and otherwise on
:func:`write_learnable_idx_dataset`'s files, so the suite never passes having tested no run at all;
``bin/gpu-check`` writes one on a GPU machine that has no Fashion-MNIST (lwcl.benchmarks.gpu_check).
"""

import gzip
import os

import numpy as np

# The IDX files of a data set: (train|t10k)-(images-idx3|labels-idx1)-ubyte.gz, as Fashion-MNIST ships.
FILES = {("train", "images"): "train-images-idx3-ubyte.gz", ("train", "labels"): "train-labels-idx1-ubyte.gz",
         ("test", "images"): "t10k-images-idx3-ubyte.gz", ("test", "labels"): "t10k-labels-idx1-ubyte.gz"}


def write_idx(path: str, array: np.ndarray) -> None:
  """Writes a uint8 array in IDX format (type 0x08), gzip-compressed when ``path`` ends with ``.gz``."""
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  data = header + array.astype(np.uint8).tobytes()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(data)


def learnable_images(labels: np.ndarray, size: int, num_classes: int, seed: int) -> np.ndarray:
  """uint8 ``[N, size, size]`` images: each class a fixed random template, each image its class's template
  shifted by up to 2 pixels plus noise, so a small network separates the classes well (not perfectly)."""
  templates = np.random.default_rng(1234).uniform(0, 1, (num_classes, size, size)) > 0.6
  rng = np.random.default_rng(seed)
  out = np.empty((labels.shape[0], size, size), np.uint8)
  for i, y in enumerate(labels):
    dy, dx = rng.integers(-2, 3, 2)
    img = np.roll(templates[y], (dy, dx), axis=(0, 1)) * 170.0 + rng.normal(0, 50, (size, size)) + 40
    out[i] = np.clip(img, 0, 255)
  return out


def write_learnable_idx_dataset(directory: str, train_per_class: int = 400, test_per_class: int = 100,
                                size: int = 28, num_classes: int = 10) -> str:
  """Writes a Fashion-MNIST-shaped synthetic data set (``size x size`` grey images, ``num_classes``
  balanced classes) as gzip IDX files into ``directory``; returns ``directory``."""
  os.makedirs(directory, exist_ok=True)
  for split, per_class, seed in (("train", train_per_class, 1), ("test", test_per_class, 2)):
    labels = np.tile(np.arange(num_classes, dtype=np.uint8), per_class)
    write_idx(os.path.join(directory, FILES[(split, "images")]),
              learnable_images(labels, size, num_classes, seed))
    write_idx(os.path.join(directory, FILES[(split, "labels")]), labels)
  return directory
