"""lwcl.models.resnet: the ResNet-20 layout and parameter count."""


import jax
import jax.numpy as jnp
import numpy as np

from lwcl.models import build_model

from helpers import init_and_apply_shapes, scenario, small_config


def test_resnet20_layout_and_parameter_count():
  cfg = small_config(**{"model.name": "resnet", "model.depth": 20})
  model = build_model(cfg.model, scenario(num_heads=1, output_dim=10))
  # Shapes only, so traced, not compiled (ResNet-20's outputs on this input: test_models.test_output_shapes).
  variables, _ = init_and_apply_shapes(model, (32, 32, 3))
  params = variables["params"]
  assert sorted(params) == sorted(["head"] + [f"blocks_{i}" for i in range(10)])  # stem + 9 blocks
  # Feature map sizes: 32x32 in stage 1, 16x16 in stage 2, 8x8 in stage 3 (standard strides).
  x = jnp.zeros((2, 32, 32, 3))
  _, inter = jax.eval_shape(lambda v, x: model.apply(v, x, jnp.zeros(2, jnp.int32), capture_intermediates=True),
                            variables, x)
  sizes = [inter["intermediates"][f"blocks_{i}"]["__call__"][0].shape for i in (1, 3, 4, 6, 7, 9)]
  assert sizes == [(2, 32, 32, 16)] * 2 + [(2, 16, 16, 32)] * 2 + [(2, 8, 8, 64)] * 2
  n = sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params))
  assert 0.26e6 < n < 0.28e6  # ResNet-20 has ~0.27M parameters
