"""lwcl's oneDNN convolutions (lwcl/models/onednn.py, lwcl/platform/native/onednn_conv.cc) against XLA's convolution in
float64 and float32: values and both gradients for every kernel, stride and padding the models use, batches
that split unevenly over the threads, ``jax.vmap``, compiled loops, dtypes it leaves to XLA; the OpenMP setting
of the calling thread left as it was; how ``model.conv_impl`` resolves with and without the library; the
build's errors."""

import ctypes
import ctypes.util

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lwcl.errors import ConfigError
from lwcl.models import onednn
from lwcl.models.conv import direct_conv, onednn_conv, resolve_conv_impl
from lwcl.platform.native import build

from helpers import CASES, DN, normal

needs_onednn = pytest.mark.usefixtures("onednn_available")


def _inputs(batch, h, c, o, k, dtype=jnp.float32, seed=0):
  x, w = normal(seed, (batch, h, h, c), (k, k, c, o), dtype=dtype)
  return x, w / np.sqrt(k * k * c)


def _value_and_grads(f, x, w):
  loss = lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731  (a non-linear cotangent)
  return jax.jit(lambda x, w: (f(x, w), jax.grad(loss, (0, 1))(x, w)))(x, w)


@needs_onednn
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}x{c[0]}x{c[1]}-k{c[3]}s{c[4]}-{c[5]}" for c in CASES])
def test_values_and_gradients_match_xla_in_float64(case):
  h, c, o, k, s, p = case
  x, w = _inputs(5, h, c, o, k)  # 5: the batch splits unevenly over 2 threads
  out, (dx, dw) = _value_and_grads(lambda x, w: onednn_conv(x, w, (s, s), p, dimension_numbers=DN), x, w)
  with jax.enable_x64(True):  # reference: XLA's convolution of the same float32 numbers, in float64
    x64, w64 = (np.asarray(a, np.float64) for a in (x, w))
    ref, (rdx, rdw) = _value_and_grads(
        lambda x, w: lax.conv_general_dilated(x, w, (s, s), p, dimension_numbers=DN), x64, w64)
    ref, rdx, rdw = (np.asarray(a) for a in (ref, rdx, rdw))
  chex.assert_shape(out, ref.shape)
  chex.assert_type([out, dx, dw], jnp.float32)
  for got, want in ((out, ref), (dx, rdx), (dw, rdw)):
    scale = np.abs(want).max()
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0, atol=2e-6 * scale)


@needs_onednn
@pytest.mark.parametrize("lowering,batch,c", [("onednn", 1, 8), ("onednn", 2, 8), ("onednn", 3, 8),
                                             ("onednn", 7, 8), ("direct, oneDNN gradients", 6, 1)])
def test_any_batch_size_matches_xla_in_float32(lowering, batch, c):
  x, w = _inputs(batch, 14, c, 16, 3)  # batches of 1, and that split unevenly over the threads
  if lowering == "onednn":
    f = lambda x, w: onednn_conv(x, w, (1, 1), "SAME", dimension_numbers=DN)  # noqa: E731
  else:
    f = lambda x, w: direct_conv(x, w, (1, 1), "SAME", backward="onednn")  # noqa: E731
  got = _value_and_grads(f, x, w)
  want = _value_and_grads(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN),
                          x, w)
  chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-4)  # float32: summation order only


@needs_onednn
def test_repeated_calls_vmap_and_compiled_loops_give_the_same_bits():
  x, w = _inputs(6, 10, 4, 8, 3)
  f = lambda x, w: _value_and_grads(lambda a, b: onednn.conv(a, b, (1, 1), ((1, 1), (1, 1))), x, w)  # noqa: E731
  once = f(x, w)
  chex.assert_trees_all_equal(once, f(x, w))  # deterministic
  xs, ws = jnp.stack([x, 2 * x]), jnp.stack([w, -w])
  mapped = jax.vmap(f)(xs, ws)
  chex.assert_trees_all_equal(jax.tree.map(lambda a: a[0], mapped), once)
  chex.assert_trees_all_equal(jax.tree.map(lambda a: a[1], mapped), f(2 * x, -w))

  def body(_, carry):  # a convolution inside a compiled loop (train.steps_per_dispatch > 1)
    out, _ = f(carry, w)
    return carry + 0.01 * out[..., :4]
  looped = jax.jit(lambda x: lax.fori_loop(0, 3, body, x))(x)
  unrolled = x
  for _ in range(3):
    unrolled = jax.jit(lambda c: c + 0.01 * f(c, w)[0][..., :4])(unrolled)
  chex.assert_trees_all_close(looped, unrolled, rtol=1e-6, atol=1e-6)


@needs_onednn
def test_other_dtypes_use_xlas_convolution():
  with jax.enable_x64(True):
    x, w = _inputs(2, 8, 3, 4, 3, jnp.float64)
    f = lambda x, w: onednn_conv(x, w, (1, 1), "SAME", dimension_numbers=DN)  # noqa: E731
    jaxpr = str(jax.make_jaxpr(f)(x, w))
    assert "conv_general_dilated" in jaxpr and "ffi_call" not in jaxpr
    chex.assert_trees_all_equal(f(x, w), lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN))


@needs_onednn
def test_the_calling_threads_openmp_setting_is_left_as_it_was():
  # PyTorch shares libgomp: a oneDNN call that left this thread at 1 OpenMP thread halved PyTorch's speed in
  # the same process (bin/bench vs-torch)
  path = ctypes.util.find_library("gomp")
  if path is None:
    pytest.skip("libgomp not found")
  gomp = ctypes.CDLL(path)
  gomp.omp_set_num_threads(3)
  x, w = _inputs(4, 8, 4, 4, 3)
  jax.block_until_ready(_value_and_grads(lambda a, b: onednn.conv(a, b, (1, 1), ((1, 1), (1, 1))), x, w))
  assert gomp.omp_get_max_threads() == 3


def test_conv_impl_resolves_by_availability(monkeypatch):
  monkeypatch.setitem(build._state, "reason", "not built (test)")  # pylint: disable=protected-access
  assert resolve_conv_impl("auto", 1, "cpu") == "native+direct"
  assert resolve_conv_impl("auto", 8, "cpu") == "patches+direct"
  with pytest.raises(ConfigError, match=r"conv_impl=onednn cannot be used: not built \(test\)"):
    resolve_conv_impl("onednn", 1, "cpu")
  with pytest.raises(ConfigError, match="CPU only"):
    resolve_conv_impl("onednn", 1, "gpu")
  with pytest.raises(ConfigError, match=r"CPU only \(platforms: cpu, cuda\)"):
    resolve_conv_impl("onednn", 1, ("cpu", "cuda"))
  monkeypatch.setitem(build._state, "reason", None)  # pylint: disable=protected-access
  assert resolve_conv_impl("auto", 1, "cpu") == resolve_conv_impl("auto", 8, "cpu") == "onednn+direct"
  assert resolve_conv_impl("onednn", 1, "cpu") == "onednn"
  assert resolve_conv_impl("auto", 1, "gpu") == resolve_conv_impl("auto", 1, ("cuda", "tpu")) == "native"
  assert resolve_conv_impl("auto", 1, ("cpu", "cuda")) == "native"  # a program that must run off the CPU too
  with pytest.raises(ConfigError, match="CPU only"):
    resolve_conv_impl("onednn", 1, "tpu")


def test_turned_off_by_the_environment(monkeypatch, caplog):
  monkeypatch.setattr(build, "_state", {})
  monkeypatch.setenv(build.ENV_SWITCH, "0")
  assert "turned off by LWCL_ONEDNN=0" in build.load()
  assert not caplog.records  # a choice, not a problem: no warning


def test_a_missing_build_is_a_warning_that_names_the_fix(monkeypatch, tmp_path, caplog):
  monkeypatch.setattr(build, "_state", {})
  monkeypatch.setattr(build, "BUILD_DIR", tmp_path)  # nothing built there
  reason = build.load()
  assert "not built" in reason and "python -m lwcl.platform.native.build" in reason
  assert build.load() == reason  # decided once per process
  (record,) = caplog.records
  assert record.levelname == "WARNING" and "use XLA's, slower" in record.getMessage()


def test_build_errors_name_the_fix(monkeypatch, tmp_path):
  monkeypatch.setattr(build, "BUILD_DIR", tmp_path)
  with pytest.raises(build.NativeBuildError, match="no C.. compiler.*apt-get install g.. libdnnl-dev"):
    build.build(compiler="/nonexistent/c++")
  assert not list(tmp_path.iterdir())  # nothing half-written
  assert build.library_path().name == f"liblwcl_onednn-{build.fingerprint()}.so"
