"""IDX reading, scenarios and the input pipeline, on synthetic IDX files and on real Fashion-MNIST."""

import os

import chex
import jax
import numpy as np
import pytest

from conftest import FMNIST_DIR, requires_real_fmnist, small_config
from synthetic_data import write_idx
from lwcl.data import idx, pipeline, scenarios, sources
from lwcl.errors import ConfigError, DataError


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


def test_missing_local_data_names_the_fix(tmp_path):
  cfg = small_config(**{"data.source": "idx", "data.idx_dir": str(tmp_path)})
  with pytest.raises(DataError, match="dataset-fashion-mnist"):
    sources.load_dataset(cfg.data)


def synthetic_dataset(n=200, size=6, classes=10, seed=0):
  rng = np.random.default_rng(seed)
  mk = lambda k: (rng.integers(0, 256, (k, size, size, 1), dtype=np.uint8),
                  (np.arange(k) % classes).astype(np.int32))
  (tx, ty), (vx, vy) = mk(n), mk(n // 2)
  return sources.ImageDataset("synthetic", tx, ty, vx, vy, classes, tuple(map(str, range(classes))), "test")


def test_split_task_incremental_multi_head():
  ds = synthetic_dataset()
  cfg = small_config(**{"scenario.num_tasks": 5, "scenario.samples_per_task": 0})
  sc = scenarios.build_scenario(cfg.scenario, ds)
  assert sc.num_heads == 5 and sc.output_dim == 2 and sc.label_masks.all()
  for t, task in enumerate(sc.tasks):
    assert task.classes == (2 * t, 2 * t + 1)
    assert set(np.unique(task.train.labels)) == {0, 1}
    assert len(task.train) == 40 and len(task.test) == 20


def test_split_masked_and_class_incremental_keep_global_labels():
  ds = synthetic_dataset()
  masked = scenarios.build_scenario(small_config(**{"scenario.task_heads": "masked"}).scenario, ds)
  assert masked.num_heads == 1 and masked.output_dim == 10
  np.testing.assert_array_equal(masked.label_masks[1], np.isin(np.arange(10), [2, 3]))
  assert set(np.unique(masked.tasks[1].train.labels)) == {2, 3}
  cls = scenarios.build_scenario(small_config(**{"scenario.incremental": "class"}).scenario, ds)
  assert cls.num_heads == 1 and cls.output_dim == 10 and cls.label_masks.all()
  assert set(np.unique(cls.tasks[2].test.labels)) == {4, 5}


def test_class_and_task_order_and_samples_and_validation():
  ds = synthetic_dataset(n=400)
  cfg = small_config(**{"scenario.class_order": (9, 8, 7, 6, 5, 4), "scenario.order_seed": 3,
                        "scenario.samples_per_task": 30, "scenario.validation_fraction": 0.25})
  sc = scenarios.build_scenario(cfg.scenario, ds)
  order = scenarios.task_order(3, 3)
  assert [t.classes for t in sc.tasks] == [((9, 8), (7, 6), (5, 4))[i] for i in order]
  for task in sc.tasks:
    assert len(task.train) == 30 and len(task.valid) == 20  # 80 per task, a quarter held out
    # validation and training examples are disjoint
    tr = {a.tobytes() for a in task.train.images}
    assert not tr & {a.tobytes() for a in task.valid.images}


def test_impossible_scenarios_raise_config_errors():
  ds = synthetic_dataset()
  with pytest.raises(ConfigError, match="cannot be split evenly"):
    scenarios.build_scenario(small_config(**{"scenario.num_tasks": 3,
                                             "scenario.classes_per_task": 0}).scenario, ds)
  with pytest.raises(ConfigError, match="need 12 classes"):
    scenarios.build_scenario(small_config(**{"scenario.num_tasks": 6}).scenario, ds)
  with pytest.raises(ConfigError, match="class_order"):
    scenarios.build_scenario(small_config(**{"scenario.class_order": (1, 1, 2)}).scenario, ds)


def test_permuted_applies_one_fixed_permutation_per_task():
  ds = synthetic_dataset()
  sc = scenarios.build_scenario(small_config(**{"scenario.kind": "permuted",
                                                "scenario.samples_per_task": 0}).scenario, ds)
  assert sc.output_dim == 10 and sc.num_heads == 3
  seen = []
  for task in sc.tasks:
    perm = np.random.default_rng(task.transform["permutation_seed"]).permutation(36)
    np.testing.assert_array_equal(task.test.images.reshape(-1, 36)[:, :],
                                  ds.test_images.reshape(-1, 36)[:, perm])
    seen.append(tuple(perm))
  assert len(set(seen)) == 3


def test_rotated_rotates_by_the_task_angle():
  ds = synthetic_dataset()
  sc = scenarios.build_scenario(small_config(**{"scenario.kind": "rotated", "scenario.angles": (0.0, 90.0, 180.0),
                                                "scenario.incremental": "domain"}).scenario, ds)
  assert sc.num_heads == 1
  np.testing.assert_array_equal(sc.tasks[0].test.images, ds.test_images)
  np.testing.assert_array_equal(sc.tasks[1].test.images, np.rot90(ds.test_images, 1, axes=(1, 2)))
  np.testing.assert_array_equal(sc.tasks[2].test.images, ds.test_images[:, ::-1, ::-1])


def test_epoch_order_is_deterministic_and_resumable():
  data = pipeline.Examples(np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1), np.arange(50, dtype=np.int32),
                           np.zeros(50, np.int32))
  full = [b["label"] for b in pipeline.train_batches(data, 8, seed=1, task=0, epoch=2)]
  assert len(full) == 6  # last partial batch dropped
  resumed = [b["label"] for b in pipeline.train_batches(data, 8, seed=1, task=0, epoch=2, start=4)]
  np.testing.assert_array_equal(np.stack(full[4:]), np.stack(resumed))
  other = [b["label"] for b in pipeline.train_batches(data, 8, seed=1, task=0, epoch=3)]
  assert not np.array_equal(np.stack(full), np.stack(other))
  with pytest.raises(DataError, match="batch_size"):
    pipeline.steps_per_epoch(5, 8)


def test_eval_batches_pad_with_zero_mask():
  x = np.ones((7, 2, 2, 1), np.uint8)
  batches = list(pipeline.eval_batches(x, np.arange(7, dtype=np.int32), task=3, batch_size=4))
  assert len(batches) == 2
  np.testing.assert_array_equal(batches[1]["mask"], [1, 1, 1, 0])
  assert (batches[1]["task"] == 3).all()


def test_preprocessor_normalizes_and_augments():
  pre = pipeline.Preprocessor((0.5,), (0.25,), random_crop=True, crop_padding=2, horizontal_flip=True)
  images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)
  plain = pre(images)
  np.testing.assert_allclose(plain, (images / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)
  aug = pre(images, jax.random.PRNGKey(0))
  chex.assert_shape(aug, (16, 8, 8, 1))
  assert not np.allclose(aug, plain)
  np.testing.assert_array_equal(aug, pre(images, jax.random.PRNGKey(0)))  # deterministic per key


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
