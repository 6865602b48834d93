"""The train state: everything one train step reads and writes (a pytree, donated to each step)."""

from __future__ import annotations

from typing import Any

import flax
import jax


@flax.struct.dataclass
class TrainState:
  """Everything one train step reads and writes.

  Attributes:
    step: int32 scalar, global step count over the whole stream.
    params: model parameters (pytree of float32).
    batch_stats: BatchNorm running statistics (empty dict for models without BatchNorm).
    opt_state: optax state of ``method transformation -> base optimizer``.
    method_state: the continual method's state (importances, anchors, memory, ...); a pytree.
    rng: uint32 ``[2]`` PRNG key; step ``s`` uses ``fold_in(rng, s)``.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  method_state: Any
  rng: jax.Array
