"""Convolution lowerings: XLA's native convolution, oneDNN's (CPU), shifted patches and one matmul, or shifted
multiply-adds (narrow inputs on CPU).

Every convolution of lwcl's models is a ``flax.linen.Conv`` made by :func:`conv`, which picks the
``conv_general_dilated`` function it calls from the lowering :func:`resolve_conv_impl` gives for
``model.conv_impl``:

* ``native``: ``jax.lax.conv_general_dilated`` (XLA's convolution; on GPU/TPU the only sensible choice).
* ``patches``: :func:`patch_conv`: the ``kh * kw`` shifted (strided) slices of the padded input are
  concatenated on the channel axis, ``[B, Ho, Wo, kh * kw * C]``, and multiplied by the kernel reshaped to
  ``[kh * kw * C, O]`` with one ``dot_general``. XLA:CPU compiles a convolution inside a loop
  (``lax.fori_loop`` / ``scan``, what ``train.steps_per_dispatch > 1`` uses) to a slow generic kernel
  (jax-ml/jax#12868); a matmul keeps its fast kernel there. Costs ``kh * kw`` times the input's memory
  for the patches (and the same again in the backward pass).
* ``direct``: :func:`direct_conv`: the sum over the ``kh * kw * C`` shifted slices of one input channel
  times that kernel row, ``[B, Ho, Wo, 1] * [O]``: element-wise multiply-adds that XLA fuses into one loop
  with the bias and the activation that follow. For inputs with few channels (an image's 1 or 3) a matmul
  or convolution kernel has almost nothing to contract (``kh * kw * C`` = 9 or 27) and runs far below the
  machine's rate (the default ConvNet's first convolution: 22 GFLOP/s forward in XLA:CPU's kernel); the
  multiply-adds cost ``kh * kw * C`` passes of FMAs over an output that is written once.
* ``onednn``: :func:`onednn_conv`: oneDNN's convolution primitives, forward and both gradients, as XLA FFI
  custom calls (:mod:`lwcl.models.onednn`; the library is built by ``python -m lwcl.platform.native.build``, which
  ``bin/setup`` runs). On CPU, XLA's convolution backward runs at half the matmul's rate or less; oneDNN's
  forward + backward were 1.6-3.3x faster for lwcl's models' convolutions (``bin/bench conv``), and a
  custom call stays fast inside compiled loops. float32 only: other dtypes take XLA's convolution.
* ``native+direct`` / ``patches+direct`` / ``onednn+direct``: ``direct`` for convolutions that contract at most
  :data:`DIRECT_MAX_CONTRACTION` values per output (``kh * kw * C``: a 3x3 or 5x5 convolution of an image's
  1-3 channels, not a 7x7 ImageNet stem), the other lowering for the rest.
* ``auto`` (default) resolves per platform the program is built for (:mod:`lwcl.platform.targets`: a
  build-time input, by default the default backend's platform). For the CPU alone: ``onednn+direct``
  (``direct`` with oneDNN's gradients) when the oneDNN library is built and loads, otherwise
  ``native+direct`` (``patches+direct`` when steps run inside a compiled loop, ``train.steps_per_dispatch >
  1``). For GPU or TPU (also a program built on a CPU-only machine to be exported for them with
  ``jax.export``): ``native``, so such a program holds no CPU-only custom call and no CPU-tuned lowering
  (measurements in ``docs/results.md``, "Convolutions on CPU" and "oneDNN convolutions").
  ``LWCL_ONEDNN=0`` keeps ``auto`` off oneDNN. With ``model.dtype=bfloat16`` (:data:`lwcl.models.DTYPES`)
  ``auto`` never picks oneDNN (float32 only): bfloat16 convolutions take XLA's (``native+direct``, or
  ``patches+direct`` in compiled loops), and an explicit ``onednn`` is a ``ConfigError``.

Parameters are the same under every lowering (``kernel`` ``[kh, kw, C, O]``, HWIO), so a checkpoint of one
restores under another; values and gradients agree to float32 rounding (``tests/models/test_conv.py``).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lwcl.core.options import Option
from lwcl.errors import ConfigError
from lwcl.models import onednn
from lwcl.platform import targets

CONV_IMPLS = ("auto", "native", "patches", "direct", "onednn")
CONV_IMPL = Option("model.conv_impl", "auto", "how convolutions are computed: auto (native off the CPU; on CPU "
                   "direct for an image's first conv, then onednn when built, else patches when "
                   "train.steps_per_dispatch > 1, else native) | native (XLA) | onednn (CPU, float32; built "
                   "by bin/setup) | patches (shifted slices + one matmul) | direct (multiply-adds)",
                   choices=CONV_IMPLS)
LOWERINGS = ("native", "patches", "direct", "onednn", "native+direct", "patches+direct", "onednn+direct")
# ``X+direct``: convolutions contracting at most this many values per output (``kh * kw * C``) are ``direct``
# (forward measured faster at 9, 25, 27 and 36, slower at 72 and 147: docs/results.md)
DIRECT_MAX_CONTRACTION = 36


def resolve_conv_impl(conv_impl: str, steps_per_dispatch: int = 1, platforms=None, dtype=jnp.float32) -> str:
  """The lowering (one of :data:`LOWERINGS`) for ``model.conv_impl``, ``auto`` resolved as the module doc
  says for the platforms the program is built for and the computation dtype.

  Args:
    conv_impl: ``auto`` | ``native`` | ``patches`` | ``direct`` | ``onednn``.
    steps_per_dispatch: ``train.steps_per_dispatch`` (steps per compiled loop).
    platforms: the platform or platforms the program is built for (:func:`lwcl.platform.targets.target_platforms`:
      e.g. ``'cpu'``, ``('cuda',)``, ``('cuda', 'tpu')``); default: the default backend's. ``auto`` takes a
      CPU lowering only when every one of them is the CPU.
    dtype: the convolutions' computation dtype (``model.dtype``: float32 or bfloat16); oneDNN's are float32
      only, so ``auto`` skips them for any other.
  Raises:
    ConfigError: an unknown ``conv_impl``, or ``onednn`` where the oneDNN convolutions cannot run (the
      message says why and how to build them) or with a computation dtype other than float32.
  """
  if conv_impl not in CONV_IMPLS:
    raise ConfigError(f"model.conv_impl '{conv_impl}' is unknown; use one of {', '.join(CONV_IMPLS)}")
  platforms = targets.target_platforms(platforms)
  float32 = jnp.dtype(dtype) == jnp.float32
  if conv_impl == "onednn" and not float32:
    raise ConfigError(f"model.conv_impl=onednn computes in float32 only, not model.dtype={jnp.dtype(dtype).name}; "
                      "use model.conv_impl=auto or native, or model.dtype=float32")
  if conv_impl == "onednn":
    reason = onednn.unavailable_reason(platforms)
    if reason:
      raise ConfigError(f"model.conv_impl=onednn cannot be used: {reason}; or use model.conv_impl=auto")
  if conv_impl != "auto":
    return conv_impl
  if not targets.cpu_only(platforms):
    return "native"
  if float32 and onednn.unavailable_reason(platforms) is None:
    return "onednn+direct"
  return ("patches" if steps_per_dispatch > 1 else "native") + "+direct"


def _pads(padding, in_spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int]) -> list:
  if isinstance(padding, str):
    return lax.padtype_to_pads(in_spatial, kernel, strides, padding)
  return [tuple(int(v) for v in p) for p in padding]


def _checked(name: str, lhs: jax.Array, rhs: jax.Array, window_strides, padding, lhs_dilation,
             rhs_dilation, dimension_numbers, feature_group_count) -> tuple:
  """``(strides, pads)`` as int tuples, after the checks behind :func:`patch_conv`'s ValueError."""
  nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
  if dimension_numbers is not None:
    dimension_numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  dilated = any(d != 1 for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
  if lhs.ndim != 4 or dilated or feature_group_count != 1 or dimension_numbers not in (None, nhwc):
    raise ValueError(f"{name} supports 2-D NHWC/HWIO convolutions without dilation or groups; use "
                     "model.conv_impl=native for this model")
  strides = tuple(int(s) for s in window_strides)
  pads = tuple(tuple(int(v) for v in p) for p in _pads(padding, lhs.shape[1:3], rhs.shape[:2], strides))
  return strides, pads


def _shifted_slices(lhs: jax.Array, kernel: Sequence[int], strides: tuple, pads: tuple) -> list:
  """The ``kh * kw`` shifted (strided) slices ``[B, Ho, Wo, C]`` of the padded input, in kernel order
  ``(0, 0), (0, 1), ...``."""
  (kh, kw), (sh, sw) = kernel, strides
  x = jnp.pad(lhs, ((0, 0),) + pads + ((0, 0),))
  ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  return [x[:, i: i + (ho - 1) * sh + 1: sh, j: j + (wo - 1) * sw + 1: sw] for i in range(kh) for j in range(kw)]


def _patch_matmul(lhs: jax.Array, rhs: jax.Array, strides: tuple, pads: tuple, precision=None) -> jax.Array:
  kh, kw, c, o = rhs.shape
  slices = _shifted_slices(lhs, (kh, kw), strides, pads)
  patches = slices[0] if len(slices) == 1 else jnp.concatenate(slices, axis=-1)
  return lax.dot_general(patches, rhs.reshape(kh * kw * c, o), (((3,), (0,)), ((), ())), precision=precision)


def patch_conv(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding,
               lhs_dilation=None, rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
               precision=None, **_) -> jax.Array:
  """2-D convolution as shifted patches and one matmul; a drop-in for ``lax.conv_general_dilated`` as
  ``flax.linen.Conv`` calls it (NHWC input, HWIO kernel).

  Args:
    lhs: input ``[B, H, W, C]``, float.
    rhs: kernel ``[kh, kw, C, O]``, same dtype.
    window_strides: ``(sh, sw)``.
    padding: ``'SAME'``, ``'VALID'`` or ``[(lo, hi), (lo, hi)]`` (as ``lax.conv_general_dilated``).
    lhs_dilation, rhs_dilation: must be ``None`` or all ones.
    dimension_numbers: ``None`` or NHWC / HWIO / NHWC (what Flax passes for 4-D inputs).
    feature_group_count: must be 1.
    precision: passed to the matmul.
  Returns:
    ``[B, Ho, Wo, O]`` with ``Ho = (H + lo + hi - kh) // sh + 1`` (likewise ``Wo``): the values of
    ``lax.conv_general_dilated`` up to float summation order.
  Raises:
    ValueError: a non-4-D input, dilation, grouped convolution or other dimension numbers (use
      ``model.conv_impl=native`` for those).
  """
  strides, pads = _checked("patch_conv", lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                           dimension_numbers, feature_group_count)
  return _patch_matmul(lhs, rhs, strides, pads, precision)


def onednn_conv(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding,
                lhs_dilation=None, rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                precision=None, **kwargs) -> jax.Array:
  """2-D convolution by oneDNN with oneDNN's gradients (:func:`lwcl.models.onednn.conv`); the same arguments,
  result and errors as :func:`patch_conv` (``precision`` is unused). Inputs other than float32 take
  ``lax.conv_general_dilated``.

  Raises:
    ValueError: as :func:`patch_conv`.
    RuntimeError: the oneDNN library is not available (its message says how to build it).
  """
  strides, pads = _checked("onednn_conv", lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                           dimension_numbers, feature_group_count)
  if lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32:
    return lax.conv_general_dilated(lhs, rhs, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=precision, **kwargs)
  return onednn.conv(lhs, rhs, strides, pads)


def direct_conv(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding,
                lhs_dilation=None, rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                precision=None, backward: str = "native", **_) -> jax.Array:
  """2-D convolution as ``kh * kw * C`` broadcast multiply-adds, ``sum_{i,j,c} x_ij[..., c:c+1] *
  rhs[i, j, c]`` over the shifted slices ``x_ij`` of the padded input; for inputs with few channels. The
  same arguments, result and errors as :func:`patch_conv` (``precision`` is unused: float multiply-adds).

  Args:
    backward: whose gradients it has (a custom VJP): ``native`` (``lax.conv_general_dilated``'s),
      ``patches`` (:func:`patch_conv`'s, for compiled loops on CPU) or ``onednn`` (oneDNN's; float32, else
      ``native``). Autodiff of the multiply-adds gives
      ``kh * kw * C`` reductions that XLA:CPU feeds with materialized broadcasts of the output's size (the
      default ConvNet's step ran 3x slower); the native kernel's weight gradient is the fastest measured
      for a narrow input (``docs/results.md``, "Convolutions on CPU"). The input's gradient is computed
      only where the input needs one (not for an image).
  Raises:
    ValueError: as :func:`patch_conv`, or an unknown ``backward``.
  """
  del precision
  if backward not in ("native", "patches", "onednn"):
    raise ValueError(f"direct_conv backward '{backward}' is not 'native', 'patches' or 'onednn'")
  strides, pads = _checked("direct_conv", lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                           dimension_numbers, feature_group_count)
  return _direct(lhs, rhs, strides, pads, backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _direct(lhs: jax.Array, rhs: jax.Array, strides: tuple, pads: tuple, backward: str) -> jax.Array:
  del backward
  kh, kw, c, _ = rhs.shape
  rows = rhs.reshape(kh * kw, c, -1)
  out = None
  for k, x in enumerate(_shifted_slices(lhs, (kh, kw), strides, pads)):
    for ci in range(c):
      term = x[..., ci:ci + 1] * rows[k, ci]
      out = term if out is None else out + term
  return out


def _direct_fwd(lhs, rhs, strides, pads, backward):
  return _direct(lhs, rhs, strides, pads, backward), (lhs, rhs)


def _direct_bwd(strides, pads, backward, res, g):
  if backward == "onednn" and all(r.dtype == jnp.float32 for r in res):
    return onednn.gradients(strides, pads, res, g)
  if backward in ("native", "onednn"):
    fn = functools.partial(lax.conv_general_dilated, window_strides=strides, padding=pads,
                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
  else:
    fn = functools.partial(_patch_matmul, strides=strides, pads=pads)
  _, vjp = jax.vjp(fn, *res)
  return vjp(g)


_direct.defvjp(_direct_fwd, _direct_bwd)


def _narrow_direct(wide, backward: str):
  """A ``conv_general_dilated`` that lowers convolutions contracting at most
  :data:`DIRECT_MAX_CONTRACTION` values per output as :func:`direct_conv` (with ``backward``'s gradients)
  and the others with ``wide``."""
  def conv_general_dilated(lhs, rhs, *args, **kwargs):
    if rhs.shape[0] * rhs.shape[1] * rhs.shape[2] <= DIRECT_MAX_CONTRACTION:
      return direct_conv(lhs, rhs, *args, backward=backward, **kwargs)
    return wide(lhs, rhs, *args, **kwargs)
  return conv_general_dilated


_FUNCTIONS = {"native": None, "patches": patch_conv, "direct": direct_conv, "onednn": onednn_conv,
              "native+direct": _narrow_direct(lax.conv_general_dilated, "native"),
              "patches+direct": _narrow_direct(patch_conv, "patches"),
              "onednn+direct": _narrow_direct(onednn_conv, "onednn")}


def conv(conv_impl: str, features: int, kernel_size: tuple, strides: int = 1, padding="SAME",
         use_bias: bool = True, name: str | None = None, dtype=jnp.float32) -> nn.Conv:
  """A ``flax.linen.Conv`` lowered as ``conv_impl``, one of :data:`LOWERINGS` (resolve ``auto`` first with
  :func:`resolve_conv_impl`), computing in ``dtype`` (its input and kernel cast to it; float32 or bfloat16)
  with float32 parameters.

  Raises:
    ValueError: ``conv_impl`` is not a lowering.
  """
  if conv_impl not in _FUNCTIONS:
    raise ValueError(f"conv lowering '{conv_impl}' is not one of {', '.join(LOWERINGS)}; resolve "
                     "model.conv_impl with resolve_conv_impl first")
  return nn.Conv(features, kernel_size, strides=strides, padding=padding, use_bias=use_bias, name=name,
                 dtype=dtype, param_dtype=jnp.float32, conv_general_dilated=_FUNCTIONS[conv_impl])
