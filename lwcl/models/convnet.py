"""Plain convolutional network: stages of 3x3 convolutions + ReLU, each ending in 2x2 max pooling.

``conv_stages=((32, 32), (64, 64), (128, 128))`` with ``dense=(256,)`` is the network of the HAT / NAI line
of work (conv32-conv32-pool-conv64-conv64-pool-conv128-conv128-pool, fc256).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lwcl.core.options import Option
from lwcl.models.conv import conv
from lwcl.models.mlp import DenseBlock, sow_activation
from lwcl.platform import targets

CONV_STAGES = Option("model.conv_stages", ((32,), (64,)), "convnet: channels of the 3x3 convs of each stage "
                     "(a 2x2 max pool after each stage)", minimum=1)
# The model.* keys the ConvNet reads (beside model.name and model.conv_impl, lwcl/models/__init__.py).
OPTIONS = (
    CONV_STAGES,
    Option("model.dense", (128,), "convnet: hidden Dense layers after the conv stages", minimum=1),
    Option("model.batch_norm", False, "convnet: BatchNorm after every convolution"),
)


@jax.custom_vjp
def _window_max(x: jax.Array) -> jax.Array:
  return jnp.maximum(jnp.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2]), jnp.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2]))


def _window_max_fwd(x):
  y = _window_max(x)
  return y, (x, y)


def _window_max_bwd(res, g):
  x, y = res
  b, h, w, c = x.shape
  hit = x.reshape(b, h // 2, 2, w // 2, 2, c) == y[:, :, None, :, None, :]
  zero, seen, parts = jnp.zeros_like(g), jnp.zeros(g.shape, bool), []
  for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):  # row-major window order: the first maximum takes it all
    parts.append(jnp.where(hit[:, :, i, :, j] & ~seen, g, zero))
    seen = seen | hit[:, :, i, :, j]
  rows = [jnp.stack(parts[2 * i: 2 * i + 2], axis=3) for i in (0, 1)]  # [B, H/2, W/2, 2, C] each
  return (jnp.stack(rows, axis=2).reshape(x.shape),)


_window_max.defvjp(_window_max_fwd, _window_max_bwd)


def max_pool_2x2(x: jax.Array, platforms=None) -> jax.Array:
  """2x2 max pooling with stride 2 (``VALID``: an odd last row or column is dropped), ``[B, H, W, C]`` ->
  ``[B, H // 2, W // 2, C]``, float; the values and gradients of
  ``flax.linen.max_pool(x, (2, 2), strides=(2, 2))``, whose gradient goes to the first maximum of each
  window in row-major order (XLA's ``select_and_scatter`` with ``>=``), ties included.

  On CPU it is the ``maximum`` of the window's four strided slices with a custom VJP (the gradient placed
  by comparing the input with the saved maxima): XLA:CPU's ``reduce_window`` backward
  (``select_and_scatter``) took about half of the default ConvNet's training step, and autodiff of a
  reshape + ``max`` (which splits ties and counts them with a second reduction) left the step at
  13.9-17.6 ms against 11.9-12.5 ms with this VJP (``docs/results.md``, "Convolutions on CPU"). Programs
  built for GPU or TPU keep the native ``reduce_window``.

  Args:
    x: ``[B, H, W, C]``, float.
    platforms: the platforms the program is built for (:func:`lwcl.platform.targets.target_platforms`); the
      CPU form only when they are the CPU alone. Default: the default backend's.
  """
  if not targets.cpu_only(platforms):
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  return _window_max(x[:, :h, :w])


class ConvStage(nn.Module):
  """``len(channels)`` x (3x3 conv, optional BatchNorm, ReLU), then 2x2 max pool (stride 2); convolutions
  lowered as ``conv_impl`` (:mod:`lwcl.models.conv`), the pool as :func:`max_pool_2x2` for ``platforms`` (the
  platforms the program is built for; None: the default backend's); computing in ``dtype`` (float32 or
  bfloat16; parameters and BatchNorm statistics float32)."""
  channels: tuple
  batch_norm: bool = False
  conv_impl: str = "native"
  platforms: tuple | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for c in self.channels:
      layers = [conv(self.conv_impl, int(c), (3, 3), use_bias=not self.batch_norm, dtype=self.dtype)]
      x = layers[-1](x)
      if self.batch_norm:
        layers.append(nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype))
        x = layers[-1](x)
      x = nn.relu(x)
      sow_activation(self, x, *layers)
    return max_pool_2x2(x, self.platforms)


def convnet_blocks(conv_stages, dense, batch_norm: bool, conv_impl: str = "native", platforms=None,
                   dtype=jnp.float32) -> list:
  """One :class:`ConvStage` per stage, then one Dense block per ``dense`` size; ``platforms``: those the
  program is built for (None: the default backend's); ``dtype``: the computation dtype."""
  platforms = None if platforms is None else targets.target_platforms(platforms)
  blocks = [ConvStage(tuple(int(c) for c in s), batch_norm, conv_impl, platforms, dtype)
            for s in conv_stages]
  blocks += [DenseBlock(int(d), dtype) for d in dense]
  return blocks
