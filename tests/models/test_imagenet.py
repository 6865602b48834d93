"""lwcl.models.imagenet: the ImageNet configs build on small JPEG record sets."""


import jax
import pytest

from streaming_cases import imagenet_config


@pytest.mark.parametrize("arg", ["resnet18,backprop", "resnet18,local", "resnet18,local+accelerated",
                                 "resnet18,greedy", "vgg,backprop", "vgg,local", "vgg,greedy"])
def test_imagenet_configs_build(jpeg_records, arg):
  from lwcl.engine import experiment
  exp = experiment.Experiment(imagenet_config(jpeg_records, arg))
  state = jax.eval_shape(exp.initial_state)  # the state's structure, not compiled (training tests run it)
  assert exp.scenario.image_shape == (32, 32, 3) and exp.scenario.output_dim == 4
  assert len(exp.fns.model.blocks) == (9 if "resnet18" in arg else 3)
  assert (exp.config.layerwise.mode, exp.config.model.strides) == (
      arg.split(",")[1].split("+")[0], "accelerated" if "accelerated" in arg else "standard")
  assert state.params
