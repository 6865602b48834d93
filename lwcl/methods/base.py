"""The method protocol, and the two baselines every continual-learning study reports.

A continual-learning method is what lwcl adds to plain training on a stream of tasks. It is an object
built once per experiment from ``config.method`` (the table in :mod:`lwcl.methods`), holding only its
hyper-parameters and the model functions; everything that changes during the stream lives in its
*method state*, a typed pytree (a ``flax.struct.dataclass``) stored in ``TrainState.method_state``,
checkpointed with the run and passed to the compiled train step as an argument, never frozen into it.

The runner (:mod:`lwcl.engine.experiment`) and the train step (:func:`lwcl.engine.steps.make_train_step`) call
seven hooks,
documented once on :class:`Method`:

==================  ======  ===============================================================================
hook                where   what it returns
==================  ======  ===============================================================================
``training_data``   host    the examples trained on during task ``t``
``init_state``      host    the initial method state (once per stream)
``transformation``  host    the ``optax`` transformation chained in front of the base optimizer
``step_args``       traced  the keyword arguments of that transformation's ``update`` at this step
``after_step``      traced  the method state after a step
``end_task``        host    the method state after a task (importances, anchors, ...)
``task_report``     host    per-task counters its transformation keeps in the optimizer state (GEM's solver)
==================  ======  ===============================================================================

Source of the baselines: fine-tuning is the lower bound and joint (cumulative) training the upper bound of
every continual-learning benchmark (e.g. Lopez-Paz & Ranzato, NeurIPS 2017; Avalanche's ``Naive`` and
``Cumulative`` strategies).
"""

from __future__ import annotations

import abc
from typing import Any

import flax
import optax

from lwcl.data.examples import Examples

PyTree = Any


@flax.struct.dataclass
class NoState:
  """The method state of methods that keep none (fine-tuning, joint training): an empty pytree."""


class Method(abc.ABC):
  """A continual-learning method: configuration plus the hooks the runner and the train step call.

  Args:
    method_config: ``config.method`` (read with :mod:`lwcl.methods.options`; bad values raise
      :class:`~lwcl.errors.ConfigError` in the constructor).
    scenario: the task stream (:class:`~lwcl.data.scenarios.Scenario`); methods with fixed-shape state
      read its ``max_tasks`` and ``image_shape`` in the constructor (they keep no reference to it: a run
      may reorder its tasks, which changes neither).
    fns: the model functions (:class:`~lwcl.core.model_fns.ModelFns` or a layer-wise subclass), whose ``loss`` is
      the training loss of the run (the sum of local losses in layer-wise ``local`` mode).
  """

  def __init__(self, method_config, scenario, fns):
    del scenario
    self.config = method_config
    self.fns = fns

  def training_data(self, scenario, task: int) -> Examples:
    """The examples trained on during task ``task`` (host): by default that task's training split."""
    return Examples.from_tasks([scenario.tasks[task]])

  @abc.abstractmethod
  def init_state(self, params: PyTree, batch_stats: PyTree) -> PyTree:
    """The method state at the start of the stream (host, once): a ``flax.struct.dataclass`` whose
    shapes stay fixed over the whole stream (padded to ``scenario.max_tasks`` where task-indexed)."""

  @abc.abstractmethod
  def transformation(self) -> optax.GradientTransformationExtraArgs:
    """The transformation chained in front of the base optimizer (identity, a projection, a penalty)."""

  def step_args(self, method_state, params, batch_stats, batch: dict, rng) -> dict:
    """Extra keyword arguments of the transformation's ``update`` at this step (traced inside the train
    step). ``rng`` is the key the step's loss uses; a method that samples derives its own with
    ``jax.random.fold_in(rng, CONSTANT)``. Default: none."""
    del method_state, params, batch_stats, batch, rng
    return {}

  def after_step(self, method_state, params_before, params_after, grads, batch: dict):
    """The method state after one step (traced); ``grads`` is the raw gradient of the training loss.
    Default: unchanged."""
    del params_before, params_after, grads, batch
    return method_state

  def end_task(self, method_state, params, batch_stats, task: int, data: Examples):
    """The method state after task ``task`` (host; may call jitted functions); ``data`` is what the task
    trained on. Default: unchanged."""
    del params, batch_stats, task, data
    return method_state

  # Names of the per-task counters :meth:`task_report` returns (the run's record keeps one float32 [T]
  # array per name, checkpointed with it). Default: none.
  report_keys: tuple = ()

  def task_report(self, opt_state) -> dict:
    """The per-task counters the method's transformation keeps in ``opt_state`` (host): ``{name: array
    [..., max_tasks]}`` for every name of :attr:`report_keys` (leading replica axes kept). The runner copies
    task ``t``'s entries into its record after the task. Default: none."""
    del opt_state
    return {}

  def report_results(self, per_task: dict) -> dict:
    """Entries for ``results.json`` from one run's recorded counters (``{name: [T]}``). Default: none."""
    del per_task
    return {}

  def report_warning(self, counters: dict) -> str | None:
    """A warning about one task's counters (``{name: array}``, leading replica axes kept), printed after
    the task, or None. Default: None."""
    del counters
    return None


class FineTune(Method):
  """Fine-tuning: each task in turn with the base optimizer alone (the lower bound). State: ``NoState``."""

  def init_state(self, params, batch_stats) -> NoState:
    del params, batch_stats
    return NoState()

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    return optax.with_extra_args_support(optax.identity())


class Joint(FineTune):
  """Joint training (the upper bound): during task ``t`` train on the union of tasks ``0..t``.

  This is the cumulative form (Avalanche's ``Cumulative``), so the accuracy matrix is a real ``T x T``
  matrix; after the last task the model has been trained on all tasks' data together.
  """

  def training_data(self, scenario, task: int) -> Examples:
    return Examples.from_tasks(scenario.tasks[: task + 1])
