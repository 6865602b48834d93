"""Local blocks of a :class:`~lwcl.models.network.Network`: block output shapes and ``layerwise.cuts``.

``parse_cuts`` turns the config's cut specification into the first network block of every local block
(see :mod:`lwcl.layerwise` for the training modes that use them).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from lwcl.errors import ConfigError
from lwcl.models.network import Network
from lwcl.models.resnet import Stem


def block_output_shapes(model: Network, image_shape: Sequence[int], batch: int = 1) -> list:
  """Shape of every network block's output (``jax.eval_shape``, nothing is computed).

  Args:
    model: the network; ``image_shape``: (H, W, C) of one input; ``batch``: leading dimension.
  Returns:
    A list of ``N`` shape tuples, one per entry of ``model.blocks``.
  """
  x = jax.ShapeDtypeStruct((batch,) + tuple(image_shape), jnp.float32)
  shapes = []
  for block in model.blocks:
    variables = jax.eval_shape(lambda r, a, b=block: b.init(r, a, False), jax.random.PRNGKey(0), x)
    x = jax.eval_shape(lambda v, a, b=block: b.apply(v, a, False), variables, x)
    shapes.append(tuple(x.shape))
  return shapes


def parse_cuts(cuts: str, model: Network, image_shape: Sequence[int]) -> tuple:
  """First network block of every local block, from ``layerwise.cuts``.

  * ``block``: every network block is a local block; a leading ResNet stem joins the first residual
    block (ResNet-20: 9 local blocks, ResNet-110: 54).
  * ``stage``: maximal runs of blocks with the same output channel count (CIFAR ResNets: the 3 stages,
    the stem joining stage 1).
  * ``even:K``: the blocks after the stem split into ``K`` contiguous groups of (nearly) equal length, the
    stem joining the first (ResNet-110, ``even:9``: 9 local blocks of 6 residual blocks).
  * ``i,j,...``: explicit, strictly increasing indices in ``1 .. N-1`` of the network blocks that start
    a new local block (``model.blocks[i]``; index 0 is the stem of a ResNet).

  Returns:
    ``starts``: strictly increasing int tuple, ``starts[0] == 0``; ``K = len(starts)``.
  Raises:
    ConfigError: an unknown preset, bad indices, or more local blocks than network blocks.
  """
  n = len(model.blocks)
  first = 1 if n > 1 and isinstance(model.blocks[0], Stem) else 0
  spec = str(cuts).strip()
  if spec == "block":
    return (0,) + tuple(range(first + 1, n))
  if spec == "stage":
    channels = [s[-1] for s in block_output_shapes(model, image_shape)]
    return (0,) + tuple(i for i in range(1, n) if channels[i] != channels[i - 1])
  if spec.startswith("even:"):
    try:
      k = int(spec[5:])
    except ValueError:
      k = 0
    m = n - first
    if not 1 <= k <= m:
      raise ConfigError(f"layerwise.cuts '{spec}' needs K in 1..{m} (blocks after the stem); fix "
                        "--config.layerwise.cuts")
    return (0,) + tuple(first + (j * m) // k for j in range(1, k))
  try:
    idx = tuple(int(v) for v in spec.strip("()[] ").split(",") if v.strip())
  except ValueError:
    raise ConfigError(f"layerwise.cuts '{spec}' is not block, stage, even:K or comma-separated block "
                      "indices; fix --config.layerwise.cuts") from None
  if any(b <= a for a, b in zip(idx, idx[1:])) or (idx and (idx[0] < 1 or idx[-1] > n - 1)):
    raise ConfigError(f"layerwise.cuts indices must increase strictly within 1..{n - 1} (the network "
                      f"has {n} blocks), got {spec}; fix --config.layerwise.cuts")
  return (0,) + idx
