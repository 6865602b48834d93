"""Greedy (sequential) layer-wise training: which local block trains when, and the optimizer wrapper
that moves only that block (Belilovsky et al., *Greedy Layerwise Learning Can Scale to ImageNet*, ICML
2019). The run's optimizer factory that uses it is :func:`lwcl.engine.optim.optimizer`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lwcl.core.model_fns import ModelFns
from lwcl.errors import ConfigError
from lwcl.layerwise.fns import LayerwiseFns


def check_schedule(fns: ModelFns, epochs_per_task: int) -> None:
  """Greedy: ``greedy_epochs_per_block * K`` must equal ``train.epochs_per_task`` when set.

  Raises:
    ConfigError: the two disagree.
  """
  if fns.is_greedy and fns.greedy_epochs_per_block:
    need = fns.greedy_epochs_per_block * fns.num_blocks
    if need != epochs_per_task:
      raise ConfigError(f"greedy mode trains {fns.num_blocks} local blocks x "
                        f"layerwise.greedy_epochs_per_block={fns.greedy_epochs_per_block} = {need} epochs, "
                        f"but train.epochs_per_task={epochs_per_task}; set --config.train.epochs_per_task="
                        f"{need} (or greedy_epochs_per_block=0 to split the task's epochs evenly)")


def greedy_phase(fns: ModelFns, task_step: int, steps_per_epoch: int, epochs: int) -> int:
  """The local block greedy mode trains at step ``task_step`` of a task (host int).

  With ``greedy_epochs_per_block = E > 0``: ``min(epoch // E, K - 1)``; with 0, the task's
  ``steps_per_epoch * epochs`` steps are split evenly: ``min(task_step * K // total, K - 1)``.
  """
  K = fns.num_blocks
  if fns.greedy_epochs_per_block:
    return min(task_step // steps_per_epoch // fns.greedy_epochs_per_block, K - 1)
  return min(task_step * K // max(1, steps_per_epoch * epochs), K - 1)


def with_phase(fns: ModelFns, batch: dict, task_step: int, steps_per_epoch: int, epochs: int) -> dict:
  """``batch`` plus ``phase`` (int32 ``[B]``, :func:`greedy_phase`) in greedy mode; otherwise ``batch``."""
  if not fns.is_greedy:
    return batch
  b = len(batch["label"])
  return dict(batch, phase=np.full((b,), greedy_phase(fns, task_step, steps_per_epoch, epochs), np.int32))


class GreedyState(NamedTuple):
  """State of :func:`greedy_transformation`: ``active`` int32 scalar (last trained local block, -1
  before the first step), the method transformation's and the base optimizer's states."""
  active: jax.Array
  method: Any
  base: Any


def greedy_transformation(fns: "LayerwiseFns", method_tx, base_tx) -> optax.GradientTransformationExtraArgs:
  """``method_tx -> base_tx`` for greedy mode: only the active local block moves.

  The active block is the one whose raw gradient is non-zero (the greedy loss gives every other
  parameter an exactly zero gradient). Updates of all other blocks are zeroed after the base optimizer,
  so weight decay and momentum cannot move frozen (or not yet trained) blocks: their parameters stay
  bit-identical. When the active block changes, the base optimizer's state (momentum, schedule count)
  restarts, so every block is trained with a fresh learning-rate schedule as in sequential greedy
  training; the method transformation's state is kept.
  """
  method_tx = optax.with_extra_args_support(method_tx)
  base_tx = optax.with_extra_args_support(base_tx)

  def init(params):
    return GreedyState(jnp.int32(-1), method_tx.init(params), base_tx.init(params))

  def update(grads, state, params=None, **extra):
    K = fns.num_blocks
    moving = jnp.zeros((K,), jnp.int32)
    for name, g in grads.items():
      for leaf in jax.tree_util.tree_leaves(g):
        moving = moving.at[fns.block_of(name)].max(jnp.any(leaf != 0).astype(jnp.int32))
    active = jnp.where(jnp.any(moving), jnp.argmax(moving).astype(jnp.int32), state.active)
    m_updates, m_state = method_tx.update(grads, state.method, params, **extra)
    fresh = base_tx.init(params)
    restart = active != state.active
    base_state = jax.tree_util.tree_map(lambda f, o: jnp.where(restart, f, o), fresh, state.base)
    updates, base_state = base_tx.update(m_updates, base_state, params, **extra)
    updates = {name: jax.tree_util.tree_map(
        lambda u, k=fns.block_of(name): jnp.where(active == k, u, jnp.zeros_like(u)), u_tree)
        for name, u_tree in updates.items()}
    return updates, GreedyState(active, m_state, base_state)

  return optax.GradientTransformationExtraArgs(init, update)
