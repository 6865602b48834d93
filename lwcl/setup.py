"""What a run builds once and never changes: :class:`Setup`.

From a config and a :class:`~lwcl.replica_axis.ReplicaAxis`, :meth:`Setup.build` loads the data set (and
fingerprints it), builds the scenario, the model functions, the continual method, the optimizer and its
learning-rate schedule, and compiles the train step, the multi-step loop (``train.steps_per_dispatch``) and
the evaluation step for that axis (``jax.vmap``-ed over the replicas when it is batched). The stream loop
(:mod:`lwcl.loop`) and the report (:mod:`lwcl.run_report`) read it; nothing writes it. A task-order study
derives the setup of another order with :meth:`Setup.with_order`, reusing the data set and, when the label
space is unchanged, the compiled steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lwcl import config_values, layerwise, optim, xla_flags
from lwcl.data.pipeline import Preprocessor, steps_per_epoch
from lwcl.data.scenarios import Scenario, build_scenario
from lwcl.data.sources import load_dataset
from lwcl.errors import ConfigError
from lwcl.methods import Method, build_method
from lwcl.models import build_model
from lwcl.parallel import DataParallel
from lwcl.replica_axis import ReplicaAxis
from lwcl.results import data_fingerprint
from lwcl.run_state import Record
from lwcl.train import ModelFns, TrainState, make_eval_step, make_train_step, make_train_steps


@dataclasses.dataclass(frozen=True)
class Steps:
  """The compiled steps of a setup (vmapped over the replicas when the axis is batched).

  Attributes:
    train_step: ``(state, batch, learning_rate) -> (state, metrics)`` (:func:`lwcl.train.make_train_step`),
      state donated; a batched axis gives every replica its own minibatch (``[R, B, ...]``).
    train_steps: ``(state, data, steps, count) -> (state, losses)`` (:func:`lwcl.train.make_train_steps`);
      a batched axis gives every replica its own ``steps['index']`` (``[R, K, B]``) on shared data.
    eval_step: ``(params, batch_stats, batch) -> (correct, count)`` on a batch shared by the replicas.
    init_opt: ``params -> opt_state`` (a fresh optimizer state, ``optimizer.reset_each_task``).
  """
  train_step: Callable
  train_steps: Callable
  eval_step: Callable
  init_opt: Callable


def compile_steps(fns: ModelFns, tx, method: Method, parallel: DataParallel, axis: ReplicaAxis) -> Steps:
  """The jitted steps of ``fns``, ``tx`` and ``method`` for ``axis`` (see :class:`Steps`)."""
  rep, bat = parallel.replicated, parallel.batch
  step = make_train_step(fns, tx, method)
  steps = make_train_steps(fns, tx, method, None if axis.batched else bat)
  evaluate = make_eval_step(fns)
  if not axis.batched:
    return Steps(jax.jit(step, donate_argnums=(0,), in_shardings=(rep, bat, rep), out_shardings=(rep, rep)),
                 jax.jit(steps, donate_argnums=(0,), in_shardings=(rep, rep, rep, rep),
                         out_shardings=(rep, rep)),
                 jax.jit(evaluate, in_shardings=(rep, rep, bat), out_shardings=(rep, rep)),
                 lambda params: parallel.replicate(tx.init(params)))
  steps_axes = {"index": 0, "learning_rate": None, **({"phase": None} if fns.is_greedy else {})}
  return Steps(jax.jit(axis.vmap(step, (0, 0, None)), donate_argnums=(0,)),
               jax.jit(axis.vmap(steps, (0, None, steps_axes, None)), donate_argnums=(0,)),
               jax.jit(axis.vmap(evaluate, (0, 0, None))),
               jax.jit(axis.vmap(tx.init, 0)))


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run builds once from its config (see the module docstring).

  Attributes:
    config: the run's (locked) config as given (``num_seeds`` included); replica ``r``'s single-run
      config is :func:`lwcl.replica_results.seed_config` of it.
    axis: the replicas (:class:`~lwcl.replica_axis.ReplicaAxis`).
    parallel: the device mesh and shardings.
    dataset, data_fingerprint: the loaded data set and its SHA-256 (:func:`lwcl.results.data_fingerprint`).
    preprocess: uint8 images -> normalized float32.
    steps_per_dispatch: train steps per compiled call (1 on multi-process runs).
    eval_batch_size: evaluation batch size, rounded up to a multiple of the devices.
    scenario: the task stream; fns: the model functions; method: the continual method.
    tx: the method's transformation chained with the base optimizer; learning_rates: the schedule.
    train_data: the examples trained on in each task (``method.training_data``); steps_per_epoch: per task.
    readouts: the layer-wise read-outs (inactive for plain runs).
    steps: the compiled steps (:class:`Steps`).
  """
  config: Any
  axis: ReplicaAxis
  parallel: DataParallel
  dataset: Any
  data_fingerprint: str
  preprocess: Preprocessor
  steps_per_dispatch: int
  eval_batch_size: int
  scenario: Scenario
  fns: ModelFns
  method: Method
  tx: Any
  learning_rates: optim.LearningRates
  train_data: tuple
  steps_per_epoch: tuple
  readouts: layerwise.Readouts
  steps: Steps

  @classmethod
  def build(cls, config, axis: ReplicaAxis | None = None) -> "Setup":
    """Builds the setup of ``config`` for ``axis`` (default: the single run of ``config.seed``).

    Raises:
      ConfigError: a bad config value (:func:`lwcl.config_values.check_values`), a batch size the devices
        do not divide, or a batched axis on more than one device or process.
      DataError: the data set cannot be loaded.
    """
    config_values.check_values(config)
    axis = axis or ReplicaAxis.single(config.seed)
    parallel = DataParallel.create(config.devices)
    xla_flags.check_in_effect()
    if axis.batched and (parallel.size != 1 or jax.process_count() != 1):
      raise ConfigError(f"num_seeds runs all replicas on one device, but {parallel.size} devices are in use; "
                        "set --config.devices.num_devices=1")
    # Multi-process runs keep one host batch per step (each process would have to place the task's data).
    k = config.train.steps_per_dispatch if jax.process_count() == 1 else 1
    if k != config.train.steps_per_dispatch:
      logging.warning("multi-process run: train.steps_per_dispatch=%d ignored, one step per dispatch",
                      config.train.steps_per_dispatch)
    parallel.check_batch_size(config.train.batch_size, "train.batch_size")
    eval_batch_size = -(-config.train.eval_batch_size // parallel.size) * parallel.size
    dataset = load_dataset(config.data)
    preprocess = Preprocessor.from_config(config.data, dataset.train_images)
    scenario = build_scenario(config.scenario, dataset)
    fields = dict(config=config, axis=axis, parallel=parallel, dataset=dataset,
                  data_fingerprint=data_fingerprint(config.data, dataset), preprocess=preprocess,
                  steps_per_dispatch=k, eval_batch_size=eval_batch_size)
    return cls(**fields, **_stream_parts(config, scenario, preprocess, parallel, axis, k, eval_batch_size))

  def with_order(self, order) -> "Setup":
    """The setup of the same run in another task order (``scenario.task_order = order``, a permutation of
    the tasks as defined). The data set is not reloaded; the compiled steps are reused when the label
    masks are unchanged (always, except masked task-incremental heads, whose masks follow the order)."""
    config = self.config.copy_and_resolve_references()
    with config.unlocked():
      config.scenario.task_order = tuple(int(i) for i in order)
    config.lock()
    scenario = build_scenario(config.scenario, self.dataset)
    if not np.array_equal(scenario.label_masks, self.scenario.label_masks):
      return dataclasses.replace(self, config=config, **_stream_parts(
          config, scenario, self.preprocess, self.parallel, self.axis, self.steps_per_dispatch,
          self.eval_batch_size))
    train_data = tuple(self.method.training_data(scenario, t) for t in range(scenario.num_tasks))
    return dataclasses.replace(self, config=config, scenario=scenario, train_data=train_data,
                               steps_per_epoch=_steps_per_epoch(train_data, config))

  # -- the state at the start of the stream -------------------------------------------------------

  def initial_state(self) -> TrainState:
    """Every replica's state at the start of the stream (from its seed), as the run holds it."""
    return self.axis.each(self._initial_state)

  def _initial_state(self, seed: int) -> TrainState:
    init_key, train_key = jax.random.split(jax.random.PRNGKey(seed))
    params, batch_stats = self.fns.init(init_key, self.scenario.image_shape)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=self.tx.init(params),
                      method_state=self.method.init_state(params, batch_stats), rng=train_key)

  def initial_record(self) -> Record:
    """Every replica's empty :class:`~lwcl.run_state.Record`, as the run holds it."""
    T = self.scenario.num_tasks
    return self.axis.each(lambda _: Record.zeros(
        T, self.config.eval.lca_batches, self.readouts.initial_record(T), self.config.train.epochs_per_task,
        self.method.report_keys))


def _steps_per_epoch(train_data, config) -> tuple:
  return tuple(steps_per_epoch(len(d), config.train.batch_size) for d in train_data)


def _stream_parts(config, scenario, preprocess, parallel, axis, steps_per_dispatch, eval_batch_size) -> dict:
  """The fields of a :class:`Setup` that depend on the scenario: model functions, method, optimizer,
  training data, read-outs and compiled steps."""
  model = build_model(config.model, scenario, steps_per_dispatch)
  fns = layerwise.build_fns(config.layerwise, model, preprocess, scenario.label_masks, scenario.image_shape,
                            scenario.num_heads, scenario.output_dim)
  method = build_method(config.method, scenario, fns)
  epochs = config.train.epochs_per_task
  tx = optim.optimizer(fns, method.transformation(), config.optimizer, epochs)
  train_data = tuple(method.training_data(scenario, t) for t in range(scenario.num_tasks))
  return dict(scenario=scenario, fns=fns, method=method, tx=tx,
              learning_rates=optim.LearningRates(fns, config.optimizer, epochs), train_data=train_data,
              steps_per_epoch=_steps_per_epoch(train_data, config),
              readouts=layerwise.Readouts(fns, config.layerwise, strides=str(config.model.strides),
                                          image_shape=scenario.image_shape, parallel=parallel,
                                          eval_batch_size=eval_batch_size),
              steps=compile_steps(fns, tx, method, parallel, axis))
