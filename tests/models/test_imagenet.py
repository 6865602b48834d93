"""lwcl.models.imagenet: the ImageNet configs build on small JPEG record sets."""

import os

import jax
import numpy as np
import pytest

from lwcl.data import records

from helpers import ROOT


def _write_jpeg_set(directory, train=48, test=16, classes=4):
  """A tiny ImageNet-like record folder: JPEGs of varying sizes (36-52 pixels), ``classes`` colours; splits
  ``train`` and ``validation`` (ImageNet's names)."""
  rng = np.random.default_rng(0)
  spec = records.FeatureSpec((0, 0, 3), "jpeg", classes)
  colours = rng.integers(0, 256, (classes, 3))
  for split, n in (("train", train), ("validation", test)):
    labels = np.arange(n) % classes
    images = [np.clip(colours[y] + rng.normal(0, 30, (int(rng.integers(36, 53)), int(rng.integers(36, 53)), 3)),
                      0, 255).astype(np.uint8) for y in labels]
    records.write_split(directory, split, [([x], [y]) for x, y in zip(images, labels)], spec, num_shards=2)
  records.write_features(directory, spec)
  return directory


def _imagenet_config(base, arg):
  """``configs/layerwise_imagenet.py:arg`` shrunk to the tiny JPEG records: 32 x 32, width 8, batch 16."""
  from lwcl.config import files as config_files
  c = config_files.load(os.path.join(ROOT, "configs", "layerwise_imagenet.py")).get_config(arg)
  greedy = arg.endswith("greedy")
  overrides = {"data.source": "arrayrecord", "data.record_dir": str(base), "data.name": "tiny_jpegs",
               "data.image_size": 32, "data.stream.threads": 2, "model.width": 8,
               "model.conv_stages": ((8,), (16, 16)), "train.batch_size": 16, "train.eval_batch_size": 16,
               "train.epochs_per_task": 1, "train.progress": False, "checkpoint.every_steps": 0,
               "layerwise.greedy_epochs_per_block": 1 if greedy else 0}
  for key, value in overrides.items():
    config_files.set_key(c, key, value)
  if greedy:  # one epoch per local block: ResNet-18 4 stages, the shrunk VGG 2
    config_files.set_key(c, "train.epochs_per_task", 4 if c.model.name == "imagenet_resnet18" else 2)
  c.lock()
  return c


@pytest.fixture(scope="module")
def jpeg_records(tmp_path_factory):
  return _write_jpeg_set(str(tmp_path_factory.mktemp("jpeg_records")))


@pytest.mark.parametrize("arg", ["resnet18,backprop", "resnet18,local", "resnet18,local+accelerated",
                                 "resnet18,greedy", "vgg,backprop", "vgg,local", "vgg,greedy"])
def test_imagenet_configs_build(jpeg_records, arg):
  from lwcl.engine import experiment
  exp = experiment.Experiment(_imagenet_config(jpeg_records, arg))
  state = jax.eval_shape(exp.initial_state)  # the state's structure, not compiled (training tests run it)
  assert exp.scenario.image_shape == (32, 32, 3) and exp.scenario.output_dim == 4
  assert len(exp.fns.model.blocks) == (9 if "resnet18" in arg else 3)
  assert (exp.config.layerwise.mode, exp.config.model.strides) == (
      arg.split(",")[1].split("+")[0], "accelerated" if "accelerated" in arg else "standard")
  assert state.params
