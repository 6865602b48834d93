"""Shared test set-up: JAX on the CPU, quiet TensorFlow, data for the end-to-end runs, small configs.

End-to-end tests run on the installed Fashion-MNIST files; when they are missing (or with
``LWCL_TEST_SYNTHETIC_DATA=1``) on a small learnable synthetic data set in the same IDX format, written
once per session and found through ``$LWCL_IDX_DIR`` (subprocesses inherit it). Tests of the real files
themselves are marked ``requires_real_fmnist``: they skip when the files are missing, except under
``CI=true``, where a missing data set is a failure (CI installs it with bin/setup).
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# JAX's compiled programs for the whole suite and its subprocesses (set before lwcl.configure() below, which
# turns the persistent compilation cache on): the repository's ignored .cache/jax, not the user's ~/.cache/lwcl.
# Tests pass the same with it empty, full or off (LWCL_COMPILATION_CACHE=0).
os.environ.setdefault("LWCL_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                     ".cache"))

import pytest  # noqa: E402

import lwcl  # noqa: E402

# The suite runs with the command line's process settings (XLA:CPU flags, compilation cache): in-process
# runs then compute what `python -m lwcl.main` in a subprocess computes.
lwcl.configure()

from lwcl.config import files as config_files  # noqa: E402
from lwcl.data import idx, sources  # noqa: E402
from synthetic_data import write_learnable_idx_dataset  # noqa: E402

FMNIST_DIR = sources.DEFAULT_IDX_DIRS["fashion_mnist"]
HAVE_REAL_FMNIST = idx.has_idx_dataset(FMNIST_DIR)
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

USING_SYNTHETIC_DATA = not HAVE_REAL_FMNIST or os.environ.get("LWCL_TEST_SYNTHETIC_DATA") == "1"
if USING_SYNTHETIC_DATA:
  os.environ[sources.IDX_DIR_ENV] = write_learnable_idx_dataset(tempfile.mkdtemp(prefix="lwcl-test-idx-"))


def requires_real_fmnist(test):
  """Marks a test of the real Fashion-MNIST files: skipped when they are missing, failed under CI."""
  if HAVE_REAL_FMNIST:
    return test
  if ON_CI:
    def fail(*args, **kwargs):
      pytest.fail(f"Fashion-MNIST IDX files missing from {FMNIST_DIR} under CI=true; bin/setup installs "
                  "them (apt-get install dataset-fashion-mnist)")
    fail.__name__ = test.__name__
    return fail
  return pytest.mark.skip(reason="Fashion-MNIST IDX files not installed (bin/setup installs them)")(test)


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


def small_config(**overrides):
  """The default config shrunk for tests: MLP, 3 tasks, 200 examples per task, 1 epoch, no progress bar.

  ``overrides`` maps dotted keys to values, e.g. ``{'method.name': 'joint'}``.
  """
  c = config_files.load(os.path.join(os.path.dirname(__file__), "..", "configs", "default.py")).get_config()
  c.model.name = "mlp"
  c.model.hidden = (32,)
  c.scenario.num_tasks = 3
  c.scenario.classes_per_task = 2
  c.scenario.samples_per_task = 200
  c.train.epochs_per_task = 1
  c.train.batch_size = 20
  c.train.eval_batch_size = 500
  c.train.progress = False
  c.checkpoint.every_steps = 0
  for key, value in overrides.items():
    config_files.set_key(c, key, value)
  c.lock()
  return c


def assert_same_stream(got: dict, want: dict) -> None:
  """Two results dicts of one stream agree exactly: accuracy matrix, initial accuracies, final losses
  (what a resumed or re-dispatched run must reproduce bit for bit)."""
  for key in ("accuracy_matrix", "initial_accuracy", "final_train_loss"):
    assert got[key] == want[key], key
