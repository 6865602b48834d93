"""Patch-matmul, multiply-add (direct) and oneDNN convolutions (lwcl/models/conv.py) against XLA's convolution:
values and gradients for every kernel, stride and padding lwcl's models use, in float64 (exact up to
summation order) and float32; the same parameters and outputs for whole networks under every lowering;
which convolutions ``+direct`` takes; and how ``auto`` resolves."""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lwcl.errors import ConfigError
from lwcl.models import build_model
from lwcl.models.conv import (
  DIRECT_MAX_CONTRACTION,
  LOWERINGS,
  conv,
  direct_conv,
  onednn_conv,
  patch_conv,
  resolve_conv_impl,
)
from lwcl.platform.native import build

from helpers import CASES, DN, normal, small_config

LOWERED = {"patches": patch_conv, "direct (native gradients)": direct_conv,
           "direct (patch gradients)": lambda *a, **k: direct_conv(*a, backward="patches", **k)}


def _pair(lowered, h, c, o, k, s, p, dtype, seed=0):
  x, w = normal(seed, (3, h, h, c), (k, k, c, o), dtype=dtype)
  w = w / np.sqrt(k * k * c)
  native = lambda x, w: lax.conv_general_dilated(x, w, (s, s), p, dimension_numbers=DN)  # noqa: E731
  other = lambda x, w: LOWERED[lowered](x, w, (s, s), p, dimension_numbers=DN)  # noqa: E731
  return x, w, native, other


@pytest.mark.parametrize("lowered", LOWERED)
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}x{c[0]}x{c[1]}-k{c[3]}s{c[4]}-{c[5]}" for c in CASES])
def test_lowerings_match_native_values_and_gradients(case, lowered):
  with jax.enable_x64(True):
    x, w, native, other = _pair(lowered, *case, jnp.float64)
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731  (a non-linear cotangent)
    both = jax.jit(lambda x, w: [(f(x, w), jax.grad(loss(f), (0, 1))(x, w)) for f in (other, native)])
    (out_o, grads_o), (out_n, grads_n) = both(x, w)
    chex.assert_trees_all_close(out_o, out_n, rtol=1e-12, atol=1e-12)
    chex.assert_trees_all_close(grads_o, grads_n, rtol=1e-11, atol=1e-11)
  x, w, native, other = _pair(lowered, *case, jnp.float32)  # float32: summation order only
  chex.assert_trees_all_close(other(x, w), native(x, w), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fn", (patch_conv, direct_conv))
def test_lowerings_refuse_what_they_do_not_compute(fn):
  x, w = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
  with pytest.raises(ValueError, match="conv_impl=native"):
    fn(x, w, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=DN)
  with pytest.raises(ValueError, match="conv_impl=native"):
    fn(x, jnp.ones((3, 3, 2, 4)), (1, 1), "SAME", dimension_numbers=DN, feature_group_count=2)
  with pytest.raises(ValueError, match="conv_impl=native"):
    fn(jnp.ones((1, 4, 8, 8)), w, (1, 1), "SAME", dimension_numbers=("NCHW", "HWIO", "NCHW"))
  with pytest.raises(ValueError, match="backward 'eigen' is not"):
    direct_conv(x, w, (1, 1), "SAME", backward="eigen")
  with pytest.raises(ValueError, match="resolve model.conv_impl"):
    conv("auto", 4, (3, 3))


def _without_onednn(monkeypatch):
  monkeypatch.setitem(build._state, "reason", "not built (test)")  # pylint: disable=protected-access


def test_resolve_conv_impl(monkeypatch):
  _without_onednn(monkeypatch)  # with the library: tests/test_onednn.py
  assert resolve_conv_impl("auto", 1, "cpu") == "native+direct"
  assert resolve_conv_impl("auto", 8, "cpu") == "patches+direct"
  assert resolve_conv_impl("auto", 8, "gpu") == resolve_conv_impl("auto", 8, "tpu") == "native"
  assert resolve_conv_impl("patches", 1, "gpu") == "patches"
  assert resolve_conv_impl("native", 8, "cpu") == "native"
  assert resolve_conv_impl("direct", 1, "cpu") == "direct"
  # the platforms a program is built for (lwcl.platform.targets): CPU lowerings only for the CPU alone
  assert resolve_conv_impl("auto", 1, ("cpu",)) == "native+direct"
  assert resolve_conv_impl("auto", 1, ("cuda",)) == resolve_conv_impl("auto", 8, ("cuda", "tpu")) == "native"
  assert resolve_conv_impl("auto", 8, ("cpu", "cuda")) == "native"
  reached = {resolve_conv_impl(i, k, b) for i in ("auto", "native", "patches", "direct") for k in (1, 8)
             for b in ("cpu", "gpu")}
  monkeypatch.setitem(build._state, "reason", None)  # pylint: disable=protected-access
  reached |= {resolve_conv_impl(i, 1, "cpu") for i in ("auto", "onednn")}
  assert reached == set(LOWERINGS)
  with pytest.raises(ConfigError, match="model.conv_impl 'im2col' is unknown"):
    resolve_conv_impl("im2col")


@pytest.mark.parametrize("kernel,channels", [(3, 1), (3, 3), (5, 1), (3, 4), (3, 5), (3, 8), (7, 3)])
def test_direct_takes_only_the_narrow_convolutions(kernel, channels):
  # under +direct, a convolution contracting kh * kw * C <= DIRECT_MAX_CONTRACTION values per output is
  # multiply-adds (no XLA convolution left in its program), the others stay XLA's (the 7x7 ImageNet stem)
  x, w = jnp.zeros((2, 16, 16, channels)), jnp.zeros((kernel, kernel, channels, 4))
  layer = conv("native+direct", 4, (kernel, kernel))
  variables = {"params": {"kernel": w, "bias": jnp.zeros((4,))}}
  xla_convs = str(jax.make_jaxpr(layer.apply)(variables, x)).count("conv_general_dilated")
  assert xla_convs == (0 if kernel * kernel * channels <= DIRECT_MAX_CONTRACTION else 1)


def test_auto_on_cpu_makes_the_first_convnet_convolution_direct(monkeypatch):
  _without_onednn(monkeypatch)
  scenario = types.SimpleNamespace(num_heads=1, output_dim=2)
  counts = {}
  for impl in ("native", "auto", "direct"):  # auto: native+direct on CPU
    net = build_model(small_config(**{"model.name": "convnet", "model.conv_stages": ((8,), (8,)),
                                      "model.conv_impl": impl}).model, scenario)
    x, task = jnp.zeros((2, 28, 28, 1)), jnp.zeros((2,), jnp.int32)
    variables = jax.eval_shape(net.init, jax.random.PRNGKey(0), x, task)
    counts[impl] = str(jax.make_jaxpr(net.apply)(variables, x, task)).count("conv_general_dilated")
  assert counts == {"native": 2, "auto": 1, "direct": 0}


@pytest.mark.parametrize("overrides,shape", [
    ({"model.name": "convnet"}, (28, 28, 1)),
    ({"model.name": "resnet", "model.depth": 8, "model.strides": "accelerated"}, (28, 28, 1)),
    ({"model.name": "resnet", "model.depth": 8, "model.shallow_blocks": 1, "model.shallow_convs": 3},
     (32, 32, 3))], ids=["convnet", "resnet8-accelerated-28x28", "resnet8-convs3"])
def test_networks_agree_under_every_lowering(overrides, shape, monkeypatch, onednn_available):
  scenario = types.SimpleNamespace(num_heads=2, output_dim=3)
  make = lambda impl, k=1: build_model(small_config(**overrides, **{"model.conv_impl": impl}).model,  # noqa: E731
                                      scenario, steps_per_dispatch=k)
  nets = {impl: make(impl) for impl in ("native", "patches", "direct", "onednn")}
  nets["onednn+direct"] = make("auto")  # auto on CPU with the oneDNN library
  with monkeypatch.context() as m:
    _without_onednn(m)
    nets.update({"native+direct": make("auto"), "patches+direct": make("auto", 8)})  # auto on CPU without it
  assert {impl: net.conv_impl for impl, net in nets.items()} == {impl: impl for impl in nets}
  x = normal(1, (4,) + shape)
  task = jnp.array([0, 1, 0, 1], jnp.int32)
  # Every lowering's initialization, traced on its own, in one compiled program (XLA merges their identical
  # random streams: a third of the compile time of one program each).
  inits = jax.jit(lambda rng: {impl: net.init(rng, x, task) for impl, net in nets.items()})(jax.random.PRNGKey(0))
  variables = inits["native"]
  for impl in nets:
    chex.assert_trees_all_equal(variables, inits[impl])

  def loss(net):
    def f(params):
      out, _ = net.apply({**variables, "params": params}, x, task, train=True, mutable=["batch_stats"])
      return jnp.sum(out ** 2)
    return f

  values = {impl: jax.jit(jax.value_and_grad(loss(net)))(variables["params"]) for impl, net in nets.items()}
  for impl in nets:
    chex.assert_trees_all_close(values[impl], values["native"], rtol=2e-4, atol=2e-4)


def test_build_model_resolves_auto_for_the_platforms_it_is_built_for(monkeypatch):
  _without_onednn(monkeypatch)
  scenario = types.SimpleNamespace(num_heads=1, output_dim=2)
  cfg = small_config(**{"model.name": "convnet"})
  assert build_model(cfg.model, scenario).conv_impl == "native+direct"  # this CPU backend
  for platforms in ("cuda", ("tpu",), ("cuda", "tpu"), ("cpu", "tpu")):
    net = build_model(cfg.model, scenario, steps_per_dispatch=8, platforms=platforms)
    assert net.conv_impl == "native"
    assert all(b.platforms != ("cpu",) for b in net.blocks if hasattr(b, "platforms"))


def test_steps_per_dispatch_selects_patches_on_cpu(monkeypatch):
  _without_onednn(monkeypatch)  # with oneDNN, auto is onednn+direct at any K (tests/test_onednn.py)
  scenario = types.SimpleNamespace(num_heads=1, output_dim=2)
  cfg = small_config(**{"model.name": "convnet"})
  assert build_model(cfg.model, scenario, steps_per_dispatch=1).conv_impl == "native+direct"
  assert build_model(cfg.model, scenario, steps_per_dispatch=8).conv_impl == "patches+direct"


def test_bfloat16_convolutions_take_xlas_lowering(onednn_available):
  # oneDNN's convolutions are float32 only: with the library built, auto gives bfloat16 networks XLA's
  # lowerings on CPU, an explicit onednn is one line naming the fix, and no oneDNN call is in the program
  bf16 = jnp.bfloat16
  assert resolve_conv_impl("auto", 1, "cpu") == "onednn+direct"
  assert resolve_conv_impl("auto", 1, "cpu", bf16) == "native+direct"
  assert resolve_conv_impl("auto", 8, "cpu", bf16) == "patches+direct"
  assert resolve_conv_impl("auto", 1, "cuda", bf16) == "native"
  with pytest.raises(ConfigError, match="^model.conv_impl=onednn computes in float32 only, not "
                     "model.dtype=bfloat16; use model.conv_impl=auto or native, or model.dtype=float32$"):
    resolve_conv_impl("onednn", 1, "cpu", bf16)
  scenario = types.SimpleNamespace(num_heads=1, output_dim=2)
  net = build_model(small_config(**{"model.name": "convnet", "model.conv_stages": ((8,), (8,)),
                                    "model.dtype": "bfloat16"}).model, scenario)
  x, task = jnp.zeros((2, 28, 28, 1)), jnp.zeros((2,), jnp.int32)
  variables = jax.eval_shape(net.init, jax.random.PRNGKey(0), x, task)
  grad = jax.grad(lambda p: jnp.sum(net.apply({"params": p}, x, task)))
  text = jax.jit(grad).lower(variables["params"]).as_text()
  assert "onednn" not in text and "bf16" in text
  # a float32-only lowering handed bfloat16 operands (onednn_conv, direct's oneDNN gradients) takes XLA's
  xb, wb = jnp.ones((2, 8, 8, 8), bf16), jnp.ones((3, 3, 8, 4), bf16)
  for fn in (onednn_conv, lambda *a: direct_conv(*a, backward="onednn")):
    out, vjp = jax.vjp(lambda x, w, fn=fn: fn(x, w, (1, 1), "SAME"), xb, wb)
    chex.assert_type([out, *vjp(out)], bf16)
    assert "onednn" not in jax.jit(lambda x, w, fn=fn: jax.vjp(lambda *a: fn(*a, (1, 1), "SAME"), x, w)[1](
        jnp.ones((2, 8, 8, 4), bf16))).lower(xb, wb).as_text()
