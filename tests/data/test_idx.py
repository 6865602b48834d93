"""lwcl.data.idx: IDX files round trip; corrupt and missing files are errors."""

import os

import chex
import numpy as np
import pytest

from lwcl.data import idx
from lwcl.errors import DataError

from synthetic_data import write_idx


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
