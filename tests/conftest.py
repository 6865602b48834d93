"""Shared test set-up: JAX on the CPU, quiet TensorFlow, data for the end-to-end runs, small configs.

End-to-end tests run on the installed Fashion-MNIST files; when they are missing (or with
``LWCL_TEST_SYNTHETIC_DATA=1``) on a small learnable synthetic data set in the same IDX format, written
once per session and found through ``$LWCL_IDX_DIR`` (subprocesses inherit it). The installed files are
read through ``$LWCL_IDX_DIR`` too, from an uncompressed copy made once per session: the same arrays, with
no decompression of the .gz files at each of the suite's several hundred runs. Tests of the real files
themselves read the installed folder and are marked ``requires_real_fmnist``: they skip when the files are
missing, except under ``CI=true``, where a missing data set is a failure (CI installs it with bin/setup).
"""

import atexit
import gzip
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# JAX's compiled programs for the whole suite and its subprocesses (set before lwcl.configure() below, which
# turns the persistent compilation cache on): the repository's ignored .cache/jax, not the user's ~/.cache/lwcl.
# Tests pass the same with it empty, full or off (LWCL_COMPILATION_CACHE=0).
_SUITE_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache")
os.environ.setdefault("LWCL_CACHE_DIR", _SUITE_CACHE)
# Without JAX's size limit on it (lwcl's is 2 GiB): with a limit, JAX re-reads the size and last use of every
# entry, under one lock all the suite's processes share, each time it writes one (about 0.1 s of CPU per
# program once the suite's 2000 are in). The suite's own folder is emptied instead when a session starts
# with it over lwcl's limit (below).
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", "-1")

import pytest  # noqa: E402

import lwcl  # noqa: E402

# The suite runs with the command line's process settings (XLA:CPU flags, compilation cache): in-process
# runs then compute what `python -m lwcl.main` in a subprocess computes.
lwcl.configure()

from lwcl.data import idx, sources  # noqa: E402
from lwcl.data.synthetic import write_learnable_idx_dataset  # noqa: E402
from lwcl.platform import compilation_cache  # noqa: E402

from helpers import FMNIST_DIR, HAVE_REAL_FMNIST, ON_CI  # noqa: E402


def _uncompressed_copy(directory: str) -> str:
  """The four IDX files of ``directory``, decompressed into a new temporary folder that is removed when
  this process exits; returns the folder."""
  copy = tempfile.mkdtemp(prefix="lwcl-test-fmnist-")
  atexit.register(shutil.rmtree, copy, ignore_errors=True)
  for stems in idx.SPLIT_FILES.values():
    for stem in stems:
      path = idx.find_idx_file(directory, stem)
      with (gzip.open if path.endswith(".gz") else open)(path, "rb") as src, \
          open(os.path.join(copy, stem), "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
  return copy


def _folder_bytes(folder: str) -> int:
  with os.scandir(folder) as entries:
    return sum(e.stat().st_size for e in entries if e.is_file())


_cache_folder = compilation_cache.cache_dir()
if (not os.environ.get("PYTEST_XDIST_WORKER") and os.environ["LWCL_CACHE_DIR"] == _SUITE_CACHE
    and os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] == "-1" and os.path.isdir(_cache_folder)
    and _folder_bytes(_cache_folder) > compilation_cache.MAX_BYTES):
  shutil.rmtree(_cache_folder, ignore_errors=True)  # a cache: emptied, the suite compiles afresh


USING_SYNTHETIC_DATA = not HAVE_REAL_FMNIST or os.environ.get("LWCL_TEST_SYNTHETIC_DATA") == "1"
if USING_SYNTHETIC_DATA:
  os.environ[sources.IDX_DIR_ENV] = write_learnable_idx_dataset(tempfile.mkdtemp(prefix="lwcl-test-idx-"))
elif not os.environ.get(sources.IDX_DIR_ENV):
  # Made by the first process of a session (pytest-xdist's workers and every subprocess inherit the variable
  # and read this copy) and removed when it exits.
  os.environ[sources.IDX_DIR_ENV] = _uncompressed_copy(FMNIST_DIR)


@pytest.fixture
def onednn_available():
  """For tests of lwcl's oneDNN convolutions: skips when the library is not built or cannot load, fails
  under CI (bin/setup builds it: python -m lwcl.platform.native.build)."""
  from lwcl.models import onednn  # pylint: disable=g-import-not-at-top
  reason = onednn.unavailable_reason()
  if reason is not None:
    if ON_CI:
      pytest.fail(f"oneDNN convolutions unavailable under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory):
  """A folder shared by every process of this test session: the pytest-xdist workers' common base temporary
  folder (each worker's own is a subfolder of it), else this process's; for runs that several tests read,
  made once (helpers.once_per_session)."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent
  folder = base / "session"
  folder.mkdir(exist_ok=True)
  return str(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  """The same small data set twice: IDX files (in-memory source) and ArrayRecord shards (streamed); see
  streaming_cases.write_folders."""
  import streaming_cases  # pylint: disable=g-import-not-at-top
  return streaming_cases.write_folders(tmp_path_factory.mktemp("stream"))


@pytest.fixture(scope="module")
def jpeg_records(tmp_path_factory):
  """A tiny ImageNet-like JPEG record folder (streaming_cases.write_jpeg_set)."""
  import streaming_cases  # pylint: disable=g-import-not-at-top
  return streaming_cases.write_jpeg_set(str(tmp_path_factory.mktemp("jpeg_records")))
