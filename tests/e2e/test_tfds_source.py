"""The TFDS source for real and offline: a data set prepared by TFDS's own Fashion-MNIST builder into a
temporary ``data_dir``, read back by ``data.source=tfds``, and trained on.

References: the data set's own IDX files (the examples TFDS serves must be exactly those written), and the
IDX source (``data.source=idx``) on the same examples in the same order, whose accuracy matrix the TFDS
run must reproduce bit for bit (both sources feed one pipeline).

No network is used: the builder is TFDS's ``FashionMNIST`` with only its download step replaced by local
files (``_split_generators``), and the run loads with ``data.download=False``.
"""

import os

import chex
import numpy as np
import pytest

from lwcl.data import idx, sources
from lwcl.data.synthetic import FILES, write_idx, write_learnable_idx_dataset
from lwcl.engine import experiment
from lwcl.errors import DataError
from lwcl.runs import driver

from helpers import small_config

tfds = pytest.importorskip("tensorflow_datasets")


def prepare_tfds_fashion_mnist(idx_dir: str, data_dir: str, num_train: int, num_test: int) -> None:
  """Writes ``fashion_mnist`` into ``data_dir`` with TFDS's own builder, reading the IDX files of
  ``idx_dir`` instead of downloading them (the builder's only network step)."""
  from tensorflow_datasets.image_classification import mnist  # pylint: disable=g-import-not-at-top

  class LocalFashionMNIST(mnist.FashionMNIST, skip_registration=True):
    name = "fashion_mnist"  # the registered builder's folder, so tfds.load("fashion_mnist") finds it

    def _split_generators(self, dl_manager):  # the builder's own, with local files for the URLs
      files = dl_manager.extract({key: os.path.join(idx_dir, name) for key, name in FILES.items()})
      return [tfds.core.SplitGenerator(name=split, gen_kwargs=dict(
          num_examples=n, data_path=files[(split, "images")], label_path=files[(split, "labels")]))
              for split, n in (("train", num_train), ("test", num_test))]

  LocalFashionMNIST(data_dir=data_dir).download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def run(tmp_path, name: str, **data) -> dict:
  cfg = small_config(**{"data.name": "fashion_mnist", "scenario.num_tasks": 2, "scenario.samples_per_task": 0,
                        **{f"data.{k}": v for k, v in data.items()}})
  return experiment.Experiment(cfg).run(str(tmp_path / name))


def sorted_pairs(images: np.ndarray, labels: np.ndarray) -> list:
  return sorted(zip((x.tobytes() for x in images), labels.tolist()))


def test_tfds_source_matches_the_idx_source_on_the_same_data(tmp_path):
  idx_dir = write_learnable_idx_dataset(str(tmp_path / "idx"), train_per_class=40, test_per_class=20)
  train_x, train_y = idx.load_idx_split(idx_dir, "train")
  test_x, test_y = idx.load_idx_split(idx_dir, "test")
  data_dir = str(tmp_path / "tfds")
  prepare_tfds_fashion_mnist(idx_dir, data_dir, len(train_y), len(test_y))
  assert os.path.isdir(os.path.join(data_dir, "fashion_mnist"))

  got = sources.load_tfds_dataset("fashion_mnist", data_dir, download=False)
  # TFDS serves exactly the examples written (its writer shuffles their order), with the builder's names.
  assert got.source == "tfds" and got.num_classes == 10 and got.class_names[0] == "T-shirt/top"
  assert got.train_images.shape == train_x.shape and got.test_images.shape == test_x.shape
  assert sorted_pairs(got.train_images, got.train_labels) == sorted_pairs(train_x, train_y)
  assert sorted_pairs(got.test_images, got.test_labels) == sorted_pairs(test_x, test_y)

  # The same examples in TFDS's order as IDX files: both sources must give the same run.
  same_dir = tmp_path / "idx_in_tfds_order"
  same_dir.mkdir()
  for (split, kind), array in {("train", "images"): got.train_images[..., 0],
                               ("train", "labels"): got.train_labels, ("test", "images"): got.test_images[..., 0],
                               ("test", "labels"): got.test_labels}.items():
    write_idx(str(same_dir / FILES[(split, kind)]), array)
  from_tfds = run(tmp_path, "tfds", source="tfds", data_dir=data_dir, download=False)
  from_idx = run(tmp_path, "idx", source="idx", idx_dir=str(same_dir))
  assert from_tfds["data_source"] == "tfds" and from_idx["data_source"].startswith("idx:")
  assert from_tfds["accuracy_matrix"] == from_idx["accuracy_matrix"]
  assert from_tfds["final_train_loss"] == from_idx["final_train_loss"]
  assert from_tfds["acc"] > 0.3  # it learned: the synthetic classes are separable (chance 0.2 for 2 tasks)


def test_missing_tfds_data_set_offline_names_the_fix(tmp_path):
  with pytest.raises(DataError, match="cannot load TFDS data set 'fashion_mnist'.*tfds build"):
    sources.load_tfds_dataset("fashion_mnist", str(tmp_path), download=False)


def test_explicit_empty_idx_dir_is_an_error_not_a_tfds_fallback(tmp_path):
  cfg = small_config(**{"data.source": "auto", "data.idx_dir": str(tmp_path)})
  with pytest.raises(DataError, match=r"data.idx_dir .* lacks train-images-idx3-ubyte\[.gz\].*; put"):
    sources.load_dataset(cfg.data)
  cfg = small_config(**{"data.source": "auto", "data.idx_dir": str(tmp_path / "nope")})
  with pytest.raises(DataError, match="does not exist; put"):
    sources.load_dataset(cfg.data)


def test_tfds_source_end_to_end_with_mock_data(tmp_path):
  import tensorflow_datasets as tfds
  config = small_config(**{"data.source": "tfds", "data.name": "cifar10", "scenario.num_tasks": 2,
                           "scenario.samples_per_task": 0, "train.batch_size": 10,
                           "data.augment.random_crop": True, "data.augment.horizontal_flip": True})
  with tfds.testing.mock_data(num_examples=100):
    results = driver.run(config, str(tmp_path / "w"))
  assert results["data_source"] == "tfds"
  chex.assert_shape(np.asarray(results["accuracy_matrix"]), (2, 2))
  assert results["tasks"][0]["num_test"] > 0
