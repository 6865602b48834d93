"""lwcl.data.sources: local data, the real Fashion-MNIST files, concatenated data sets, mock TFDS."""


import chex
import numpy as np
import pytest

from lwcl.data import scenarios, sources
from lwcl.errors import DataError

from helpers import FMNIST_DIR, requires_real_fmnist, small_config, synthetic_dataset


def test_missing_local_data_names_the_fix(tmp_path):
  cfg = small_config(**{"data.source": "idx", "data.idx_dir": str(tmp_path)})
  with pytest.raises(DataError, match="dataset-fashion-mnist"):
    sources.load_dataset(cfg.data)


@requires_real_fmnist
def test_real_fashion_mnist_files():
  ds = sources.load_idx_dataset("fashion_mnist", FMNIST_DIR)
  chex.assert_shape(ds.train_images, (60000, 28, 28, 1))
  chex.assert_shape(ds.test_images, (10000, 28, 28, 1))
  assert ds.num_classes == 10
  np.testing.assert_array_equal(np.bincount(ds.test_labels), [1000] * 10)


def test_two_datasets_concatenate_into_one_class_space():
  a, b = synthetic_dataset(classes=10, seed=1), synthetic_dataset(classes=4, seed=2)
  both = sources.concatenate([a, b])
  assert both.num_classes == 14 and both.name == "synthetic+synthetic"
  np.testing.assert_array_equal(both.train_labels[len(a.train_labels):], b.train_labels + 10)
  np.testing.assert_array_equal(both.test_images[: len(a.test_labels)], a.test_images)
  with pytest.raises(DataError, match="image shapes differ"):
    sources.concatenate([a, synthetic_dataset(size=5)])


def test_cifar10_plus_cifar100_stream_with_mock_tfds():
  import tensorflow_datasets as tfds
  cfg = small_config(**{"data.source": "tfds", "data.name": "cifar10+cifar100", "scenario.num_tasks": 11,
                        "scenario.classes_per_task": 10, "scenario.samples_per_task": 0})
  with tfds.testing.mock_data(num_examples=300):
    ds = sources.load_dataset(cfg.data)
  assert ds.num_classes == 110 and ds.class_names[10].startswith("cifar100:")
  sc = scenarios.build_scenario(cfg.scenario, ds)
  assert sc.tasks[0].classes == tuple(range(10)) and sc.tasks[10].classes == tuple(range(100, 110))
  assert sc.output_dim == 10 and sc.num_heads == 11


def test_tfds_offline_and_unprepared_fails_in_seconds(monkeypatch, tmp_path):
  # Issue 32: TFDS retried its downloads for 40-150 s on an offline machine.
  for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
    monkeypatch.delenv(k, raising=False)
  monkeypatch.setattr(sources, "_resolves", lambda host, timeout=5.0: False)
  cfg = small_config(**{"data.source": "tfds", "data.data_dir": str(tmp_path)})
  with pytest.raises(DataError, match=r"'fashion_mnist' is not prepared in .* and this machine is offline "
                                      r".*tfds build fashion_mnist --data_dir=DIR"):
    sources.load_dataset(cfg.data)
  assert sources._offline_error("x", None) is not None
  monkeypatch.setattr(sources, "_resolves", lambda host, timeout=5.0: True)
  assert sources._offline_error("x", None) is None  # online: TFDS downloads it
  monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
  monkeypatch.setattr(sources, "_resolves", lambda host, timeout=5.0: False)
  assert sources._offline_error("x", None) is None  # behind a proxy: not judged


def test_resolves_is_bounded():
  assert sources._resolves("localhost")
  assert not sources._resolves("no-such-host.invalid", timeout=5.0)


def test_an_idx_folder_named_by_the_environment_is_never_a_fallback(tmp_path, monkeypatch):
  monkeypatch.setenv(sources.IDX_DIR_ENV, str(tmp_path / "missing"))
  with pytest.raises(DataError, match=r"\$LWCL_IDX_DIR .*missing does not exist; .*fix or unset \$LWCL_IDX_DIR"):
    sources.load_dataset(small_config().data)
