"""LwF, learning without forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017; Mammoth ``models/lwf.py``): the
network at the end of the previous task is kept, and the loss adds ``alpha`` times the distillation of its
outputs on the current task's inputs into the current network's, at temperature ``T``.

With one shared head (class- and domain-incremental) the distillation is Mammoth's: over the outputs of
the classes of the tasks before the current one (``past``), the old and new networks' softmaxes over those
outputs are sharpened or smoothed to the power ``1 / T`` and renormalized (``smooth``), and the loss is the
cross-entropy ``-mean_i sum_c old_ic log new_ic`` (``modified_kl_div``); Li & Hoiem's Eq. 2 with their
``T = 2``. With task-incremental heads (one per task, or one masked to each task's classes) it is Li &
Hoiem's own multi-head setting (Sec. 3, "Learning without Forgetting"): the same distillation for each
finished task ``t`` over the outputs of its head (its classes, for a masked head), the old network's head
``t`` against the new network's head ``t`` on the current inputs, summed over the finished tasks (their
``lambda_o = 1`` per old task, times ``alpha``). The old network's outputs are computed on the images as
stored (no augmentation) in inference mode, as Mammoth precomputes them before each task; the new network's
other heads in training mode on the images of this step's forward pass (its augmentation key).

What differs from Mammoth: no warm-up of the classifier on the new classes before each task, and the
cross-entropy over every output, not only the classes seen so far (as every other method here).
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lwcl.core.model_fns import MASKED_LOGIT, task_masks
from lwcl.core.options import Option
from lwcl.methods.base import Method
from lwcl.methods.importance import copy_tree


@flax.struct.dataclass
class LwFState:
  """State of LwF.

  Attributes:
    old_params, old_batch_stats: the network at the end of the previous task (copies; zeros before the
      first task ends).
    past: float32 ``[O]``, 1 for the outputs of the classes of the finished tasks (the distilled outputs);
      with task-incremental heads ``[max_tasks]``, 1 for the finished tasks (whose heads are distilled).
    alpha, temperature: float32 scalars, ``method.lwf_alpha`` and ``method.lwf_temperature`` (rule 1 of
      :mod:`lwcl.methods.base`: a sweep gives each replica its own).
  """
  old_params: object
  old_batch_stats: object
  past: jax.Array
  alpha: jax.Array
  temperature: jax.Array


def smoothed(probs: jax.Array, temperature, keep: jax.Array) -> jax.Array:
  """Mammoth's ``smooth``: ``p ** (1 / T)`` renormalized over the outputs ``keep`` (bool ``[O]``), 0
  elsewhere. ``probs`` float32 ``[B, O]``."""
  powered = jnp.where(keep, jnp.power(jnp.where(keep, probs, 1.0), 1.0 / temperature), 0.0)
  return powered / jnp.maximum(jnp.sum(powered, axis=-1, keepdims=True), 1e-30)


def distillation(old_logits, new_logits, past, temperature) -> jax.Array:
  """``-mean_i sum_{c in past} smooth(softmax_past(old))_ic * log smooth(softmax_past(new))_ic``: float32
  scalar, 0 when no output is past (Mammoth's ``modified_kl_div(smooth(soft(old[:, :past])),
  smooth(soft(new[:, :past])))``).

  Args:
    old_logits, new_logits: float32 ``[B, O]``; past: float32 ``[O]`` (1: distilled); temperature: ``T``.
  """
  keep = past > 0
  # A finite logit for the outputs left out (exp underflows to exactly 0 beside a kept one), so that no
  # inf or nan reaches the gradient, even with nothing kept (the first task).
  soft = lambda z: jax.nn.softmax(jnp.where(keep, z, MASKED_LOGIT), axis=-1)  # noqa: E731
  old = smoothed(jax.lax.stop_gradient(soft(old_logits)), temperature, keep)
  new = smoothed(soft(new_logits), temperature, keep)
  log_new = jnp.log(jnp.maximum(jnp.where(keep, new, 1.0), 1e-30))
  per_example = -jnp.sum(jnp.where(keep, old * log_new, 0.0), axis=-1)
  return jnp.where(jnp.any(keep), jnp.mean(per_example), 0.0)


class LwF(Method):
  """Learning without forgetting: ``loss = CE(minibatch) + alpha * distillation(old net, new net)`` on the
  minibatch, over the outputs of the classes of the finished tasks with a shared head, or summed over the
  finished tasks' heads with task-incremental heads (:func:`distillation`, :meth:`loss_term`). State:
  :class:`LwFState`.

  Raises (constructor):
    ConfigError: a key out of range.
  """

  OPTIONS = (
      Option("method.lwf_alpha", 1.0, "weight of the distillation term (Mammoth's alpha)", minimum=0.0),
      Option("method.lwf_temperature", 2.0, "distillation temperature T (Li & Hoiem: 2)", minimum=0.0,
             strict=True),
  )
  STATE_HYPER = {"method.lwf_alpha": "alpha", "method.lwf_temperature": "temperature"}

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    # task-incremental heads: one per task, or one masked to each task's classes (Li & Hoiem's setting)
    self.per_task = scenario.num_heads > 1 or not np.all(scenario.label_masks)
    self.output_dim, self.max_tasks = scenario.output_dim, scenario.max_tasks

  def init_state(self, params, batch_stats) -> LwFState:
    zeros = lambda t: jax.tree.map(jnp.zeros_like, t)  # noqa: E731
    return LwFState(old_params=zeros(params), old_batch_stats=zeros(batch_stats),
                    past=jnp.zeros((self.max_tasks if self.per_task else self.output_dim,), jnp.float32),
                    alpha=jnp.asarray(self.options["lwf_alpha"], jnp.float32),
                    temperature=jnp.asarray(self.options["lwf_temperature"], jnp.float32))

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    """The identity: LwF acts through the loss (:meth:`loss_term`)."""
    return optax.with_extra_args_support(optax.identity())

  def loss_term(self, method_state: LwFState, params, batch_stats, batch, logits, rng):
    """``alpha`` times the distillation of the old network into the new one on ``batch``: over the past
    classes' outputs of the shared head, or, with task-incremental heads, summed over the finished tasks
    ``t`` (head ``t``'s outputs; the heads of tasks not finished weigh 0). In layer-wise ``local`` training
    every local block's head is distilled, each block fed the previous one's detached output, so block
    ``k``'s term trains block ``k`` and its head only (its local loss gains it); in ``greedy`` training
    the active block's only (the finished blocks below it run here in training mode, where the greedy loss
    runs them in inference mode: the same outputs without BatchNorm)."""
    state = method_state
    if not self.per_task and not self.fns.is_local:  # the step's own logits: the network's, not detached
      old = self.fns.logits(state.old_params, state.old_batch_stats, batch, train=False)[0]
      return state.alpha * distillation(old, logits, state.past, state.temperature)

    def distilled(b, keep):  # every local term: old network's output k against the new one's
      old = self.fns.local_outputs(state.old_params, state.old_batch_stats, b, train=False)
      new = self.fns.local_outputs(params, batch_stats, b, train=True, rng=rng)
      return self.fns.local_sum(batch, [distillation(o, n, keep, state.temperature) for o, n in zip(old, new)])

    if not self.per_task:
      return state.alpha * distilled(batch, state.past)

    def head(t):  # task t's head on this batch, over the outputs task t may predict
      keep = task_masks(self.fns.label_masks, jnp.full((1,), t, jnp.int32)).reshape(-1).astype(jnp.float32)
      return distilled({**batch, "task": jnp.full_like(batch["task"], t)}, keep)

    return state.alpha * jnp.sum(jax.vmap(head)(jnp.arange(self.max_tasks)) * state.past)

  def end_task(self, method_state: LwFState, params, batch_stats, task, data):
    """Keeps a copy of the network, and marks the task's classes (task-incremental heads: the task) as
    past, distilled from now on."""
    if self.per_task:
      past = jnp.asarray(method_state.past).at[task].set(1.0)
      return method_state.replace(old_params=copy_tree(params), old_batch_stats=copy_tree(batch_stats),
                                  past=past)
    classes = np.zeros((self.output_dim,), np.float32)
    classes[np.unique(np.asarray(data.labels))] = 1.0
    past = jnp.maximum(method_state.past, jnp.asarray(classes))
    return method_state.replace(old_params=copy_tree(params), old_batch_stats=copy_tree(batch_stats), past=past)
