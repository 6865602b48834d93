"""Plain convolutional network: stages of 3x3 convolutions + ReLU, each ending in 2x2 max pooling.

``conv_stages=((32, 32), (64, 64), (128, 128))`` with ``dense=(256,)`` is the network of the HAT / NAI line
of work (conv32-conv32-pool-conv64-conv64-pool-conv128-conv128-pool, fc256).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from lwcl.models.mlp import DenseBlock, sow_activation


class ConvStage(nn.Module):
  """``len(channels)`` x (3x3 conv, optional BatchNorm, ReLU), then 2x2 max pool (stride 2)."""
  channels: tuple
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for c in self.channels:
      layers = [nn.Conv(int(c), (3, 3), padding="SAME", use_bias=not self.batch_norm)]
      x = layers[-1](x)
      if self.batch_norm:
        layers.append(nn.BatchNorm(use_running_average=not train, momentum=0.9))
        x = layers[-1](x)
      x = nn.relu(x)
      sow_activation(self, x, *layers)
    return nn.max_pool(x, (2, 2), strides=(2, 2))


def convnet_blocks(conv_stages, dense, batch_norm: bool) -> list:
  """One :class:`ConvStage` per stage, then one Dense block per ``dense`` size."""
  blocks = [ConvStage(tuple(int(c) for c in s), batch_norm)
            for s in conv_stages]
  blocks += [DenseBlock(int(d)) for d in dense]
  return blocks
