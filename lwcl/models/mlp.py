"""Multi-layer perceptron blocks (GEM's MLP: two hidden layers of 100 ReLU units)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lwcl.core.options import Option

# The model.* keys the MLP reads (beside model.name and model.conv_impl, lwcl/models/__init__.py).
OPTIONS = (
    Option("model.hidden", (100, 100), "mlp: sizes of the hidden ReLU layers", minimum=1),
)


# Prefix of the ``intermediates`` entries that record post-nonlinearity activations (see sow_activation).
ACTIVATION_PREFIX = "activation:"


def sow_activation(module: nn.Module, x: jax.Array, *layers: nn.Module) -> None:
  """Records ``x``, an output after its nonlinearity, as ``intermediates['activation:' + names]``.

  ``names`` joins with ``+`` the names of the sibling ``layers`` whose parameters produce ``x``'s units
  (e.g. ``'activation:Conv_0+BatchNorm_0'``); NAI (``lwcl.methods.regularization.nai_importance``) reads the
  entries to give every parameter the importance of the unit it feeds. A no-op unless ``intermediates``
  is mutable, so parameters and outputs are unchanged.
  """
  module.sow("intermediates", ACTIVATION_PREFIX + "+".join(layer.name for layer in layers), x)


class DenseBlock(nn.Module):
  """Flatten (if needed), Dense, ReLU. ``[B, ...] -> [B, features]`` in ``dtype`` (the computation dtype,
  ``model.dtype``: float32 or bfloat16; parameters float32)."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = x.reshape(x.shape[0], -1)
    dense = nn.Dense(self.features, dtype=self.dtype, param_dtype=jnp.float32)
    x = nn.relu(dense(x))
    sow_activation(self, x, dense)
    return x


def mlp_blocks(hidden, dtype=jnp.float32) -> list:
  """One :class:`DenseBlock` per hidden size, computing in ``dtype``."""
  return [DenseBlock(int(h), dtype) for h in hidden]
