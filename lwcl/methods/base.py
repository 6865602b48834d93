"""The method protocol (the contract every continual-learning method keeps), and the two baselines every
continual-learning study reports.

A continual-learning method is what lwcl adds to plain training on a stream of tasks. It is an object
built from ``config.method`` (the table :data:`lwcl.methods.METHODS`), holding only its hyper-parameters and
the model functions; everything that changes during the stream lives in its *method state*, a typed pytree
(a ``flax.struct.dataclass``) stored in ``TrainState.method_state``, checkpointed with the run and passed to
the compiled train step as an argument, never frozen into it.

The runner (:mod:`lwcl.engine.experiment`, which builds the method in :mod:`lwcl.engine.build` and drives the
stream in :mod:`lwcl.engine.loop`) and the train step (:func:`lwcl.engine.steps.make_train_step`) use the
constructor, twelve hook methods and two attributes, documented once on :class:`Method`:

======================  =======  ==========================================================================
hook                    where    what it returns / when it runs
======================  =======  ==========================================================================
``__init__``            host     reads and checks the method's ``OPTIONS`` (concrete values only, rule 1)
``training_data``       host     the examples trained on during task ``t`` (at setup, per task)
``init_state``          both     the initial method state (once per replica; also under ``jax.eval_shape``)
``transformation``      host     the ``optax`` transformation chained in front of the base optimizer
``train_batch``         traced   the batch the loss is computed on (ER: joined by a replay batch); traced
                                 only when overridden
``loss_term``           traced   a term added to the loss before differentiation (DER's logit matching);
                                 traced only when overridden
``replaces_loss``       step     (attribute) True: ``loss_term`` is the whole loss, the model's
                                 cross-entropy not added (iCaRL's binary cross-entropy)
``step_args``           traced   the keyword arguments of that transformation's ``update`` at this step
``after_step``          traced   the method state after a step (sees the step's logits and key)
``end_task``            host     the method state after a task (importances, anchors, ...); under
                                 ``jax.vmap`` over the replicas of a ``num_seeds`` run (rule 2); it runs
                                 before the evaluation after the task
``eval_scores``         traced   the scores whose argmax is the prediction at evaluation (iCaRL's nearest
                                 mean of exemplars); traced only when overridden, else the model's logits
``report_keys``         host     (attribute) the names of the per-task counters ``task_report`` returns
``task_report``         host     per-task counters its transformation keeps in the optimizer state, after
                                 every task (GEM's solver)
``report_results``      host     entries for ``results.json`` from the recorded counters (end of run)
``report_warning``      host     a warning line about one task's counters, or None (after every task)
======================  =======  ==========================================================================

"Traced" hooks run inside the jitted train step (under ``jax.vmap`` for replicas): they must be pure JAX,
with fixed shapes. Three rules nobody can see from the signatures:

1. **Float hyper-parameters live in the method state.** Each float option is either kept in the method
   state as a float32 scalar (:attr:`Method.STATE_HYPER`: option -> state field; the traced hooks and the
   transformation's ``update`` read it from there, e.g. as a ``step_args`` entry), or the method needs it
   on the host because it chooses what is compiled (:attr:`Method.HOST_OPTIONS`, e.g. LGD's margin). A
   sweep of a state option (:func:`lwcl.runs.sweep.run_sweep`) trains its candidates as replicas of one
   program, each replica's state holding its candidate (:meth:`Method.set_hyper`), as
   ``optax.inject_hyperparams`` keeps hyper-parameters in the optimizer state; a sweep of a host option runs
   the candidates one after another, and says so. The contract tests check that every float option is one
   of the two.
2. **``end_task`` works under ``jax.vmap``.** Replicas of one stream (``num_seeds``) run it once, vmapped
   over their stacked states (:func:`lwcl.engine.loop.end_task`); host-side data (``data``, ``task``) is
   shared. (A hook that raises a concretization error there falls back to one replica at a time, slower.)
3. **Copy what you keep of the parameters.** The train step donates the train state (its parameters'
   buffers are reused for the next step's), so an anchor or any other copy of the parameters kept in the
   method state must be a fresh buffer (``jnp.array(x, copy=True)`` leaf by leaf under ``jax.jit``,
   :func:`lwcl.methods.importance.copy_tree`), never the parameter arrays themselves.

Label masks (masked task-incremental heads) are read through the model functions (``fns.logits``,
``fns.loss``) or :func:`lwcl.core.model_fns.task_masks`, never by indexing ``fns.label_masks``: for task
orders as replicas it holds one table per replica (``tests/test_architecture.py`` checks).

Options: a method reads exactly the ``method.*`` keys it declares in ``OPTIONS`` (a tuple of
:class:`lwcl.core.options.Option`, defaults equal to ``configs/default.py``'s); the constructor reads and
checks them all (:func:`read_option`: a bad value is a one-line :class:`~lwcl.errors.ConfigError`) into
``self.options``. Adding a method: docs/adding.md.

Source of the baselines: fine-tuning is the lower bound and joint (cumulative) training the upper bound of
every continual-learning benchmark (e.g. Lopez-Paz & Ranzato, NeurIPS 2017; Avalanche's ``Naive`` and
``Cumulative`` strategies).
"""

from __future__ import annotations

import abc
from typing import Any

import flax
import jax.numpy as jnp
import numpy as np
import optax

from lwcl.core.options import Option
from lwcl.data.examples import Examples
from lwcl.errors import ConfigError

PyTree = Any


def read_option(section, opt: Option):
  """The value of ``opt`` in a ``config.method`` section (a ConfigDict, a mapping or an object with
  attributes), checked by ``opt.check``.

  An absent key gives ``opt.default``; numbers are returned as the option's type (an int given for a float
  key becomes a float).

  Raises:
    ConfigError: one line naming the key and the fix (wrong type, out of bounds, not a choice, a bool key
      that is not True or False).
  """
  name = opt.key.split(".", 1)[1]
  present = name in section if hasattr(section, "__contains__") else hasattr(section, name)
  if not present:
    return opt.default
  value = section[name] if hasattr(section, "__getitem__") else getattr(section, name)
  if isinstance(value, np.generic):
    value = value.item()
  if opt.type is bool and not isinstance(value, bool):
    raise ConfigError(f"{opt.key}={value!r} is not True or False; fix --config.{opt.key}")
  value = opt.check(value)
  return float(value) if opt.type is float else value


@flax.struct.dataclass
class NoState:
  """The method state of methods that keep none (fine-tuning, joint training): an empty pytree."""


class Method(abc.ABC):
  """A continual-learning method: configuration plus the hooks the runner and the train step call.

  Args:
    method_config: ``config.method``; the constructor reads every key of :attr:`OPTIONS` from it
      (:func:`read_option`) into :attr:`options` (``{short key: value}``).
    scenario: the task stream (:class:`~lwcl.data.scenarios.Scenario`); methods with fixed-shape state
      read its ``max_tasks`` and ``image_shape`` in the constructor (they keep no reference to it: a run
      may reorder its tasks, which changes neither).
    fns: the model functions (:class:`~lwcl.core.model_fns.ModelFns` or a layer-wise subclass), whose ``loss`` is
      the training loss of the run (the sum of local losses in layer-wise ``local`` mode).
  Raises:
    ConfigError: a bad value of one of its keys (one line naming the key and the fix).
  """

  # The method.* keys the method reads, each with its default (configs/default.py's), bounds and doc.
  OPTIONS: tuple[Option, ...] = ()
  # Float options kept in the method state (rule 1): the option's dotted key -> the state field holding
  # its value, a float32 scalar that the hooks read (a sweep gives each replica its own, set_hyper).
  STATE_HYPER: dict = {}
  # Float keys of OPTIONS the method needs as concrete host values (they choose what is compiled), so a
  # sweep of one runs its candidates one after another (rule 1).
  HOST_OPTIONS: tuple[str, ...] = ()
  # Whether the method needs one head shared by the tasks, unmasked (class- or domain-incremental); its
  # constructor refuses task-incremental heads with one line.
  shared_head_only: bool = False
  # Whether the method runs in layer-wise local and greedy training (its constructor refuses them otherwise).
  layerwise_local: bool = True
  # Whether the method is fine-tuning plus a penalty scaled by method.strength (strength 0 = fine-tuning).
  penalty: bool = False
  # Whether loss_term is the whole training loss (the model's cross-entropy, fns.loss's value, not added;
  # its logits and BatchNorm statistics still used). Layer-wise read-out heads, trained by fns.loss's
  # detached terms, would not train, so the constructor refuses layerwise.readouts.
  replaces_loss: bool = False

  def __init__(self, method_config, scenario, fns):
    del scenario
    self.fns = fns
    self.options = {o.key.split(".", 1)[1]: read_option(method_config, o) for o in self.OPTIONS}
    if not self.layerwise_local and getattr(fns, "is_local", False):
      raise ConfigError(f"method.name={method_config.name} does not run in layer-wise local or greedy training "
                        "yet; use --config.layerwise.mode=backprop, or another method")
    if self.replaces_loss and getattr(fns, "readouts", False):
      raise ConfigError(f"method.name={method_config.name} replaces the training loss, so the read-out heads of "
                        "layerwise.readouts would not train; use --config.layerwise.readouts=False")

  def set_hyper(self, method_state, key: str, value):
    """``method_state`` with the value of the float option ``key`` (dotted, e.g. ``method.strength``)
    replaced by ``value`` (stored as a float32 scalar): one replica of a sweep of ``key``.

    Raises:
      KeyError: ``key`` is not kept in this method's state (not in :attr:`STATE_HYPER`).
    """
    return method_state.replace(**{self.STATE_HYPER[key]: jnp.asarray(value, jnp.float32)})

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

  def train_batch(self, method_state, batch: dict, rng) -> dict:
    """The batch the step's loss is computed on (traced): the given minibatch joined by examples of the
    method's own (e.g. ER's replay batch). Its first ``B`` rows must be the minibatch (``B`` its size),
    every key of the minibatch kept, and a float32 ``mask`` ``[B']`` weights the loss (0 for a padding row).
    Default: the minibatch itself (a method that does not override the hook changes nothing in the step).
    """
    del method_state, rng
    return batch

  def loss_term(self, method_state, params, batch_stats, batch: dict, logits, rng):
    """A float32 scalar added to the training loss before it is differentiated (traced), e.g. DER's
    matching of stored logits on a replay batch or LwF's distillation. ``batch`` is the batch the loss is
    computed on (:meth:`train_batch`) and ``logits`` its logits in this step's forward pass, float32
    ``[B', O]``; ``rng`` is the step's key (derive your own with ``jax.random.fold_in``). With
    :attr:`replaces_loss` it is the whole loss. Default: none (not traced into the step)."""
    del method_state, params, batch_stats, batch, logits, rng
    return jnp.zeros((), jnp.float32)

  def eval_scores(self, method_state, params, batch_stats, batch: dict):
    """The scores float32 ``[B, O]`` whose argmax is the prediction at evaluation (traced in the
    evaluation step; the accuracy matrix and every metric read it), for ``batch`` (``image``, ``label``,
    ``task``, ``mask``); ``method_state`` is the state after the tasks trained so far (the evaluation
    after a task follows its :meth:`end_task`). Default: the model's logits in inference mode (not traced:
    the evaluation step of a method that does not override it is the plain one)."""
    del method_state
    return self.fns.logits(params, batch_stats, batch, train=False)[0]

  def overrides(self, hook: str) -> bool:
    """Whether this method's class overrides the hook named ``hook`` (the train step traces
    :meth:`train_batch` and :meth:`loss_term`, the evaluation step :meth:`eval_scores`, only for methods
    that do, so every other method's steps are the plain ones)."""
    return getattr(type(self), hook) is not getattr(Method, hook)

  def after_step(self, method_state, params_before, params_after, grads, batch: dict):
    """The method state after one step (traced); ``grads`` is the raw gradient of the training loss.
    ``batch`` is the minibatch as given (not :meth:`train_batch`'s), plus ``logits`` (float32 ``[B, O]``:
    its logits in this step's forward pass, before the update), ``rng`` (the step's key; derive your
    own with ``jax.random.fold_in``; the step's forward pass augmented its images with it) and
    ``batch_stats`` (the BatchNorm statistics before the update). Default: unchanged."""
    del params_before, params_after, grads, batch
    return method_state

  def end_task(self, method_state, params, batch_stats, task: int, data: Examples):
    """The method state after task ``task`` (host; may call jitted functions; under ``jax.vmap`` over
    replicas, so no concrete values of the state or parameters); ``data`` is what the task trained on.
    The evaluation after the task sees the state it returns. Default: unchanged."""
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
