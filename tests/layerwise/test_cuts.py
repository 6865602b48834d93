"""lwcl.layerwise.cuts: cut presets, strides and config errors."""

import types

import chex
import jax
import jax.numpy as jnp
import pytest

from lwcl import layerwise
from lwcl.config import values as config_values
from lwcl.errors import ConfigError
from lwcl.models import build_model
from lwcl.models.aux_heads import adaptive_avg_pool

from helpers import small_config
from layerwise_cases import lw_config


def test_cuts_presets_and_config_errors():
  cfg = lw_config(**{"model.name": "resnet", "model.depth": 20})
  model = build_model(cfg.model, types.SimpleNamespace(num_heads=1, output_dim=10))
  shape = (32, 32, 3)
  assert layerwise.parse_cuts("block", model, shape) == (0,) + tuple(range(2, 10))
  assert layerwise.parse_cuts("stage", model, shape) == (0, 4, 7)
  assert layerwise.parse_cuts("even:3", model, shape) == (0, 4, 7)
  assert layerwise.parse_cuts("3,6", model, shape) == (0, 3, 6)
  for bad, match in [("even:10", "even:10"), ("5,3", "increase"), ("0,3", "increase"), ("x", "cuts")]:
    with pytest.raises(ConfigError, match=match):
      layerwise.parse_cuts(bad, model, shape)
  for key, value in [("mode", "sideways"), ("aux_head", "rnn"), ("local_step", "x"), ("aux_pool", -1)]:
    with pytest.raises(ConfigError, match=f"layerwise.{key}"):  # the config validator's (lwcl/config/)
      config_values.check_values(lw_config(**{key: value}))


def test_stride_presets_and_intensity_give_expected_feature_maps():
  def shapes(**model):
    cfg = small_config(**{"model.name": "resnet", "model.depth": 20, **{f"model.{k}": v for k, v in model.items()}})
    m = build_model(cfg.model, types.SimpleNamespace(num_heads=1, output_dim=10))
    return m, layerwise.block_output_shapes(m, (32, 32, 3), batch=2)

  _, std = shapes(strides="standard")  # stem, then residual blocks 0..8
  chex.assert_equal(std, [(2, 32, 32, 16)] * 4 + [(2, 16, 16, 32)] * 3 + [(2, 8, 8, 64)] * 3)
  # Accelerated: strides (1, 2, 2, 1, ...): stem and block 0 at 32x32, block 1 at 16x16, the rest at 8x8;
  # widths still change at the stage boundaries (blocks 3 and 6).
  _, acc = shapes(strides="accelerated")
  chex.assert_equal(acc, [(2, 32, 32, 16)] * 2 + [(2, 16, 16, 16), (2, 8, 8, 16)]
                    + [(2, 8, 8, 32)] * 3 + [(2, 8, 8, 64)] * 3)
  _, stem2 = shapes(strides="accelerated", stem_stride=2)
  chex.assert_equal(stem2[0], (2, 16, 16, 16))
  chex.assert_equal(stem2[-1], (2, 4, 4, 64))
  # Convolution intensity: 3 convs of 24 channels in the first 2 residual blocks.
  m, inten = shapes(shallow_blocks=2, shallow_convs=3, shallow_width=24)
  chex.assert_equal(inten[:4], [(2, 32, 32, 16), (2, 32, 32, 24), (2, 32, 32, 24), (2, 32, 32, 16)])
  params = jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,), jnp.int32))
  assert "Conv_2" in params["params"]["blocks_1"] and "Conv_2" not in params["params"]["blocks_3"]
  with pytest.raises(ConfigError, match="shallow_blocks"):
    shapes(shallow_blocks=10)
  chex.assert_shape(adaptive_avg_pool(jnp.ones((2, 7, 7, 3)), 2), (2, 2, 2, 3))
