"""Auxiliary classifier heads of layer-wise (locally supervised) training.

Each local block k of a network gets a head h_k that turns the block's output into logits, so the block can
be trained from its own loss L_k = CE(h_k(f_k(stop_gradient(x_{k-1}))), y) (Belilovsky, Eickenberg,
Oyallon, *Decoupled Greedy Learning of CNNs*, ICML 2020; Ma, Yu, Li, Wang, arXiv 2010.08038). Three kinds:

* ``linear``: adaptive average pool to ``pool x pool``, flatten, one Dense classifier per task slot
  (:class:`~lwcl.models.heads.TaskHeads`), the auxiliary problem of DGL's CIFAR experiments.
* ``cnn``: ``convs`` x (3x3 conv, BatchNorm, ReLU) with ``width`` channels, then pool and Dense.
* ``mlp``: pool, flatten, ``hidden`` Dense + ReLU layers, then Dense.

Feature vectors (``[B, F]``, e.g. after an MLP block) skip the pooling; ``cnn`` needs feature maps.
All heads end in :class:`~lwcl.models.heads.TaskHeads`, padded to ``max_tasks`` like the network's head.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lwcl.errors import ConfigError
from lwcl.models.conv import conv
from lwcl.models.heads import TaskHeads

AUX_HEADS = ("linear", "cnn", "mlp")


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
  """Average pool ``[B, H, W, C]`` to ``[B, size, size, C]`` with PyTorch's adaptive bins.

  Output cell ``i`` averages rows ``floor(i H / size) .. ceil((i + 1) H / size) - 1`` (likewise columns),
  so odd sizes (7x7 on 28x28 inputs) work; maps smaller than ``size`` repeat rows. ``[B, F]`` passes.
  """
  if x.ndim == 2:
    return x
  _, h, w, _ = x.shape

  def bins(n):
    return [(i * n // size, -(-(i + 1) * n // size)) for i in range(size)]

  rows = [jnp.mean(x[:, a:b], axis=1) for a, b in bins(h)]  # size x [B, W, C]
  cells = [[jnp.mean(r[:, a:b], axis=1) for a, b in bins(w)] for r in rows]  # [B, C] each
  return jnp.stack([jnp.stack(row, axis=1) for row in cells], axis=1)


class AuxHead(nn.Module):
  """An auxiliary classifier ``[B, H, W, C] or [B, F] -> logits float32 [B, output_dim]``.

  Attributes:
    kind: ``linear`` | ``cnn`` | ``mlp``.
    num_heads: task slots (1 = shared head); ``output_dim``: outputs per slot.
    pool: side of the adaptive average pool before the Dense layers (DGL uses 2).
    convs: ``cnn``: number of 3x3 convs; ``width``: their channels (0 = the input's channels).
    hidden: ``mlp``: hidden Dense sizes.
    conv_impl: ``cnn``: the convolutions' lowering (:mod:`lwcl.models.conv`).
    dtype: the computation dtype (the network's, float32 or bfloat16); parameters float32, logits float32.
  """
  kind: str
  num_heads: int
  output_dim: int
  pool: int = 2
  convs: int = 2
  width: int = 0
  hidden: Sequence[int] = (256,)
  conv_impl: str = "native"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, task: jax.Array, train: bool = False) -> jax.Array:
    """Args: ``x`` the block output (float32 or bfloat16); ``task`` int32 ``[B]``; ``train`` selects BatchNorm batch
    statistics (``cnn`` only). Returns logits float32 ``[B, output_dim]`` (not masked).

    Raises:
      ConfigError: unknown kind, or ``cnn`` on a feature vector.
    """
    if self.kind == "cnn":
      if x.ndim != 4:
        raise ConfigError("layerwise.aux_head='cnn' needs feature maps [B, H, W, C], but a local block "
                          "outputs vectors; use 'linear' or 'mlp' for this model")
      width = self.width or x.shape[-1]
      for _ in range(self.convs):
        x = conv(self.conv_impl, width, (3, 3), use_bias=False, dtype=self.dtype)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                                 param_dtype=jnp.float32)(x))
    elif self.kind not in AUX_HEADS:
      raise ConfigError(f"unknown layerwise.aux_head '{self.kind}'; use one of {', '.join(AUX_HEADS)}")
    x = adaptive_avg_pool(x, self.pool) if self.pool > 0 else x
    x = x.reshape(x.shape[0], -1)
    if self.kind == "mlp":
      for h in self.hidden:
        x = nn.relu(nn.Dense(int(h), dtype=self.dtype, param_dtype=jnp.float32)(x))
    return TaskHeads(self.num_heads, self.output_dim, self.dtype, name="head")(x, task)
