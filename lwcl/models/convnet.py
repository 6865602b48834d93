"""Plain convolutional network: stages of 3x3 convolutions + ReLU, each ending in 2x2 max pooling.

``conv_stages=((32, 32), (64, 64), (128, 128))`` with ``dense=(256,)`` is the network of the HAT / NAI line
of work (conv32-conv32-pool-conv64-conv64-pool-conv128-conv128-pool, fc256).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from lwcl.models.conv import conv
from lwcl.models.mlp import DenseBlock, sow_activation


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max pooling with stride 2 (``VALID``: an odd last row or column is dropped), ``[B, H, W, C]`` ->
  ``[B, H // 2, W // 2, C]``; the same values as ``flax.linen.max_pool(x, (2, 2), strides=(2, 2))``.

  On CPU it is a reshape and a ``max`` reduction: XLA:CPU's ``reduce_window`` backward
  (``select_and_scatter``) took about half of the default ConvNet's training step (``bin/bench vs-torch``),
  the reduction's is a few times cheaper. Its gradient differs from ``max_pool``'s only where a window
  holds several equal maxima (split evenly instead of given to the first); after a ReLU such ties are at
  0, where the ReLU's gradient is 0 anyway. GPU and TPU keep the native ``reduce_window``.
  """
  if jax.default_backend() != "cpu":
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  b, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class ConvStage(nn.Module):
  """``len(channels)`` x (3x3 conv, optional BatchNorm, ReLU), then 2x2 max pool (stride 2); convolutions
  lowered as ``conv_impl`` (:mod:`lwcl.models.conv`)."""
  channels: tuple
  batch_norm: bool = False
  conv_impl: str = "native"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for c in self.channels:
      layers = [conv(self.conv_impl, int(c), (3, 3), use_bias=not self.batch_norm)]
      x = layers[-1](x)
      if self.batch_norm:
        layers.append(nn.BatchNorm(use_running_average=not train, momentum=0.9))
        x = layers[-1](x)
      x = nn.relu(x)
      sow_activation(self, x, *layers)
    return max_pool_2x2(x)


def convnet_blocks(conv_stages, dense, batch_norm: bool, conv_impl: str = "native") -> list:
  """One :class:`ConvStage` per stage, then one Dense block per ``dense`` size."""
  blocks = [ConvStage(tuple(int(c) for c in s), batch_norm, conv_impl)
            for s in conv_stages]
  blocks += [DenseBlock(int(d)) for d in dense]
  return blocks
