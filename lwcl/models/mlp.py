"""Multi-layer perceptron blocks (GEM's MLP: two hidden layers of 100 ReLU units)."""

from __future__ import annotations

import flax.linen as nn
import jax


class DenseBlock(nn.Module):
  """Flatten (if needed), Dense, ReLU. ``[B, ...] -> [B, features]``."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = x.reshape(x.shape[0], -1)
    return nn.relu(nn.Dense(self.features)(x))


def mlp_blocks(hidden) -> list:
  """One :class:`DenseBlock` per hidden size."""
  return [DenseBlock(int(h)) for h in hidden]
