"""Patch-matmul convolutions (lwcl/models/conv.py) against XLA's convolution: values and gradients for
every kernel, stride and padding lwcl's models use, in float64 (exact up to summation order) and float32;
the same parameters and outputs for whole networks under either lowering; and how ``auto`` resolves."""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from conftest import small_config
from lwcl.errors import ConfigError
from lwcl.models import build_model
from lwcl.models.conv import patch_conv, resolve_conv_impl

DN = ("NHWC", "HWIO", "NHWC")
# (input side, in channels, out channels, kernel, stride, padding): the models' convolutions (3x3 SAME at
# stride 1 and 2, 1x1 projection shortcuts at stride 2, odd feature maps: 7x7 after two pools of 28x28,
# ResNets on 28x28 at 7x7 after two stride-2 blocks) and the other paddings lax accepts.
CASES = [(28, 1, 8, 3, 1, "SAME"), (32, 16, 32, 3, 2, "SAME"), (16, 16, 32, 1, 2, "SAME"), (7, 8, 8, 3, 2, "SAME"),
         (7, 8, 8, 1, 2, "SAME"), (9, 4, 6, 3, 1, "VALID"), (9, 4, 6, 3, 2, ((1, 2), (0, 1)))]


def _pair(h, c, o, k, s, p, dtype, seed=0):
  kx, kw = jax.random.split(jax.random.PRNGKey(seed))
  x = jax.random.normal(kx, (3, h, h, c), dtype)
  w = jax.random.normal(kw, (k, k, c, o), dtype) / np.sqrt(k * k * c)
  native = lambda x, w: lax.conv_general_dilated(x, w, (s, s), p, dimension_numbers=DN)  # noqa: E731
  patches = lambda x, w: patch_conv(x, w, (s, s), p, dimension_numbers=DN)  # noqa: E731
  return x, w, native, patches


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}x{c[0]}x{c[1]}-k{c[3]}s{c[4]}-{c[5]}" for c in CASES])
def test_patch_conv_matches_native_values_and_gradients(case):
  with jax.enable_x64(True):
    x, w, native, patches = _pair(*case, jnp.float64)
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731  (a non-linear cotangent)
    both = jax.jit(lambda x, w: [(f(x, w), jax.grad(loss(f), (0, 1))(x, w)) for f in (patches, native)])
    (out_p, grads_p), (out_n, grads_n) = both(x, w)
    chex.assert_trees_all_close(out_p, out_n, rtol=1e-12, atol=1e-12)
    chex.assert_trees_all_close(grads_p, grads_n, rtol=1e-11, atol=1e-11)
  x, w, native, patches = _pair(*case, jnp.float32)  # float32: summation order only
  chex.assert_trees_all_close(patches(x, w), native(x, w), rtol=1e-4, atol=1e-4)


def test_patch_conv_refuses_what_it_does_not_compute():
  x, w = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
  with pytest.raises(ValueError, match="conv_impl=native"):
    patch_conv(x, w, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=DN)
  with pytest.raises(ValueError, match="conv_impl=native"):
    patch_conv(x, jnp.ones((3, 3, 2, 4)), (1, 1), "SAME", dimension_numbers=DN, feature_group_count=2)
  with pytest.raises(ValueError, match="conv_impl=native"):
    patch_conv(jnp.ones((1, 4, 8, 8)), w, (1, 1), "SAME", dimension_numbers=("NCHW", "HWIO", "NCHW"))


def test_resolve_conv_impl():
  assert resolve_conv_impl("auto", 1, "cpu") == "native"
  assert resolve_conv_impl("auto", 8, "cpu") == "patches"
  assert resolve_conv_impl("auto", 8, "gpu") == resolve_conv_impl("auto", 8, "tpu") == "native"
  assert resolve_conv_impl("patches", 1, "gpu") == "patches"
  assert resolve_conv_impl("native", 8, "cpu") == "native"
  with pytest.raises(ConfigError, match="model.conv_impl 'im2col' is unknown"):
    resolve_conv_impl("im2col")


@pytest.mark.parametrize("overrides,shape", [
    ({"model.name": "convnet"}, (28, 28, 1)),
    ({"model.name": "resnet", "model.depth": 8, "model.strides": "accelerated"}, (28, 28, 1)),
    ({"model.name": "resnet", "model.depth": 8, "model.shallow_blocks": 1, "model.shallow_convs": 3},
     (32, 32, 3))], ids=["convnet", "resnet8-accelerated-28x28", "resnet8-convs3"])
def test_networks_agree_under_both_lowerings(overrides, shape):
  scenario = types.SimpleNamespace(num_heads=2, output_dim=3)
  nets = {impl: build_model(small_config(**overrides, **{"model.conv_impl": impl}).model, scenario)
          for impl in ("native", "patches")}
  assert {impl: net.conv_impl for impl, net in nets.items()} == {"native": "native", "patches": "patches"}
  x = jax.random.normal(jax.random.PRNGKey(1), (4,) + shape)
  task = jnp.array([0, 1, 0, 1], jnp.int32)
  init = {impl: jax.jit(lambda rng, net=net: net.init(rng, x, task)) for impl, net in nets.items()}
  variables = init["native"](jax.random.PRNGKey(0))
  chex.assert_trees_all_equal(variables, init["patches"](jax.random.PRNGKey(0)))

  def loss(net):
    def f(params):
      out, _ = net.apply({**variables, "params": params}, x, task, train=True, mutable=["batch_stats"])
      return jnp.sum(out ** 2)
    return f

  values = {impl: jax.jit(jax.value_and_grad(loss(net)))(variables["params"]) for impl, net in nets.items()}
  chex.assert_trees_all_close(values["patches"], values["native"], rtol=2e-4, atol=2e-4)


def test_steps_per_dispatch_selects_patches_on_cpu():
  scenario = types.SimpleNamespace(num_heads=1, output_dim=2)
  cfg = small_config(**{"model.name": "convnet"})
  assert build_model(cfg.model, scenario, steps_per_dispatch=1).conv_impl == "native"
  assert build_model(cfg.model, scenario, steps_per_dispatch=8).conv_impl == "patches"
