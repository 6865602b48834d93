"""Model shapes (chex), task-head selection, and architecture errors."""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import small_config
from lwcl.errors import ConfigError
from lwcl.models import build_model
from lwcl.models.heads import TaskHeads


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


def test_task_heads_select_each_examples_head():
  heads = TaskHeads(num_heads=3, output_dim=4)
  x = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
  task = jnp.array([0, 1, 2, 2, 1, 0])
  params = heads.init(jax.random.PRNGKey(0), x, task)
  out = heads.apply(params, x, task)
  k, b = params["params"]["kernel"], params["params"]["bias"]
  want = np.stack([np.asarray(x[i] @ k[t] + b[t]) for i, t in enumerate(task)])
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_max_pool_2x2_matches_flax_max_pool_values_and_gradients():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from lwcl.models.convnet import max_pool_2x2  # pylint: disable=g-import-not-at-top
  ref = lambda v: nn.max_pool(v, (2, 2), strides=(2, 2))  # noqa: E731
  continuous = [jax.random.normal(jax.random.PRNGKey(0), shape) for shape in ((3, 28, 28, 4), (2, 7, 9, 3))]
  # integers in -2..2 and a ReLU'd map: most windows hold tied maxima (the first one in row-major order
  # takes the gradient, as in XLA's select_and_scatter); odd sizes: VALID drops the last row / column
  tied = [jax.random.randint(jax.random.PRNGKey(2), (3, 7, 9, 4), -2, 3).astype(jnp.float32),
          jax.nn.relu(continuous[0])]
  for x in continuous + tied:
    np.testing.assert_array_equal(max_pool_2x2(x), ref(x))
    w = jax.random.normal(jax.random.PRNGKey(1), ref(x).shape)
    grads = [jax.jit(jax.grad(lambda v, f=f: jnp.sum(f(v) * w)))(x) for f in (max_pool_2x2, ref)]
    np.testing.assert_array_equal(grads[0], grads[1])
    chex.assert_trees_all_close(jnp.sum(grads[0]), jnp.sum(w), rtol=1e-5)  # each window passes g on once


def test_max_pool_2x2_keeps_the_native_pool_off_the_cpu(monkeypatch):
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from lwcl.models import convnet  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(convnet.jax, "default_backend", lambda: "gpu")
  monkeypatch.setattr(convnet.nn, "max_pool", lambda *a, **k: calls.append(k) or nn.pooling.max_pool(*a, **k))
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 4, 4, 2))
  np.testing.assert_array_equal(convnet.max_pool_2x2(x), nn.pooling.max_pool(x, (2, 2), strides=(2, 2)))
  assert calls == [{"strides": (2, 2)}]
