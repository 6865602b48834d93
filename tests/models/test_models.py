"""lwcl.models.build_model: output shapes (chex), explicit strides and architecture errors."""


import chex
import pytest

from lwcl.errors import ConfigError
from lwcl.models import build_model

from helpers import init_and_apply, init_and_apply_shapes, scenario, small_config


@pytest.mark.parametrize("name,shape", [("mlp", (28, 28, 1)), ("convnet", (28, 28, 1)),
                                        ("resnet", (32, 32, 3)), ("reduced_resnet18", (32, 32, 3))])
def test_output_shapes(name, shape):
  cfg = small_config(**{"model.name": name})
  variables, out = init_and_apply(build_model(cfg.model, scenario()), shape)
  chex.assert_shape(out, (4, 2))
  chex.assert_tree_all_finite(out)
  chex.assert_shape(variables["params"]["head"]["kernel"], (3, None, 2))


def test_explicit_strides_and_errors():
  cfg = small_config(**{"model.name": "resnet", "model.depth": 8, "model.strides": "2,2,2"})
  _, out = init_and_apply_shapes(build_model(cfg.model, scenario()), (32, 32, 3))  # a shape: traced, not compiled
  chex.assert_shape(out, (4, 2))
  with pytest.raises(ConfigError, match="one stride"):
    build_model(small_config(**{"model.name": "resnet", "model.depth": 8,
                                "model.strides": "2,2"}).model, scenario())
  with pytest.raises(ConfigError, match="6n\\+2"):
    build_model(small_config(**{"model.name": "resnet", "model.depth": 21}).model, scenario())
  with pytest.raises(ConfigError, match="unknown model.name"):
    build_model(small_config(**{"model.name": "vgg"}).model, scenario())
