"""Convolution lowerings: XLA's native convolution, or shifted patches and one matmul (CPU loops).

Every convolution of lwcl's models is a ``flax.linen.Conv`` made by :func:`conv`, which picks the
``conv_general_dilated`` function it calls from ``model.conv_impl``:

* ``native``: ``jax.lax.conv_general_dilated`` (XLA's convolution; on GPU/TPU the only sensible choice).
* ``patches``: :func:`patch_conv`: the ``kh * kw`` shifted (strided) slices of the padded input are
  concatenated on the channel axis, ``[B, Ho, Wo, kh * kw * C]``, and multiplied by the kernel reshaped to
  ``[kh * kw * C, O]`` with one ``dot_general``. XLA:CPU compiles a convolution inside a loop
  (``lax.fori_loop`` / ``scan``, what ``train.steps_per_dispatch > 1`` uses) to a slow generic kernel
  (jax-ml/jax#12868); a matmul keeps its fast kernel there. Costs ``kh * kw`` times the input's memory
  for the patches (and the same again in the backward pass).
* ``auto`` (default): ``patches`` on the CPU backend when steps run inside a compiled loop
  (``train.steps_per_dispatch > 1``), ``native`` otherwise (measurements in ``docs/results.md``,
  "Convolutions on CPU").

Parameters are the same under every lowering (``kernel`` ``[kh, kw, C, O]``, HWIO), so a checkpoint of one
restores under another; values and gradients agree to float32 rounding (``tests/test_conv.py``).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lwcl.errors import ConfigError

CONV_IMPLS = ("auto", "native", "patches")


def resolve_conv_impl(conv_impl: str, steps_per_dispatch: int = 1, backend: str | None = None) -> str:
  """``native`` or ``patches`` for ``model.conv_impl`` (``auto`` resolved as the module doc says).

  Args:
    conv_impl: ``auto`` | ``native`` | ``patches``.
    steps_per_dispatch: ``train.steps_per_dispatch`` (steps per compiled loop).
    backend: JAX backend name; default ``jax.default_backend()``.
  Raises:
    ConfigError: an unknown ``conv_impl``.
  """
  if conv_impl not in CONV_IMPLS:
    raise ConfigError(f"model.conv_impl '{conv_impl}' is unknown; use one of {', '.join(CONV_IMPLS)}")
  if conv_impl != "auto":
    return conv_impl
  backend = backend or jax.default_backend()
  return "patches" if backend == "cpu" and steps_per_dispatch > 1 else "native"


def _pads(padding, in_spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int]) -> list:
  if isinstance(padding, str):
    return lax.padtype_to_pads(in_spatial, kernel, strides, padding)
  return [tuple(int(v) for v in p) for p in padding]


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
  nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
  if dimension_numbers is not None:
    dimension_numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  dilated = any(d != 1 for d in (lhs_dilation or ()) + tuple(rhs_dilation or ()))
  if lhs.ndim != 4 or dilated or feature_group_count != 1 or dimension_numbers not in (None, nhwc):
    raise ValueError("patch_conv supports 2-D NHWC/HWIO convolutions without dilation or groups; use "
                     "model.conv_impl=native for this model")
  kh, kw, c, o = rhs.shape
  sh, sw = (int(s) for s in window_strides)
  (pt, pb), (pl, pr) = _pads(padding, lhs.shape[1:3], (kh, kw), (sh, sw))
  x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  if kh == kw == 1:
    patches = x[:, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]
  else:
    patches = jnp.concatenate([x[:, i: i + (ho - 1) * sh + 1: sh, j: j + (wo - 1) * sw + 1: sw]
                               for i in range(kh) for j in range(kw)], axis=-1)
  return lax.dot_general(patches, rhs.reshape(kh * kw * c, o), (((3,), (0,)), ((), ())),
                         precision=precision)


def conv(conv_impl: str, features: int, kernel_size: tuple, strides: int = 1, padding="SAME",
         use_bias: bool = True, name: str | None = None) -> nn.Conv:
  """A ``flax.linen.Conv`` lowered as ``conv_impl`` (``native`` or ``patches``; ``auto`` means native:
  resolve it first with :func:`resolve_conv_impl`)."""
  fn = patch_conv if conv_impl == "patches" else None
  return nn.Conv(features, kernel_size, strides=strides, padding=padding, use_bias=use_bias, name=name,
                 conv_general_dilated=fn)
