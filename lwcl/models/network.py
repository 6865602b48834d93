"""A network as a sequence of blocks followed by task heads.

Every model of the package is a :class:`Network`: a list of blocks (each ``block(x, train) -> x``), a
read-out that turns the last feature map into a vector (flatten or global average pool), and
:class:`~lwcl.models.heads.TaskHeads`. The block list is what layer-wise training cuts into local blocks.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def readout(x: jax.Array, pool: str) -> jax.Array:
  """``[B, H, W, C] -> [B, F]`` by ``'flatten'`` or ``'avg'`` (global average pool); ``[B, F]`` passes."""
  if x.ndim == 2:
    return x
  if pool == "avg":
    return jnp.mean(x, axis=(1, 2))
  return x.reshape(x.shape[0], -1)


class Network(nn.Module):
  """Blocks, read-out, task heads.

  Attributes:
    blocks: the feature extractor's blocks, applied in order.
    head: the task heads.
    pool: read-out before the head: ``'flatten'`` or ``'avg'``.
    conv_impl: how the blocks' convolutions are lowered, one of :data:`lwcl.models.conv.LOWERINGS`
      (``native``, ``patches``, ``direct``, ``onednn``, or ``native+direct``, ``patches+direct``,
      ``onednn+direct``: convolutions contracting few values per output are ``direct``), as
      :func:`lwcl.models.conv.resolve_conv_impl` resolves ``model.conv_impl``; auxiliary heads built for
      this network use the same.
    dtype: the computation dtype its blocks and head were built with (``model.dtype``, :data:`lwcl.models.DTYPES`:
      float32, or bfloat16 for mixed precision: activations and matmuls bfloat16, parameters and BatchNorm
      statistics float32, logits returned as float32); auxiliary heads built for this network use the same.
  """
  blocks: Sequence[nn.Module]
  head: nn.Module
  pool: str = "flatten"
  conv_impl: str = "native"
  dtype: Any = jnp.float32

  def __call__(self, x: jax.Array, task: jax.Array, train: bool = False) -> jax.Array:
    """Args: ``x`` float32 ``[B, H, W, C]``; ``task`` int32 ``[B]``; ``train`` selects BatchNorm batch
    statistics. Returns logits float32 ``[B, output_dim]`` (not masked), whatever :attr:`dtype` is."""
    return self.head(self._trunk(x, train), task)

  def features(self, x: jax.Array, train: bool = False) -> jax.Array:
    """The read-out before the heads (the penultimate features): float32 ``[B, F]`` for ``x`` float32
    ``[B, H, W, C]`` (computed in :attr:`dtype`, returned as float32)."""
    return self._trunk(x, train).astype(jnp.float32)

  def _trunk(self, x: jax.Array, train: bool) -> jax.Array:
    """The blocks and the read-out, ``[B, F]`` in the blocks' computation dtype."""
    for block in self.blocks:
      x = block(x, train)
    return readout(x, self.pool)
