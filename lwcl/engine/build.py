"""What a run builds once and never changes: :class:`Setup`.

From a config and a :class:`~lwcl.engine.replica_axis.ReplicaAxis`, :meth:`Setup.build` loads the data set (and
fingerprints it), builds the scenario, the model functions, the continual method, the optimizer and its
learning-rate schedule, and compiles the train step, the multi-step loop (``train.steps_per_dispatch``) and
the evaluation step for that axis (``jax.vmap``-ed over the replicas when it is batched). The stream loop
(:mod:`lwcl.engine.loop`) and the report (:mod:`lwcl.engine.report`) read it; nothing writes it. A task-order study
derives the setup of another order with :meth:`Setup.with_order`, reusing the data set and, when the label
space is unchanged, the compiled steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lwcl import layerwise
from lwcl.config import values as config_values
from lwcl.core.model_fns import ModelFns
from lwcl.core.record import Record
from lwcl.core.state import TrainState
from lwcl.data.pipeline import Preprocessor, steps_per_epoch
from lwcl.data.scenarios import Scenario, build_scenario
from lwcl.data.sources import load_dataset
from lwcl.engine import optim
from lwcl.engine.compiled import Steps, compile_steps
from lwcl.engine.replica_axis import ReplicaAxis, order_config
from lwcl.errors import ConfigError
from lwcl.io.results import data_fingerprint
from lwcl.methods import Method, build_method
from lwcl.models import build_model
from lwcl.platform import xla_flags
from lwcl.platform.devices import DataParallel


@dataclasses.dataclass(frozen=True)
class Stream:
  """One replica's stream of tasks: its scenario (in its task order) and what each task trains on
  (``method.training_data``)."""
  scenario: Scenario
  train_data: tuple


# The swept key whose candidates are per-replica learning-rate schedules (data of every step), not a
# hyper-parameter of the method state.
LEARNING_RATE = "optimizer.learning_rate"
# Swept keys whose candidates can be replicas: the learning rate and the float hyper-parameters a method keeps
# in its state (Method.STATE_HYPER).
REPLICABLE_PREFIX = "method."


class UnequalStreams(ConfigError):
  """Task orders whose tasks differ in size cannot run as replicas in lockstep (:meth:`Setup.build`);
  :func:`lwcl.runs.orders.run_orders` then runs them one after another."""


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run builds once from its config (see the module docstring).

  Attributes:
    config: the run's (locked) config as given (``num_seeds`` / ``num_orders`` included); replica ``r``'s
      single-run config is ``axis.config(config, r)``.
    axis: the replicas (:class:`~lwcl.engine.replica_axis.ReplicaAxis`).
    parallel: the device mesh and shardings.
    dataset, data_fingerprint: the loaded data set and its SHA-256 (:func:`lwcl.io.results.data_fingerprint`).
    preprocess: uint8 images -> normalized float32.
    steps_per_dispatch: train steps per compiled call (1 on multi-process runs).
    eval_batch_size: evaluation batch size, rounded up to a multiple of the devices.
    streams: the replicas' task streams (:class:`Stream`): one shared by every replica, or one per replica
      for task orders.
    fns: the model functions; method: the continual method; tx: the method's transformation chained with
      the base optimizer; readouts: the layer-wise read-outs (inactive for plain runs). With per-replica
      :attr:`values`, these are replica 0's, and :attr:`replica_parts` holds every replica's ``(fns, method,
      readouts)`` for the host-side hooks.
    learning_rates: the schedule (:class:`~lwcl.engine.optim.LearningRates`), one, or one per replica (a swept
      learning rate).
    steps_per_epoch: per task (equal for every stream).
    values: None, or what differs between the replicas' compiled steps (:func:`compile_steps`): the label
      masks of task orders under masked heads. (A swept method hyper-parameter is in each replica's method
      state, a swept learning rate in its schedule: neither changes the step.)
    replica_parts: every replica's ``(fns, method, readouts)`` when :attr:`values` is set, else empty.
    rebuild: ``values of one replica -> (fns, tx, method)`` around them (traced), or None.
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
  streams: tuple
  fns: ModelFns
  method: Method
  tx: Any
  learning_rates: tuple
  readouts: layerwise.Readouts
  steps_per_epoch: tuple
  values: Any
  replica_parts: tuple
  rebuild: Any
  steps: Steps

  @classmethod
  def build(cls, config, axis: ReplicaAxis | None = None) -> "Setup":
    """Builds the setup of ``config`` for ``axis`` (default: the single run of ``config.seed``).

    Raises:
      ConfigError: a bad config value (:func:`lwcl.config.values.check_values`), a batch size the devices
        do not divide, or a batched axis on more than one device or process.
      UnequalStreams: task orders whose tasks differ in size (they cannot train in lockstep).
      DataError: the data set cannot be loaded.
    """
    config_values.check_values(config)
    axis = axis or ReplicaAxis.single(config.seed)
    parallel = DataParallel.create(config.devices)
    xla_flags.check_in_effect()
    if axis.batched and (parallel.size != 1 or jax.process_count() != 1):
      raise ConfigError(f"num_seeds and num_orders run all replicas on one device, but {parallel.size} devices "
                        "are in use; set --config.devices.num_devices=1")
    # Multi-process runs keep one host batch per step (each process would have to place the task's data).
    k = config.train.steps_per_dispatch if jax.process_count() == 1 else 1
    if k != config.train.steps_per_dispatch:
      logging.warning("multi-process run: train.steps_per_dispatch=%d ignored, one step per dispatch",
                      config.train.steps_per_dispatch)
    parallel.check_batch_size(config.train.batch_size, "train.batch_size")
    eval_batch_size = -(-config.train.eval_batch_size // parallel.size) * parallel.size
    dataset = load_dataset(config.data)
    preprocess = Preprocessor.from_config(config.data, dataset.train_images)
    if axis.orders:  # one scenario per task order, shared by that order's replicas (seeds)
      by_order = {}
      for o in axis.orders:
        if o not in by_order:
          by_order[o] = build_scenario(order_config(config, o).scenario, dataset)
      scenarios = [by_order[o] for o in axis.orders]
    else:
      scenarios = [build_scenario(config.scenario, dataset)]
    fields = dict(config=config, axis=axis, parallel=parallel, dataset=dataset,
                  data_fingerprint=data_fingerprint(config.data, dataset), preprocess=preprocess,
                  steps_per_dispatch=k, eval_batch_size=eval_batch_size)
    return cls(**fields, **_stream_parts(config, scenarios, preprocess, parallel, axis, k, eval_batch_size))

  def with_order(self, order) -> "Setup":
    """The setup of the same single run in another task order (``scenario.task_order = order``, a
    permutation of the tasks as defined). The data set is not reloaded; the compiled steps are reused when
    the label masks are unchanged (always, except masked task-incremental heads, whose masks follow the
    order)."""
    if self.axis.batched:
      raise ValueError("with_order switches the order of a single run, not of replicas")
    config = order_config(self.config, order)
    with config.unlocked():
      config.num_orders = self.config.num_orders
    config.lock()
    scenario = build_scenario(config.scenario, self.dataset)
    if not np.array_equal(scenario.label_masks, self.scenario.label_masks):
      return dataclasses.replace(self, config=config, **_stream_parts(
          config, [scenario], self.preprocess, self.parallel, self.axis, self.steps_per_dispatch,
          self.eval_batch_size))
    stream = Stream(scenario, tuple(self.method.training_data(scenario, t) for t in range(scenario.num_tasks)))
    return dataclasses.replace(self, config=config, streams=(stream,),
                               steps_per_epoch=_steps_per_epoch([stream], config))

  # -- views ---------------------------------------------------------------------------------------

  @property
  def scenario(self) -> Scenario:
    """The scenario of stream 0 (every stream's, up to the order of its tasks)."""
    return self.streams[0].scenario

  @property
  def train_data(self) -> tuple:
    """Stream 0's training data per task."""
    return self.streams[0].train_data

  def stream(self, r: int) -> Stream:
    """Replica ``r``'s stream."""
    return self.streams[r if len(self.streams) > 1 else 0]

  def learning_rates_of_task(self, steps_per_epoch: int) -> np.ndarray:
    """The learning rate of every step of a task, float32 ``[steps]`` (``[R, steps]`` when swept)."""
    lrs = [lr.for_task(steps_per_epoch) for lr in self.learning_rates]
    return lrs[0] if len(lrs) == 1 else np.stack(lrs)

  def parts(self, r: int) -> tuple:
    """Replica ``r``'s ``(fns, method, readouts)`` for the host-side hooks (end of task, read-outs)."""
    return self.replica_parts[r] if self.replica_parts else (self.fns, self.method, self.readouts)

  # -- the state at the start of the stream -------------------------------------------------------

  def initial_state(self) -> TrainState:
    """Every replica's state at the start of the stream (from its seed; a sweep's candidate in its method
    state, :meth:`lwcl.methods.base.Method.set_hyper`), as the run holds it."""
    return self.axis.each(self._initial_state)

  def _initial_state(self, r: int) -> TrainState:
    init_key, train_key = jax.random.split(jax.random.PRNGKey(self.axis.seeds[r]))
    params, batch_stats = self.fns.init(init_key, self.scenario.image_shape)
    method = self.parts(r)[1]
    method_state = method.init_state(params, batch_stats)
    if self.axis.candidates and self.axis.key != LEARNING_RATE:  # a swept hyper-parameter of the state
      method_state = method.set_hyper(method_state, self.axis.key, self.axis.candidates[r])
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=self.tx.init(params), method_state=method_state, rng=train_key)

  def initial_record(self) -> Record:
    """Every replica's empty :class:`~lwcl.core.record.Record`, as the run holds it."""
    T = self.scenario.num_tasks
    return self.axis.each(lambda _: Record.zeros(
        T, self.config.eval.lca_batches, self.readouts.initial_record(T), self.config.train.epochs_per_task,
        self.method.report_keys))


def _steps_per_epoch(streams, config) -> tuple:
  """Steps per epoch of each task, equal in every stream.

  Raises:
    UnequalStreams: two streams' tasks at one position differ in size.
  """
  per_stream = {tuple(steps_per_epoch(len(d), config.train.batch_size) for d in s.train_data) for s in streams}
  if len(per_stream) > 1:
    raise UnequalStreams("the task orders' tasks differ in size, so they cannot train as replicas in lockstep "
                         f"(steps per epoch {sorted(per_stream)[:2]}...); they run one after another")
  return per_stream.pop()


def _parts(config, scenario, model, preprocess, parallel, eval_batch_size):
  """``(fns, method, tx, readouts)`` of one scenario (its label masks)."""
  fns = layerwise.build_fns(config.layerwise, model, preprocess, scenario.label_masks, scenario.image_shape,
                            scenario.num_heads, scenario.output_dim)
  method = build_method(config.method, scenario, fns)
  tx = optim.optimizer(fns, method.transformation(), config.optimizer, config.train.epochs_per_task)
  readouts = layerwise.Readouts(fns, config.layerwise, strides=str(config.model.strides),
                                image_shape=scenario.image_shape, parallel=parallel,
                                eval_batch_size=eval_batch_size)
  return fns, method, tx, readouts


def _stream_parts(config, scenarios, preprocess, parallel, axis, steps_per_dispatch, eval_batch_size) -> dict:
  """The fields of a :class:`Setup` that depend on the scenarios (one, or one per replica) and the replicas'
  values: model functions, method, optimizer, streams, read-outs and compiled steps."""
  first = scenarios[0]
  model = build_model(config.model, first, steps_per_dispatch)
  fns, method, tx, readouts = _parts(config, first, model, preprocess, parallel, eval_batch_size)
  by_scenario = {}  # replicas of one task order share its stream
  for sc in scenarios:
    if id(sc) not in by_scenario:
      by_scenario[id(sc)] = Stream(sc, tuple(method.training_data(sc, t) for t in range(sc.num_tasks)))
  streams = tuple(by_scenario[id(sc)] for sc in scenarios)
  epochs = config.train.epochs_per_task
  values, rebuild, replica_parts = {}, None, ()
  if any(not np.array_equal(sc.label_masks, first.label_masks) for sc in scenarios):
    values["label_masks"] = np.stack([sc.label_masks for sc in scenarios])
  if values:
    built = {}  # the replicas (seeds) of one task order share their parts

    def parts_of(r):
      sc = scenarios[r]
      if id(sc) not in built:
        f, m, _, ro = _parts(axis.config(config, r), sc, model, preprocess, parallel, eval_batch_size)
        built[id(sc)] = (f, m, ro)
      return built[id(sc)]

    replica_parts = tuple(parts_of(r) for r in range(axis.size))

    def rebuild_around(replica_values):  # the step's pieces around a replica's label masks (traced)
      f = dataclasses.replace(fns, label_masks=replica_values["label_masks"])
      m = build_method(config.method, first, f)
      return f, optim.optimizer(f, m.transformation(), config.optimizer, epochs), m

    rebuild = rebuild_around

  if axis.key == LEARNING_RATE:
    learning_rates = tuple(optim.LearningRates(fns, axis.config(config, r).optimizer, epochs)
                           for r in range(axis.size))
  else:
    learning_rates = (optim.LearningRates(fns, config.optimizer, epochs),)
  return dict(streams=streams, fns=fns, method=method, tx=tx, learning_rates=learning_rates, readouts=readouts,
              steps_per_epoch=_steps_per_epoch(streams, config), values=values or None,
              replica_parts=replica_parts, rebuild=rebuild,
              steps=compile_steps(fns, tx, method, parallel, axis, len(streams) == 1, values or None, rebuild,
                                  len(learning_rates) > 1))
