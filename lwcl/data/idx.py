"""Reader for MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST), plain or gzip-compressed.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): two zero bytes, a type code
(0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of
dimensions, then each dimension as a big-endian uint32, then the data in C order, big-endian.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from lwcl.errors import DataError

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_DIMS = 4  # more is no MNIST-format file (and past NumPy's limit of 64)

# The four files of an MNIST-format data set; each name may also appear with '.' for the middle '-'
# (as some mirrors ship them) and with or without '.gz'.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str) -> np.ndarray:
  """Reads one IDX file.

  Args:
    path: the file, plain or ending in ``.gz``.
  Returns:
    An array with the file's shape, in native byte order (uint8 for image and label files).
  Raises:
    DataError: if the file is missing, truncated, not IDX, or declares no or more than 4 dimensions.
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise DataError(f"IDX file {path} not found; check --config.data.idx_dir") from None
  except (OSError, EOFError, zlib.error) as e:  # gzip: BadGzipFile (an OSError), EOFError, zlib.error
    raise DataError(f"cannot read IDX file {path} ({e}); re-download or reinstall the data set") from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
    raise DataError(f"{path} is not an IDX file (bad magic number); point --config.data.idx_dir at "
                    "MNIST-format files")
  ndim = data[3]
  header = 4 + 4 * ndim
  if not 1 <= ndim <= MAX_DIMS or len(data) < header:
    raise DataError(f"{path} is corrupt: its header declares {ndim} dimensions ({header} header bytes, the "
                    f"file holds {len(data)}); MNIST-format files have 1 (labels) or 3 (images): re-download "
                    "or reinstall the data set")
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  dtype = np.dtype(_DTYPES[data[2]])
  expected = math.prod(shape) * dtype.itemsize  # Python ints: a header's product cannot overflow
  if len(data) - header != expected:
    raise DataError(f"{path} is truncated or corrupt: header says {list(shape)} ({expected} bytes), file "
                    f"holds {len(data) - header}; re-download or reinstall the data set")
  return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_file(directory: str, stem: str) -> str | None:
  """The path of ``stem`` in ``directory`` under any of its usual spellings, or None."""
  alt = stem.replace("-idx", ".idx")
  for name in (stem, stem + ".gz", alt, alt + ".gz"):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  return None


def missing_idx_files(directory: str | None) -> list:
  """The stems of the four MNIST-format files (:data:`SPLIT_FILES`) that ``directory`` lacks (all four
  when it is not a folder)."""
  stems = [s for pair in SPLIT_FILES.values() for s in pair]
  if not directory or not os.path.isdir(directory):
    return stems
  return [s for s in stems if not find_idx_file(directory, s)]


def has_idx_dataset(directory: str | None) -> bool:
  """Whether ``directory`` holds all four MNIST-format files."""
  return not missing_idx_files(directory)


def load_idx_split(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Loads one split of an MNIST-format data set.

  Args:
    directory: folder with the four IDX files.
    split: ``'train'`` or ``'test'``.
  Returns:
    ``(images, labels)``: uint8 ``[N, H, W, 1]`` and int32 ``[N]``.
  Raises:
    DataError: if a file is missing or corrupt, its images are not uint8 or its labels not integers (or
      negative), images and labels disagree in number, or there are none.
  """
  paths = []
  for stem in SPLIT_FILES[split]:
    path = find_idx_file(directory, stem)
    if path is None:
      raise DataError(f"{stem}[.gz] not found in {directory}; install Debian's dataset-fashion-mnist "
                      "or set --config.data.idx_dir to a folder of MNIST-format files")
    paths.append(path)
  images, labels = read_idx(paths[0]), read_idx(paths[1])
  if images.dtype != np.uint8:
    raise DataError(f"{paths[0]} holds {images.dtype} images, lwcl reads uint8 pixels (0-255, IDX type 0x08); "
                    "convert them (from [0, 1]: np.round(x * 255).astype(np.uint8)) and rewrite the file")
  if labels.dtype.kind not in "iu":
    raise DataError(f"{paths[1]} holds {labels.dtype} labels, not integer class ids; rewrite it with the "
                    "labels as uint8 (IDX type 0x08)")
  if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
    raise DataError(f"{paths[0]} and {paths[1]} do not match (shapes {list(images.shape)} and "
                    f"{list(labels.shape)}, expected [N, H, W] and [N]); re-download or reinstall the data set")
  if not labels.size or not min(images.shape[1:]):
    raise DataError(f"{paths[0]} holds no examples (shape {list(images.shape)}); re-download or reinstall the "
                    "data set")
  if labels.min() < 0:
    raise DataError(f"{paths[1]} has label {int(labels.min())}; class ids are 0 or more: fix the labels file")
  return images[..., None].astype(np.uint8), labels.astype(np.int32)
