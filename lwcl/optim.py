"""Base optimizers and learning-rate schedules (optax), from ``config.optimizer``, and the run's optimizer
(:func:`optimizer`: the method's transformation, then the base optimizer; greedy-aware)."""

from __future__ import annotations

import optax

from lwcl.errors import ConfigError
from lwcl.layerwise.fns import LayerwiseFns
from lwcl.layerwise.greedy import check_schedule, greedy_transformation
from lwcl.train import ModelFns


def learning_rate_schedule(opt_config, steps_per_epoch: int, epochs: int) -> optax.Schedule:
  """The learning rate as a function of the optimizer's step count.

  ``constant``; ``step`` (multiply by ``decay_factor`` every ``decay_every_epochs`` epochs, e.g. the
  decoupled-greedy recipe 0.1 x 0.2 every 15 epochs); ``cosine`` (cosine decay to 0 over ``epochs``).
  ``warmup_epochs`` adds a linear warm-up from 0. With ``reset_each_task`` the count restarts at every task,
  so the schedule runs per task.

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


def base_optimizer(opt_config, steps_per_epoch: int, epochs: int) -> optax.GradientTransformation:
  """SGD (with momentum, optional Nesterov) or Adam/AdamW, with weight decay and gradient clipping.

  Weight decay for ``sgd`` and ``adam`` is added to the gradient (L2, as PyTorch's ``weight_decay``);
  ``adamw`` decouples it. ``grad_clip_norm > 0`` clips by global norm first.

  Raises:
    ConfigError: unknown optimizer.
  """
  lr = learning_rate_schedule(opt_config, steps_per_epoch, epochs)
  name = opt_config.name
  parts = []
  if opt_config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(float(opt_config.grad_clip_norm)))
  wd = float(opt_config.weight_decay)
  if name == "sgd":
    if wd:
      parts.append(optax.add_decayed_weights(wd))
    parts.append(optax.sgd(lr, momentum=float(opt_config.momentum) or None,
                           nesterov=bool(opt_config.nesterov)))
  elif name == "adam":
    if wd:
      parts.append(optax.add_decayed_weights(wd))
    parts.append(optax.adam(lr, b1=float(opt_config.b1), b2=float(opt_config.b2), eps=float(opt_config.eps)))
  elif name == "adamw":
    parts.append(optax.adamw(lr, b1=float(opt_config.b1), b2=float(opt_config.b2),
                             eps=float(opt_config.eps), weight_decay=wd))
  else:
    raise ConfigError(f"unknown optimizer.name '{name}'; use sgd, adam or adamw")
  return optax.chain(*parts)


def optimizer(fns: ModelFns, method_tx, opt_config, steps_per_epoch: int, epochs: int):
  """The run's transformation: ``optax.chain(method_tx, base_optimizer(...))`` (unchanged from plain
  training) except in greedy mode, where :func:`~lwcl.layerwise.greedy.greedy_transformation` wraps the
  two and the base optimizer's schedule spans one block's epochs.

  Args:
    fns: the run's model functions (:class:`~lwcl.train.ModelFns`, or
      :class:`~lwcl.layerwise.fns.LayerwiseFns`); ``method_tx``: the continual method's transformation;
      ``opt_config``: ``config.optimizer``; ``steps_per_epoch``, ``epochs``: of one task.
  Raises:
    ConfigError: an invalid optimizer, or a greedy schedule that disagrees with ``epochs``
      (:func:`~lwcl.layerwise.greedy.check_schedule`).
  """
  if isinstance(fns, LayerwiseFns) and fns.mode == "greedy":
    check_schedule(fns, epochs)
    block_epochs = fns.greedy_epochs_per_block or max(1, epochs // fns.num_blocks)
    return greedy_transformation(fns, method_tx, base_optimizer(opt_config, steps_per_epoch, block_epochs))
  return optax.chain(method_tx, base_optimizer(opt_config, steps_per_epoch, epochs))
