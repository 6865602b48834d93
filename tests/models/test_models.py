"""lwcl.models.build_model: output shapes (chex), explicit strides and architecture errors; mixed precision
(``model.dtype=bfloat16``) for every model family."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl.errors import ConfigError
from lwcl.models import build_model

from helpers import init_and_apply, init_and_apply_shapes, normal, scenario, small_config


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



# bfloat16 keeps 8 significant bits (a rounding of at most 2^-9 relative); through these few layers the
# logits of a bfloat16 pass stay within 3% of the float32 logits' largest magnitude (measured: 0.25% for
# the MLP, 0.54% for the ConvNet), and the parameters' gradients point the same way (cosine >= 0.99;
# measured: 0.99999 and 0.9993).
BF16_LOGITS_TOL = 0.03
BF16_GRAD_COSINE = 0.99

FAMILIES = {
    "mlp": ({"model.name": "mlp"}, (28, 28, 1)),
    "convnet-bn": ({"model.name": "convnet", "model.conv_stages": ((8,), (8,)), "model.batch_norm": True},
                   (16, 16, 1)),
    "resnet8": ({"model.name": "resnet", "model.depth": 8, "model.width": 8}, (32, 32, 3)),
    "reduced_resnet18": ({"model.name": "reduced_resnet18", "model.width": 4}, (32, 32, 3)),
    "imagenet_resnet18": ({"model.name": "imagenet_resnet18", "model.width": 4}, (32, 32, 3)),
    "greedy_vgg": ({"model.name": "greedy_vgg", "model.conv_stages": ((8,), (8,))}, (32, 32, 3)),
}


def _nets(family):
  overrides, _ = FAMILIES[family]
  return {d: build_model(small_config(**overrides, **{"model.dtype": d}).model, scenario())
          for d in ("float32", "bfloat16")}


def _inputs(family):
  x = normal(1, (4,) + FAMILIES[family][1])
  return x, jnp.arange(4, dtype=jnp.int32) % 3


def _train_pass(net, variables, x, task):
  """Loss (sum of squared logits), logits, new state (BatchNorm statistics, sown activations), parameter
  gradients and the inference-mode features."""
  def loss(params):
    out, state = net.apply({**variables, "params": params}, x, task, train=True,
                           mutable=["batch_stats", "intermediates"])
    return jnp.sum(out ** 2), (out, state)
  (value, (out, state)), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
  return value, out, state, grads, net.apply(variables, x, train=False, method="features")


@pytest.mark.parametrize("family", FAMILIES)
def test_bfloat16_computes_in_bfloat16_with_float32_parameters(family):
  # traced, not compiled (dtypes only): every family, every layer
  nets, (x, task) = _nets(family), _inputs(family)
  assert nets["bfloat16"].dtype == jnp.bfloat16 and "onednn" not in nets["bfloat16"].conv_impl
  init = {d: jax.eval_shape(net.init, jax.random.PRNGKey(0), x, task) for d, net in nets.items()}
  chex.assert_trees_all_equal_shapes_and_dtypes(init["bfloat16"], init["float32"])
  assert {leaf.dtype for leaf in jax.tree.leaves(init["bfloat16"])} == {jnp.dtype(jnp.float32)}
  value, out, state, grads, features = jax.eval_shape(
      functools.partial(_train_pass, nets["bfloat16"]), init["bfloat16"], x, task)
  chex.assert_type([value, out, features], jnp.float32)  # logits (hence losses) and features: float32
  chex.assert_trees_all_equal_shapes_and_dtypes(grads, init["float32"]["params"])  # float32 gradients
  if "batch_stats" in init["float32"]:
    chex.assert_trees_all_equal_shapes_and_dtypes(state["batch_stats"], init["float32"]["batch_stats"])
  activations = jax.tree.leaves(state["intermediates"])
  assert activations and {a.dtype for a in activations} == {jnp.dtype(jnp.bfloat16)}  # every layer's output


@pytest.mark.parametrize("family", ["mlp", "convnet-bn"])
def test_a_bfloat16_pass_is_close_to_the_float32_pass(family):
  nets, (x, task) = _nets(family), _inputs(family)
  variables = jax.jit(nets["float32"].init)(jax.random.PRNGKey(0), x, task)
  # the same float32 parameters from the same key, whatever the computation dtype
  chex.assert_trees_all_equal(variables, jax.jit(nets["bfloat16"].init)(jax.random.PRNGKey(0), x, task))
  _, out32, _, grads32, _ = jax.jit(functools.partial(_train_pass, nets["float32"]))(variables, x, task)
  _, out, _, grads, _ = jax.jit(functools.partial(_train_pass, nets["bfloat16"]))(variables, x, task)
  chex.assert_trees_all_close(out, out32, atol=BF16_LOGITS_TOL * float(jnp.max(jnp.abs(out32))), rtol=0)
  assert not np.array_equal(out, out32)  # it did compute in bfloat16
  flat = lambda g: jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(g)])  # noqa: E731
  cosine = jnp.dot(flat(grads), flat(grads32)) / (jnp.linalg.norm(flat(grads)) * jnp.linalg.norm(flat(grads32)))
  assert cosine >= BF16_GRAD_COSINE, cosine
