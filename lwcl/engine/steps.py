"""Pure train and evaluation steps.

A step is a function of explicit state: ``train_step(state, batch, learning_rate) -> (state, metrics)`` and
``eval_step(params, batch_stats, batch, method_state) -> (correct, count)`` (and the Task-IL hits in
class-incremental scenarios); ``train_steps`` runs several train steps in one compiled loop on batches
gathered on the device. They are built once per experiment and ``jax.jit``-compiled with the state
donated; everything that changes across tasks (method state, task ids, masks indexed by task) is an
argument or part of the state, never a Python constant of the trace.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from lwcl.core.model_fns import ModelFns, task_il_scores
from lwcl.core.state import TrainState


def make_train_step(fns: ModelFns, tx: optax.GradientTransformationExtraArgs, method) -> Callable:
  """Builds ``train_step(state, batch, learning_rate=None) -> (state, metrics)``.

  The method contributes traced hooks (:class:`lwcl.methods.base.Method`): ``train_batch`` (the batch the
  loss is computed on, e.g. ER's minibatch joined by a replay batch) and ``loss_term`` (a term added to the
  loss, e.g. DER's logit matching), each traced only when the method overrides it; ``step_args`` (extra
  arguments for its optax transformation, e.g. reference gradients or importances); and ``after_step`` (its
  state update, e.g. SI's path integral, the episodic memory or a replay buffer's reservoir insert).
  ``learning_rate`` (float32 scalar, this step's value of the task's schedule,
  :class:`lwcl.engine.optim.LearningRates`) goes to ``tx.update`` as an extra argument when given.
  ``metrics`` holds scalar ``loss`` (the differentiated loss, the method's term included) and ``accuracy``
  (on the minibatch).
  """

  own_batch, own_loss = method.overrides("train_batch"), method.overrides("loss_term")

  def objective(params, batch_stats, batch, rng, method_state):
    """The training loss with the method's term (:meth:`Method.loss_term`), or the term alone for a method
    whose term is the whole loss (:attr:`Method.replaces_loss`), and its aux."""
    value, (logits, new_stats) = fns.loss(params, batch_stats, batch, rng, True)
    term = method.loss_term(method_state, params, batch_stats, batch, logits, rng)
    return (term if method.replaces_loss else value + term), (logits, new_stats)

  def train_step(state: TrainState, batch: dict, learning_rate=None):
    rng = jax.random.fold_in(state.rng, state.step)
    step_batch = method.train_batch(state.method_state, batch, rng) if own_batch else batch
    if own_loss:
      grad_fn = jax.value_and_grad(objective, has_aux=True)
      (loss, (logits, new_stats)), grads = grad_fn(state.params, state.batch_stats, step_batch, rng,
                                                   state.method_state)
    else:  # the plain step, traced exactly as before the hook existed
      grad_fn = jax.value_and_grad(fns.loss, has_aux=True)
      (loss, (logits, new_stats)), grads = grad_fn(state.params, state.batch_stats, step_batch, rng, True)
    if own_batch:
      logits = logits[:batch["label"].shape[0]]  # the minibatch's rows (train_batch appends after them)
    args = method.step_args(state.method_state, state.params, state.batch_stats, batch, rng)
    if learning_rate is not None:
      args = dict(args, learning_rate=learning_rate)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, **args)
    params = optax.apply_updates(state.params, updates)
    seen = dict(batch, logits=jax.lax.stop_gradient(logits), rng=rng, batch_stats=state.batch_stats)
    method_state = method.after_step(state.method_state, state.params, params, grads, seen)
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


def make_eval_step(fns: ModelFns, method=None, task_il_masks=None) -> Callable:
  """Builds ``eval_step(params, batch_stats, batch, method_state=None) -> (correct, count)``: float32 scalars
  summed over the batch's real (``mask`` = 1) examples, a prediction being the argmax of the scores.

  The scores are the model's logits, or, for a ``method`` that overrides
  :meth:`~lwcl.methods.base.Method.eval_scores` (iCaRL's nearest mean of exemplars), that hook's scores
  computed from ``method_state``; for every other method ``method_state`` is not read and the step is
  traced exactly as without it.

  With ``task_il_masks`` (class-incremental scenarios: each task's classes, bool ``[max_tasks, O]`` or one
  table per replica ``[R, max_tasks, O]``, :attr:`lwcl.data.scenarios.Scenario.task_il_masks`) the step
  returns ``(correct, count, task_il_correct)``: also the hits of the argmax over the example's task's
  classes alone (:func:`lwcl.core.model_fns.task_il_scores`; Task-IL, Mammoth's ``mask_classes``), of the
  same scores (one forward pass, two argmaxes). Without it the step is traced as before.
  """
  own_scores = method is not None and method.overrides("eval_scores")

  def eval_step(params, batch_stats, batch: dict, method_state=None):
    if own_scores:
      scores = method.eval_scores(method_state, params, batch_stats, batch)
    else:
      scores, _ = fns.logits(params, batch_stats, batch, train=False)
    hit = (jnp.argmax(scores, -1) == batch["label"]).astype(jnp.float32)
    counts = jnp.sum(hit * batch["mask"]), jnp.sum(batch["mask"])
    if task_il_masks is None:
      return counts
    restricted = task_il_scores(scores, task_il_masks, batch["task"])
    task_hit = (jnp.argmax(restricted, -1) == batch["label"]).astype(jnp.float32)
    return counts + (jnp.sum(task_hit * batch["mask"]),)

  return eval_step
