"""Base optimizers and learning-rate schedules (optax), from ``config.optimizer``, and the run's optimizer
(:func:`optimizer`: the method's transformation, then the base optimizer; greedy-aware).

**Schedules per task.** A task stream's tasks may differ in size (joint training grows, scenarios may
subsample), so a step or cosine schedule is sized from each task's own number of steps. The learning rate
is therefore not part of the compiled optimizer: :class:`LearningRates` evaluates the schedule on the
host once per task (an array, one value per step), and the train step passes each step's value to the
base optimizer as the extra argument ``learning_rate`` (:func:`scale_by_learning_rate_arg`). One
compilation serves every task and every schedule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lwcl.config import sections as config_sections
from lwcl.core.model_fns import ModelFns
from lwcl.errors import ConfigError
from lwcl.layerwise.greedy import check_schedule, greedy_phase, greedy_transformation

OPTIONS = config_sections.OPTIMIZER  # declared in lwcl.config.sections (the validator cannot import lwcl.engine)


def learning_rate_schedule(opt_config, steps_per_epoch: int, epochs: int) -> optax.Schedule:
  """The learning rate as a function of the step inside one task of ``steps_per_epoch * epochs`` steps.

  ``constant``; ``step`` (multiply by ``decay_factor`` every ``decay_every_epochs`` epochs, e.g. the
  decoupled-greedy recipe 0.1 x 0.2 every 15 epochs); ``cosine`` (cosine decay to 0 over ``epochs``).
  ``warmup_epochs`` adds a linear warm-up from 0. The schedule restarts at every task (and, in greedy
  mode, at every local block); ``optimizer.reset_each_task`` decides only whether the optimizer's moments
  restart too.

  Raises:
    ConfigError: unknown schedule.
  """
  lr = float(opt_config.learning_rate)
  total = max(1, steps_per_epoch * epochs)
  name = opt_config.schedule
  if name == "constant":
    sched = optax.constant_schedule(lr)
  elif name == "step":
    every = max(1, int(opt_config.decay_every_epochs * steps_per_epoch))
    boundaries = {k * every: float(opt_config.decay_factor) for k in range(1, total // every + 1)}
    sched = optax.piecewise_constant_schedule(lr, boundaries)
  elif name == "cosine":
    sched = optax.cosine_decay_schedule(lr, total)
  else:
    raise ConfigError(f"unknown optimizer.schedule '{name}'; use constant, step or cosine")
  warm = int(opt_config.warmup_epochs * steps_per_epoch)
  if warm > 0:
    sched = optax.join_schedules([optax.linear_schedule(0.0, lr, warm), sched], [warm])
  return sched


def scale_by_learning_rate_arg(default: float) -> optax.GradientTransformationExtraArgs:
  """``updates * -learning_rate``, the learning rate given to ``update`` as an extra argument.

  ``update(updates, state, params=None, *, learning_rate=None, **ignored)``: ``learning_rate`` is a float32
  scalar (traced; each step's value from :class:`LearningRates`), or None for ``default``. The same as
  ``optax.scale_by_learning_rate`` with a constant, with the value supplied per step. State:
  ``optax.EmptyState``.
  """
  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, learning_rate=None, **extra_args):
    del params, extra_args
    lr = default if learning_rate is None else learning_rate
    return jax.tree.map(lambda u: (u * -lr).astype(u.dtype), updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def base_optimizer(opt_config) -> optax.GradientTransformationExtraArgs:
  """SGD (with momentum, optional Nesterov) or Adam/AdamW, with weight decay and gradient clipping, whose
  learning rate is the ``learning_rate`` extra argument of ``update`` (``optimizer.learning_rate`` when
  absent).

  The chains are optax's own (``optax.sgd``: ``trace``; ``optax.adam``: ``scale_by_adam``;
  ``optax.adamw``: ``scale_by_adam`` then decoupled ``add_decayed_weights``) with the last
  ``scale_by_learning_rate`` replaced by :func:`scale_by_learning_rate_arg`. Weight decay for ``sgd`` and
  ``adam`` is added to the gradient (L2, as PyTorch's ``weight_decay``); ``adamw`` decouples it.
  ``grad_clip_norm > 0`` clips by global norm first; ``grad_clip_value > 0`` then clips every element to
  ``[-v, v]`` (``optax.clip``; PyTorch's ``clip_grad_value_`` before ``optimizer.step()``, as Mammoth's SI
  does), before weight decay and momentum.

  Raises:
    ConfigError: unknown optimizer.
  """
  name = opt_config.name
  parts = []
  if opt_config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(float(opt_config.grad_clip_norm)))
  if opt_config.grad_clip_value > 0:
    parts.append(optax.clip(float(opt_config.grad_clip_value)))
  wd = float(opt_config.weight_decay)
  b1, b2, eps = float(opt_config.b1), float(opt_config.b2), float(opt_config.eps)
  if name == "sgd":
    if wd:
      parts.append(optax.add_decayed_weights(wd))
    if opt_config.momentum:
      parts.append(optax.trace(decay=float(opt_config.momentum), nesterov=bool(opt_config.nesterov)))
  elif name == "adam":
    if wd:
      parts.append(optax.add_decayed_weights(wd))
    parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
  elif name == "adamw":
    parts += [optax.scale_by_adam(b1=b1, b2=b2, eps=eps), optax.add_decayed_weights(wd)]
  else:
    raise ConfigError(f"unknown optimizer.name '{name}'; use sgd, adam or adamw")
  parts.append(scale_by_learning_rate_arg(float(opt_config.learning_rate)))
  return optax.chain(*parts)


def optimizer(fns: ModelFns, method_tx, opt_config, epochs: int):
  """The run's transformation: ``optax.chain(method_tx, base_optimizer(...))`` (unchanged from plain
  training) except in greedy mode, where :func:`~lwcl.layerwise.greedy.greedy_transformation` wraps the
  two (the base optimizer's moments restart at every local block).

  Args:
    fns: the run's model functions (:class:`~lwcl.core.model_fns.ModelFns`, or
      :class:`~lwcl.layerwise.fns.LayerwiseFns`); ``method_tx``: the continual method's transformation;
      ``opt_config``: ``config.optimizer``; ``epochs``: ``train.epochs_per_task``.
  Raises:
    ConfigError: an invalid optimizer, or a greedy schedule that disagrees with ``epochs``
      (:func:`~lwcl.layerwise.greedy.check_schedule`).
  """
  if fns.is_greedy:
    check_schedule(fns, epochs)
    tx = greedy_transformation(fns, method_tx, base_optimizer(opt_config))
  else:
    tx = optax.chain(method_tx, base_optimizer(opt_config))
  # One compiled program for the initial state; run eagerly, optax builds it leaf by leaf (a small
  # compilation per parameter shape).
  return tx._replace(init=jax.jit(tx.init))


class LearningRates:
  """Each task's learning rates, one per step, from ``config.optimizer``'s schedule sized by that task.

  In greedy mode the schedule runs per local block: block ``k`` (:func:`~lwcl.layerwise.greedy_phase`)
  restarts it at its first step and spans ``greedy_epochs_per_block`` epochs (or ``epochs // K``).

  Args:
    fns: the run's model functions; opt_config: ``config.optimizer``; epochs: ``train.epochs_per_task``.
  Raises:
    ConfigError: an unknown schedule.
  """

  def __init__(self, fns: ModelFns, opt_config, epochs: int):
    self.fns, self.config, self.epochs = fns, opt_config, epochs
    learning_rate_schedule(opt_config, 1, 1)  # unknown schedules fail here, before training

  def for_task(self, steps_per_epoch: int) -> np.ndarray:
    """float32 ``[steps_per_epoch * epochs]``: the learning rate of every step of a task."""
    total = steps_per_epoch * self.epochs
    steps = np.arange(total)
    if not self.fns.is_greedy:
      return self._evaluate(steps_per_epoch, self.epochs, steps)
    K = self.fns.num_blocks
    block_epochs = self.fns.greedy_epochs_per_block or max(1, self.epochs // K)
    phase = np.asarray([greedy_phase(self.fns, s, steps_per_epoch, self.epochs) for s in steps])
    start = np.asarray([np.argmax(phase == p) for p in range(K)])  # first step of each block
    return self._evaluate(steps_per_epoch, block_epochs, steps - start[phase])

  def _evaluate(self, steps_per_epoch: int, epochs: int, counts: np.ndarray) -> np.ndarray:
    schedule = learning_rate_schedule(self.config, steps_per_epoch, epochs)
    return np.asarray(jax.vmap(schedule)(jnp.asarray(counts, jnp.int32)), np.float32)
