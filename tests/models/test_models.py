"""lwcl.models.build_model: output shapes (chex), explicit strides and architecture errors."""

import types

import chex
import jax
import jax.numpy as jnp
import pytest

from lwcl.errors import ConfigError
from lwcl.models import build_model

from helpers import small_config


def scenario(num_heads=3, output_dim=2):
  return types.SimpleNamespace(num_heads=num_heads, output_dim=output_dim)


def init_and_apply(model, shape, batch=4):
  """The model's variables and its output on zeros, each one compiled program (eager flax runs every
  layer's ops one by one, several times slower for the ResNets)."""
  x = jnp.zeros((batch,) + shape)
  task = jnp.arange(batch, dtype=jnp.int32) % 3
  variables = jax.jit(lambda k, x, t: model.init(k, x, t, train=False))(jax.random.PRNGKey(0), x, task)
  out = jax.jit(lambda v, x, t: model.apply(v, x, t, train=False))(variables, x, task)
  return variables, out


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
  _, out = init_and_apply(build_model(cfg.model, scenario()), (32, 32, 3))
  chex.assert_shape(out, (4, 2))
  with pytest.raises(ConfigError, match="one stride"):
    build_model(small_config(**{"model.name": "resnet", "model.depth": 8,
                                "model.strides": "2,2"}).model, scenario())
  with pytest.raises(ConfigError, match="6n\\+2"):
    build_model(small_config(**{"model.name": "resnet", "model.depth": 21}).model, scenario())
  with pytest.raises(ConfigError, match="unknown model.name"):
    build_model(small_config(**{"model.name": "vgg"}).model, scenario())
