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


# The name of the replicas' vmapped axis (lwcl.engine.replicas.Replicas.vmap). A table of label masks per
# replica is indexed by the running replica's position on it (jax.lax.axis_index), as a per-device constant
# is under shard_map: the replicas' masks are data of one program, not constants of R programs.
REPLICA_AXIS = "replicas"


def replica_max(x: jax.Array) -> jax.Array:
  """The maximum of ``x`` over the replicas' vmapped axis (:data:`REPLICA_AXIS`), as one unbatched value: a
  loop bound or branch predicate computed from it stays a real loop or branch inside the replicas' vmapped
  program (``jax.lax.pmax`` over a vmapped axis returns an unmapped value), where a per-replica value would
  turn ``lax.cond`` into a select of both branches and a loop into one running every replica's longest
  trip. Outside that program (one replica, not batched) ``x`` itself.

  Args:
    x: a scalar array (any dtype ``jax.lax.pmax`` accepts), e.g. int32, the current task's index.
  Returns:
    An array of ``x``'s shape and dtype.
  """
  try:
    return jax.lax.pmax(x, REPLICA_AXIS)
  except NameError:  # JAX's unbound axis name: not inside the replicas' vmap
    return x


def task_masks(label_masks, task: jax.Array) -> jax.Array:
  """Which outputs each example's task may predict: bool ``[B, O]`` for ``task`` int32 ``[B]``.

  Args:
    label_masks: bool ``[max_tasks, O]``, or ``[R, max_tasks, O]``: one table per replica (task orders
      under masked heads, whose masks follow each replica's order), read inside the replicas' vmapped
      program at the running replica's index on the axis :data:`REPLICA_AXIS`.
    task: int32 ``[B]``, each example's task (its position in the stream).
  Raises:
    NameError: a per-replica table is read outside the replicas' vmapped program (JAX's unbound axis
      name error); use :meth:`ModelFns.of_replica` there.
  """
  masks = jnp.asarray(label_masks)
  if masks.ndim == 3:
    masks = masks[jax.lax.axis_index(REPLICA_AXIS)]
  return masks[task]


def mask_logits(logits: jax.Array, label_masks, task: jax.Array) -> jax.Array:
  """``logits`` float ``[B, O]`` with the outputs task ``task[i]`` (int32 ``[B]``) may not predict set to
  ``MASKED_LOGIT``; ``label_masks`` as in :func:`task_masks`."""
  return jnp.where(task_masks(label_masks, task), logits, MASKED_LOGIT)


def task_il_scores(scores: jax.Array, class_masks, task: jax.Array) -> jax.Array:
  """``scores`` float ``[B, O]`` with the outputs outside task ``task[i]``'s classes (int32 ``[B]``) set to
  ``-inf``: their argmax is the Task-IL prediction, the task identity given at test time (Mammoth's
  ``mask_classes`` in ``utils/training.py``). ``-inf``, not ``MASKED_LOGIT``: no loss reads these scores,
  and a task's classes stay above the others even when a method scores them ``MASKED_LOGIT`` (iCaRL's
  classes without exemplars).

  Args:
    scores: float ``[B, O]``, logits or a method's evaluation scores.
    class_masks: bool ``[max_tasks, O]`` (:attr:`lwcl.data.scenarios.Scenario.task_il_masks`), or one
      table per replica ``[R, max_tasks, O]`` (task orders), read as :func:`task_masks` reads label masks.
    task: int32 ``[B]``, each example's task.
  """
  return jnp.where(task_masks(class_masks, task), scores, -jnp.inf)


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
    label_masks: bool ``[max_tasks, output_dim]``; outputs a task may not predict get ``MASKED_LOGIT``. Or
      ``[R, max_tasks, output_dim]``, one table per replica (:func:`task_masks`); :meth:`of_replica`
      gives one replica's functions, for the host-side hooks outside the vmapped program.
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

  @property
  def masks_per_replica(self) -> bool:
    """Whether :attr:`label_masks` holds one table per replica (``[R, max_tasks, O]``)."""
    return np.ndim(self.label_masks) == 3

  def of_replica(self, r: int) -> "ModelFns":
    """Replica ``r``'s functions: these, with replica ``r``'s table of label masks when there is one per
    replica (the same object otherwise)."""
    return dataclasses.replace(self, label_masks=self.label_masks[r]) if self.masks_per_replica else self

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

  def logits(self, params, batch_stats, batch: dict, train: bool, rng: jax.Array | None = None,
             augment: bool | None = None):
    """Masked logits ``[B, output_dim]`` and the new BatchNorm statistics.

    ``rng`` enables augmentation in ``train`` mode, or in either mode with ``augment=True`` (the images a
    train step with the same ``rng`` sees, e.g. for a kept network in inference mode: iCaRL's targets). In
    ``train`` mode BatchNorm uses batch statistics and the returned ``batch_stats`` are updated; otherwise
    they are returned unchanged.
    """
    augment = train if augment is None else augment
    x = self.preprocess(batch["image"], rng if augment and self.preprocess.augments else None)
    variables = {"params": params, "batch_stats": batch_stats}
    if train:
      logits, updates = self.model.apply(variables, x, batch["task"], train=True, mutable=["batch_stats"])
      new_stats = updates.get("batch_stats", batch_stats)
    else:
      logits, new_stats = self.model.apply(variables, x, batch["task"], train=False), batch_stats
    return mask_logits(logits, self.label_masks, batch["task"]), new_stats

  def local_outputs(self, params, batch_stats, batch: dict, train: bool, rng: jax.Array | None = None,
                    augment: bool | None = None) -> list:
    """The outputs a method's own loss term trains through, one per local term: here the network's masked
    logits, ``[logits]`` (float32 ``[B, O]``; :meth:`logits` with ``train``, ``rng`` and ``augment``). Layer-wise local
    training gives every local block head's, each block fed the previous one's detached output
    (:meth:`lwcl.layerwise.fns.LayerwiseFns.local_outputs`), so that a term on output ``k`` trains block
    ``k`` alone, as its local loss does; weigh them with :meth:`local_weights`."""
    return [self.logits(params, batch_stats, batch, train, rng, augment)[0]]

  def local_weights(self, batch: dict) -> jax.Array:
    """float32 ``[len(local_outputs)]``: the weight of each of :meth:`local_outputs`' terms in this step
    (here ``[1]``; greedy layer-wise training: 1 for the active block, 0 for the others)."""
    del batch
    return jnp.ones((1,), jnp.float32)

  def local_sum(self, batch: dict, terms: list) -> jax.Array:
    """A method's local terms summed with :meth:`local_weights`: float32 scalar from ``terms``, one float32
    scalar per output of :meth:`local_outputs` (in their order)."""
    return jnp.sum(self.local_weights(batch) * jnp.stack(terms))

  def features(self, params, batch_stats, batch: dict) -> jax.Array:
    """The network's read-out before the heads (its penultimate features) in inference mode: float32
    ``[B, F]`` for ``batch['image']`` (no augmentation)."""
    x = self.preprocess(batch["image"], None)
    return self.model.apply({"params": params, "batch_stats": batch_stats}, x, train=False,
                            method="features")

  def loss(self, params, batch_stats, batch: dict, rng: jax.Array | None = None, train: bool = True):
    """Mean cross-entropy over the batch (weighted by ``batch['mask']`` when present).

    Returns ``(loss, (logits, new_batch_stats))``, the shape ``jax.value_and_grad(has_aux=True)`` wants.
    """
    logits, new_stats = self.logits(params, batch_stats, batch, train, rng)
    return cross_entropy(logits, batch["label"], batch.get("mask")), (logits, new_stats)
