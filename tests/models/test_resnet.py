"""lwcl.models.resnet: the ResNet-20 layout and parameter count."""

import types

import jax
import jax.numpy as jnp
import numpy as np

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


def test_resnet20_layout_and_parameter_count():
  cfg = small_config(**{"model.name": "resnet", "model.depth": 20})
  model = build_model(cfg.model, scenario(num_heads=1, output_dim=10))
  variables, _ = init_and_apply(model, (32, 32, 3))
  params = variables["params"]
  assert sorted(params) == sorted(["head"] + [f"blocks_{i}" for i in range(10)])  # stem + 9 blocks
  # Feature map sizes: 32x32 in stage 1, 16x16 in stage 2, 8x8 in stage 3 (standard strides).
  x = jnp.zeros((2, 32, 32, 3))
  _, inter = jax.jit(lambda v, x: model.apply(v, x, jnp.zeros(2, jnp.int32), capture_intermediates=True))(
      variables, x)
  sizes = [inter["intermediates"][f"blocks_{i}"]["__call__"][0].shape for i in (1, 3, 4, 6, 7, 9)]
  assert sizes == [(2, 32, 32, 16)] * 2 + [(2, 16, 16, 32)] * 2 + [(2, 8, 8, 64)] * 2
  n = sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params))
  assert 0.26e6 < n < 0.28e6  # ResNet-20 has ~0.27M parameters
