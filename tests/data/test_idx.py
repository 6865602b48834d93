"""lwcl.data.idx: IDX files round trip; corrupt and missing files are errors."""

import gzip
import os

import chex
import numpy as np
import pytest

from lwcl.data import idx, sources
from lwcl.data.synthetic import write_idx
from lwcl.errors import DataError


def make_idx_dataset(directory, n_train=120, n_test=60, size=8, gz=True, seed=0):
  rng = np.random.default_rng(seed)
  ext = ".gz" if gz else ""
  arrays = {}
  for split, n in (("train", n_train), ("t10k", n_test)):
    x = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte{ext}"), x)
    write_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte{ext}"), y)
    arrays[split] = (x, y)
  return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
  arrays = make_idx_dataset(str(tmp_path), gz=gz)
  x, y = idx.load_idx_split(str(tmp_path), "train")
  chex.assert_shape(x, (120, 8, 8, 1))
  np.testing.assert_array_equal(x[..., 0], arrays["train"][0])
  np.testing.assert_array_equal(y, arrays["train"][1])
  assert y.dtype == np.int32


def test_idx_corrupt_and_missing(tmp_path):
  make_idx_dataset(str(tmp_path), gz=False)
  path = os.path.join(str(tmp_path), "train-images-idx3-ubyte")
  with open(path, "r+b") as f:
    f.truncate(100)
  with pytest.raises(DataError, match="truncated"):
    idx.read_idx(path)
  with open(path, "wb") as f:
    f.write(b"not an idx file")
  with pytest.raises(DataError, match="magic"):
    idx.read_idx(path)
  with pytest.raises(DataError, match="not found"):
    idx.load_idx_split(str(tmp_path / "nowhere"), "test")


def raw_idx(path, type_code, shape, payload=None, ndim=None):
  """An IDX file of any type code and header (``ndim`` overrides the number of dimensions declared)."""
  header = bytes([0, 0, type_code, len(shape) if ndim is None else ndim])
  header += b"".join(int(d).to_bytes(4, "big") for d in shape)
  with open(path, "wb") as f:
    f.write(header + (payload if payload is not None else b""))


def _float_images(d):
  x = np.random.default_rng(0).uniform(0, 1, (120, 8, 8)).astype(">f4")
  raw_idx(os.path.join(d, "train-images-idx3-ubyte"), 0x0D, x.shape, x.tobytes())


def _labels(values, split="train", type_code=0x08, dtype=">u1"):
  def write(d):
    y = np.asarray(values, dtype)
    raw_idx(os.path.join(d, f"{split}-labels-idx1-ubyte"), type_code, y.shape, y.tobytes())
  return write


def _images(shape, split="train", ndim=None, payload=None):
  def write(d):
    n = int(np.prod(shape)) if payload is None and ndim is None else 0
    raw_idx(os.path.join(d, f"{split}-images-idx3-ubyte"), 0x08, shape,
            payload if payload is not None else bytes(n), ndim)
  return write


def _corrupt_gzip(d):
  with open(os.path.join(d, "t10k-labels-idx1-ubyte.gz"), "wb") as f:
    f.write(gzip.compress(b"\0" * 100)[:20] + b"garbage" * 10)
  os.remove(os.path.join(d, "t10k-labels-idx1-ubyte"))


# id: (what is written over a good 10-class data set, the data set's name, fragment of the one-line error)
BAD_IDX = {
    "float32 images in [0, 1]": (_float_images, "fashion_mnist", "holds float32 images, lwcl reads uint8"),
    "one label of 255 (a known data set)": (_labels([255] + [i % 10 for i in range(119)]), "fashion_mnist",
                                            "has label 255, outside fashion_mnist's 10 classes (0-9)"),
    "one label of 255 (another data set)": (_labels([255] + [i % 10 for i in range(119)]), "my_digits",
                                            "leave 245 of 256 classes without an example"),
    "fewer classes than the data set has": (_labels([i % 5 for i in range(120)]), "mnist",
                                            "leave 5 of 10 classes without an example"),
    "float labels": (_labels(np.arange(120) % 10, type_code=0x0D, dtype=">f4"), "fashion_mnist",
                     "holds float32 labels, not integer class ids"),
    "negative labels": (_labels(-(np.arange(120) % 10), type_code=0x09, dtype=">i1"), "fashion_mnist",
                        "has label -9; class ids are 0 or more"),
    "images and labels of different counts": (_labels(np.arange(119) % 10), "fashion_mnist",
                                              "do not match (shapes [120, 8, 8] and [119]"),
    "train and test images of different sizes": (_images((120, 9, 9)), "fashion_mnist",
                                                  "training images of [9, 9] and test images of [8, 8]"),
    "255 dimensions": (_images((), ndim=255, payload=bytes(200)), "fashion_mnist", "declares 255 dimensions"),
    "zero examples": (lambda d: (_images((0, 8, 8))(d), _labels([])(d)), "fashion_mnist", "holds no examples"),
    "overflowing header": (_images((2 ** 32 - 1,) * 3, payload=bytes(64)), "fashion_mnist",
                           "header says [4294967295, 4294967295, 4294967295]"),
    "corrupt gzip": (_corrupt_gzip, "fashion_mnist", "cannot read IDX file"),
}


@pytest.mark.parametrize("case", list(BAD_IDX))
def test_malformed_idx_data_sets_end_in_one_line(tmp_path, case):
  write, name, fragment = BAD_IDX[case]
  d = str(tmp_path)
  make_idx_dataset(d, gz=False)
  write(d)
  with pytest.raises(DataError) as e:
    sources.load_idx_dataset(name, d)
  assert fragment in str(e.value) and "; " in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_good_idx_data_set_has_the_classes_of_its_name(tmp_path):
  make_idx_dataset(str(tmp_path), gz=False)
  assert sources.load_idx_dataset("fashion_mnist", str(tmp_path)).num_classes == 10
  assert sources.load_idx_dataset("my_digits", str(tmp_path)).num_classes == 10
