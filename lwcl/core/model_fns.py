"""The model functions every step is built from: :class:`ModelFns` (forward pass, masked logits, loss).

Layer-wise training (:class:`lwcl.layerwise.fns.LayerwiseFns`) subclasses it; the methods and the engine
read only this interface.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

# Logit given to outputs a task may not predict (masked task-incremental heads). Finite, so a masked
# output never turns a loss into inf or nan.
MASKED_LOGIT = -1e9


def mask_logits(logits: jax.Array, label_masks: np.ndarray, task: jax.Array) -> jax.Array:
  """``logits`` float ``[B, O]`` with the outputs task ``task[i]`` (int32 ``[B]``) may not predict set to
  ``MASKED_LOGIT``; ``label_masks`` bool ``[max_tasks, O]``."""
  return jnp.where(jnp.asarray(label_masks)[task], logits, MASKED_LOGIT)


def cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """Mean softmax cross-entropy (nats) of ``logits`` ``[B, O]`` against int labels ``[B]``, weighted by
  ``weights`` ``[B]`` (e.g. the evaluation padding ``mask``) when given."""
  per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if weights is None:
    return jnp.mean(per_example)
  return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)


@dataclasses.dataclass(frozen=True)
class ModelFns:
  """The model's forward pass and loss, closed over the model, preprocessing and label masks.

  Attributes:
    model: a Flax module ``model(x, task, train) -> logits``.
    preprocess: uint8 images -> normalized float32 (with augmentation when given a key).
    label_masks: bool ``[max_tasks, output_dim]``; outputs a task may not predict get ``MASKED_LOGIT``.
  """
  model: nn.Module
  preprocess: Any  # lwcl.data.pipeline.Preprocessor: called as preprocess(images, rng); .augments
  label_masks: np.ndarray

  # Layer-wise capabilities, typed (:class:`lwcl.layerwise.fns.LayerwiseFns` overrides them), so that callers
  # never test class names or mode strings. A plain network is one block trained end to end.
  @property
  def is_layerwise(self) -> bool:
    """Whether the network is cut into local blocks with auxiliary heads (any ``layerwise.mode``)."""
    return False

  @property
  def is_local(self) -> bool:
    """Whether training minimizes local losses (``layerwise.mode`` local or greedy), not one loss."""
    return False

  @property
  def is_greedy(self) -> bool:
    """Whether one local block trains at a time (greedy mode: batches carry a ``phase`` entry)."""
    return False

  @property
  def local_blocks(self) -> int:
    """``K``, the number of local blocks (1 for a plain network)."""
    return 1

  def init(self, rng: jax.Array, image_shape: tuple) -> tuple[Any, Any]:
    """Initial ``(params, batch_stats)`` (float32 pytrees) from the PRNG key ``rng`` for images of
    ``image_shape`` (H, W, C): :meth:`init_variables` compiled as one program per image shape (run
    eagerly, Flax's initializers would compile one small program per parameter)."""
    return self._compiled_init(rng, tuple(int(d) for d in image_shape))

  @functools.cached_property
  def _compiled_init(self):
    return jax.jit(self.init_variables, static_argnums=1)

  def init_variables(self, rng: jax.Array, image_shape: tuple) -> tuple[Any, Any]:
    """The network's initial ``(params, batch_stats)`` for images of ``image_shape`` (H, W, C); traceable
    (:meth:`init` runs it compiled)."""
    x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
    variables = self.model.init(rng, x, jnp.zeros((1,), jnp.int32), train=False)
    return variables["params"], variables.get("batch_stats", {})

  def logits(self, params, batch_stats, batch: dict, train: bool, rng: jax.Array | None = None):
    """Masked logits ``[B, output_dim]`` and the new BatchNorm statistics.

    ``rng`` enables augmentation (training only). In ``train`` mode BatchNorm uses batch statistics and
    the returned ``batch_stats`` are updated; otherwise they are returned unchanged.
    """
    x = self.preprocess(batch["image"], rng if train and self.preprocess.augments else None)
    variables = {"params": params, "batch_stats": batch_stats}
    if train:
      logits, updates = self.model.apply(variables, x, batch["task"], train=True, mutable=["batch_stats"])
      new_stats = updates.get("batch_stats", batch_stats)
    else:
      logits, new_stats = self.model.apply(variables, x, batch["task"], train=False), batch_stats
    return mask_logits(logits, self.label_masks, batch["task"]), new_stats

  def loss(self, params, batch_stats, batch: dict, rng: jax.Array | None = None, train: bool = True):
    """Mean cross-entropy over the batch (weighted by ``batch['mask']`` when present).

    Returns ``(loss, (logits, new_batch_stats))``, the shape ``jax.value_and_grad(has_aux=True)`` wants.
    """
    logits, new_stats = self.logits(params, batch_stats, batch, train, rng)
    return cross_entropy(logits, batch["label"], batch.get("mask")), (logits, new_stats)
