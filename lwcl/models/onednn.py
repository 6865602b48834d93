"""2-D convolutions computed by oneDNN (the library behind PyTorch's CPU convolutions) through XLA FFI custom
calls: forward, input gradient and kernel gradient are oneDNN's convolution primitives
(``lwcl/platform/native/onednn_conv.cc``, built by ``python -m lwcl.platform.native.build``).

Why: on CPU, XLA's convolution backward ran at half the machine's matmul rate or less; oneDNN's forward and
backward together were 1.7x (the default ConvNet's second convolution) to 3.3x (ResNet-20's 16-channel stage)
faster on a 2-core Xeon (``bin/bench conv``; ``docs/results.md``, "oneDNN convolutions"). Values agree with
``lax.conv_general_dilated`` to float32 rounding (``tests/models/test_onednn.py``).

Source: oneDNN's convolution primitive (oneDNN Developer Guide, "Convolution": ``forward_training``,
``backward_data`` and ``backward_weights`` with ``algorithm::convolution_direct``), which computes
``y[b, i, j, o] = sum_{di, dj, c} x[b, i * sh + di - pt, j * sw + dj - pl, c] * k[di, dj, c, o]`` (zero outside
the input), the definition of ``lax.conv_general_dilated`` without dilation.

Only float32 NHWC / HWIO convolutions without dilation or groups on the CPU backend; :mod:`lwcl.models.conv`
chooses this lowering and falls back to XLA's convolution for anything else. Under ``jax.vmap`` the custom
calls run once per mapped element (``vmap_method='sequential'``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lwcl.platform import targets
from lwcl.platform.native import build


def unavailable_reason(platforms=None) -> str | None:
  """None when the oneDNN convolutions can run in programs built for ``platforms`` (a platform name or names,
  :func:`lwcl.platform.targets.target_platforms`; default: the default backend's): the CPU alone, with the
  library built and loaded in this process; otherwise why not (a sentence that names the fix)."""
  platforms = targets.target_platforms(platforms)
  if not targets.cpu_only(platforms):
    return f"oneDNN convolutions run on CPU only (platforms: {', '.join(platforms)})"
  return build.load()


def _attrs(strides: tuple, pads: tuple) -> dict:
  (sh, sw), ((pt, pb), (pl, pr)) = strides, pads
  return {name: np.int64(v) for name, v in zip(("sh", "sw", "pt", "pb", "pl", "pr"), (sh, sw, pt, pb, pl, pr))}


def _call(target: str, shape: tuple, a: jax.Array, b: jax.Array, strides: tuple, pads: tuple) -> jax.Array:
  reason = build.load()
  if reason:
    raise RuntimeError(reason)
  out = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.ffi.ffi_call(target, out, vmap_method="sequential")(a, b, **_attrs(strides, pads))


def output_shape(lhs_shape: tuple, rhs_shape: tuple, strides: tuple, pads: tuple) -> tuple:
  """``[B, Ho, Wo, O]`` of an NHWC input ``lhs_shape`` and HWIO kernel ``rhs_shape``."""
  (b, h, w, _), (kh, kw, _, o) = lhs_shape, rhs_shape
  ho = (h + pads[0][0] + pads[0][1] - kh) // strides[0] + 1
  wo = (w + pads[1][0] + pads[1][1] - kw) // strides[1] + 1
  return (b, ho, wo, o)


def forward(lhs: jax.Array, rhs: jax.Array, strides: tuple, pads: tuple) -> jax.Array:
  """oneDNN's convolution, no gradient: ``lhs`` ``[B, H, W, C]`` float32, ``rhs`` ``[kh, kw, C, O]`` float32,
  ``strides`` ``(sh, sw)``, ``pads`` ``((top, bottom), (left, right))``; returns ``[B, Ho, Wo, O]`` float32."""
  return _call("lwcl_onednn_conv_fwd", output_shape(lhs.shape, rhs.shape, strides, pads), lhs, rhs, strides, pads)


def gradients(strides: tuple, pads: tuple, res: tuple, g: jax.Array) -> tuple:
  """``(d lhs, d rhs)`` of the convolution of ``res = (lhs, rhs)`` for the output cotangent ``g``
  ``[B, Ho, Wo, O]``, by oneDNN's backward-data and backward-weights primitives (each computed only where it
  is used: XLA drops an unused custom call)."""
  lhs, rhs = res
  g = g.astype(jnp.float32)
  d_lhs = _call("lwcl_onednn_conv_bwd_data", lhs.shape, g, rhs, strides, pads)
  d_rhs = _call("lwcl_onednn_conv_bwd_weights", rhs.shape, lhs, g, strides, pads)
  return d_lhs, d_rhs


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(lhs: jax.Array, rhs: jax.Array, strides: tuple, pads: tuple) -> jax.Array:
  """oneDNN's convolution with oneDNN's gradients; arguments and result as :func:`forward`.

  Raises:
    RuntimeError: the library is not available (:func:`unavailable_reason` says why); raised when traced.
  """
  return forward(lhs, rhs, strides, pads)


def _conv_fwd(lhs, rhs, strides, pads):
  return forward(lhs, rhs, strides, pads), (lhs, rhs)


conv.defvjp(_conv_fwd, gradients)
