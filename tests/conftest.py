"""Shared test set-up: JAX on the CPU, quiet TensorFlow, and small real-data configs."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import pytest  # noqa: E402

from lwcl.data import sources  # noqa: E402

FMNIST_DIR = sources.DEFAULT_IDX_DIRS["fashion_mnist"]


def have_fashion_mnist() -> bool:
  from lwcl.data import idx
  return idx.has_idx_dataset(os.environ.get(sources.IDX_DIR_ENV) or FMNIST_DIR)


requires_fmnist = pytest.mark.skipif(not have_fashion_mnist(),
                                     reason="Fashion-MNIST IDX files not installed (bin/setup installs them)")


def small_config(**overrides):
  """The default config shrunk for tests: MLP, 3 tasks, 200 examples per task, 1 epoch, no progress bar.

  ``overrides`` maps dotted keys to values, e.g. ``{'method.name': 'joint'}``.
  """
  from lwcl import config_files
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
