"""Pure train and evaluation steps.

A step is a function of explicit state: ``train_step(state, batch, learning_rate) -> (state, metrics)`` and
``eval_step(params, batch_stats, batch) -> (correct, count)``; ``train_steps`` runs several train steps in
one compiled loop on batches gathered on the device. They are built once per experiment and
``jax.jit``-compiled with the state donated; everything that changes across tasks (method state, task
ids, masks indexed by task) is an argument or part of the state, never a Python constant of the trace.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lwcl.data.pipeline import Preprocessor

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


@dataclasses.dataclass(frozen=True)
class ModelFns:
  """The model's forward pass and loss, closed over the model, preprocessing and label masks.

  Attributes:
    model: a Flax module ``model(x, task, train) -> logits``.
    preprocess: uint8 images -> normalized float32 (with augmentation when given a key).
    label_masks: bool ``[max_tasks, output_dim]``; outputs a task may not predict get ``MASKED_LOGIT``.
  """
  model: nn.Module
  preprocess: Preprocessor
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


def make_train_step(fns: ModelFns, tx: optax.GradientTransformationExtraArgs, method) -> Callable:
  """Builds ``train_step(state, batch, learning_rate=None) -> (state, metrics)``.

  The method contributes two traced hooks: ``step_args`` (extra arguments for its optax
  transformation, e.g. reference gradients or importances), and ``after_step`` (its state update,
  e.g. SI's path integral or the episodic memory). ``learning_rate`` (float32 scalar, this step's value
  of the task's schedule, :class:`lwcl.optim.LearningRates`) goes to ``tx.update`` as an extra argument
  when given. ``metrics`` holds scalar ``loss`` and ``accuracy``.
  """

  def train_step(state: TrainState, batch: dict, learning_rate=None):
    rng = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(fns.loss, has_aux=True)
    (loss, (logits, new_stats)), grads = grad_fn(state.params, state.batch_stats, batch, rng, True)
    args = method.step_args(state.method_state, state.params, state.batch_stats, batch, rng)
    if learning_rate is not None:
      args = dict(args, learning_rate=learning_rate)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, **args)
    params = optax.apply_updates(state.params, updates)
    method_state = method.after_step(state.method_state, state.params, params, grads, batch)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=new_stats,
                              opt_state=opt_state, method_state=method_state)
    return new_state, {"loss": loss, "accuracy": accuracy}

  return train_step


def make_train_steps(fns: ModelFns, tx: optax.GradientTransformationExtraArgs, method,
                     batch_sharding: Any = None) -> Callable:
  """Builds ``train_steps(state, data, steps, count) -> (state, losses)``: up to ``K`` train steps in one
  compiled loop, each on a batch gathered on the device from data placed there once.

  Step ``i < count`` is :func:`make_train_step`'s step on the batch ``{k: data[k][steps['index'][i]]}``
  (plus ``phase``, filled with ``steps['phase'][i]``, when ``steps`` has it: greedy mode) with learning
  rate ``steps['learning_rate'][i]``; steps ``count .. K - 1`` are padding and do not run. ``count`` is a
  traced argument, so every dispatch length ``1 .. K`` shares one compiled program (an XLA while loop).
  On CPU, XLA does not lower the weight-gradient convolutions inside a loop body to its fast (Eigen)
  kernels, so convolutional models train several times slower this way there; MLPs gain.

  Args of ``train_steps``:
    state: :class:`TrainState`.
    data: ``{'image': uint8 [N, H, W, C], 'label': int32 [N], 'task': int32 [N]}`` (a task's training
      data, on the device).
    steps: ``{'index': int32 [K, B], 'learning_rate': float32 [K]}``, optionally ``'phase': int32 [K]``.
    count: int32 scalar in ``[0, K]``: the steps to run.
  Returns of ``train_steps``: the state after ``count`` steps and the losses float32 ``[K]`` (0 for the
  padding steps).

  Args:
    fns, tx, method: as in :func:`make_train_step`.
    batch_sharding: a sharding for the gathered batch (e.g. split over devices, like the one-step path's
      input batch); None leaves the layout to the compiler.
  """
  train_step = make_train_step(fns, tx, method)

  def train_steps(state: TrainState, data: dict, steps: dict, count):
    def body(i, carry):
      state, losses = carry
      index = steps["index"][i]
      batch = {k: jnp.take(v, index, axis=0, mode="clip") for k, v in data.items()}
      if "phase" in steps:
        batch["phase"] = jnp.full(index.shape, steps["phase"][i], jnp.int32)
      if batch_sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      state, metrics = train_step(state, batch, steps["learning_rate"][i])
      return state, losses.at[i].set(metrics["loss"].astype(jnp.float32))

    losses = jnp.zeros(steps["learning_rate"].shape, jnp.float32)
    return jax.lax.fori_loop(0, count, body, (state, losses))

  return train_steps


def make_eval_step(fns: ModelFns) -> Callable:
  """Builds ``eval_step(params, batch_stats, batch) -> (correct, count)``: float32 scalars summed over the
  batch's real (``mask`` = 1) examples."""

  def eval_step(params, batch_stats, batch: dict):
    logits, _ = fns.logits(params, batch_stats, batch, train=False)
    hit = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return jnp.sum(hit * batch["mask"]), jnp.sum(batch["mask"])

  return eval_step
