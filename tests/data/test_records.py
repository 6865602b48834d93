"""lwcl.data.records: ArrayRecord data sets read back what was written; bad folders; training views."""

import json
import os

import chex
import numpy as np
import pytest

from lwcl.data import records, sources
from lwcl.data.lazy import LazyImages
from lwcl.errors import ConfigError, DataError
from lwcl.runs import driver

from helpers import small_config
from streaming_cases import TRAIN, data_config, write_jpeg_set


def test_records_read_back_what_was_written(folders):
  x, y, xt, yt = folders["arrays"]
  ds = sources.load_dataset(small_config(**{"data.record_dir": folders["records"]}).data)
  assert isinstance(ds.train_images, LazyImages) and ds.source.startswith("arrayrecord:")
  chex.assert_shape(ds.train_images, (TRAIN, 28, 28, 1))
  np.testing.assert_array_equal(ds.train_labels, y)
  np.testing.assert_array_equal(ds.test_labels, yt)
  rows = np.array([2999, 0, 1500, 0])
  np.testing.assert_array_equal(ds.train_images[rows], x[rows])
  np.testing.assert_array_equal(ds.test_images[10:20], xt[10:20])
  assert sources.dataset_fingerprint(ds) == sources.dataset_fingerprint(ds)


def test_bad_record_folders_give_one_plain_error(folders, tmp_path):
  with pytest.raises(DataError, match="does not exist; fix --config.data.record_dir"):
    sources.load_dataset(data_config(record_dir=str(tmp_path / "nowhere")))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(DataError, match="features.json is missing"):
    sources.load_dataset(data_config(record_dir=str(empty)))
  with pytest.raises(DataError, match="needs a record folder; set --config.data.record_dir"):
    sources.load_dataset(data_config(source="arrayrecord"))
  x, y = folders["arrays"][0][:40], folders["arrays"][1][:40]
  for name, spec, match in (
      ("flat", {"image": {"shape": [28, 28]}, "label": {"num_classes": 10}}, r"image.shape \[28, 28\] is not"),
      ("nolabel", {"image": {"shape": [28, 28, 1]}}, "lacks or mistypes 'label'"),
      ("wrongsize", {"image": {"shape": [32, 32, 1]}, "label": {"num_classes": 10}}, "has 784 image bytes"),
      ("fewclasses", {"image": {"shape": [28, 28, 1]}, "label": {"num_classes": 2}}, "outside the feature spec"),
      ("keys", {"image": {"shape": [28, 28, 1]}, "label": {"num_classes": 10}, "image_key": "img"},
       "not 'img' and 'label'")):
    d = str(tmp_path / name)
    records.write_split(d, "train", [(x, y)], records.FeatureSpec((28, 28, 1), "raw", 10))
    records.write_split(d, "test", [(x, y)], records.FeatureSpec((28, 28, 1), "raw", 10))
    with open(os.path.join(d, records.FEATURES_FILE), "w") as f:
      json.dump(spec, f)
    with pytest.raises(DataError, match=match) as e:
      sources.load_dataset(data_config(record_dir=d))
    assert "\n" not in str(e.value)
  os.remove(os.path.join(d, "test.array_record-00000-of-00001"))
  with pytest.raises(DataError, match="no ArrayRecord files for split 'test'"):
    sources.load_dataset(data_config(record_dir=d))
  with pytest.raises(ConfigError, match="needs train.steps_per_dispatch=1"):
    driver.run(small_config(**{"data.record_dir": folders["records"], "train.steps_per_dispatch": 4}),
               str(tmp_path / "k4"))
  with pytest.raises(DataError, match="cannot be loaded whole"):
    np.asarray(sources.load_dataset(data_config(record_dir=folders["records"])).train_images)


def test_training_views_are_cropped_per_epoch_and_evaluation_views_fixed(tmp_path):
  d = write_jpeg_set(str(tmp_path / "jpegs"), train=8, test=4)
  reader = records.RecordReader(d, "train", image_size=24)
  rows = np.arange(4)
  chex.assert_shape(reader.read_images(rows), (4, 24, 24, 3))
  np.testing.assert_array_equal(reader.read_images(rows), reader.read_images(rows))
  a, b = reader.read_images(rows, (0, 0, 0)), reader.read_images(rows, (0, 0, 1))
  np.testing.assert_array_equal(a, reader.read_images(rows, (0, 0, 0)))
  assert not np.array_equal(a, b)
  with pytest.raises(DataError, match="vary in size; set --config.data.image_size"):
    records.RecordReader(d, "train")
