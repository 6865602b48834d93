"""What a run builds once and never changes: :class:`Setup`.

From a config and its :class:`~lwcl.engine.replicas.Replicas` (a single run by default), :meth:`Setup.build`
loads the data set (and fingerprints it), builds the scenario, the model functions, the continual method,
the optimizer and its learning-rate schedule, and compiles the train step, the multi-step loop
(``train.steps_per_dispatch``) and the evaluation step (mapped over the replicas by
:meth:`Replicas.vmap <lwcl.engine.replicas.Replicas.vmap>`). Everything per replica is read from the
replica's single-run config: its seed, its stream (``scenario.task_order``), its learning rate and its
method hyper-parameters. The programs are built for a platform or platforms (:mod:`lwcl.platform.targets`;
by default the default backend's): ``model.conv_impl=auto`` and the ConvNet's pool take their CPU lowerings
only in programs built for the CPU alone, so a setup built for ``('cuda',)`` or ``('tpu',)`` on a CPU-only
machine has steps that ``jax.export`` lowers for those platforms. The stream loop (:mod:`lwcl.engine.loop`)
and the report (:mod:`lwcl.engine.report`) read the setup; nothing writes it. :meth:`Setup.with_task_order`
derives the setup of the same single run in another task order, reusing the data set and, when the label
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
from lwcl.core.keys import get_key
from lwcl.core.model_fns import ModelFns
from lwcl.core.record import Record
from lwcl.core.state import TrainState
from lwcl.data.pipeline import Preprocessor, steps_per_epoch
from lwcl.data.scenarios import Scenario, build_scenario
from lwcl.data.sources import load_dataset
from lwcl.engine import budget, optim
from lwcl.engine.compiled import Steps, compile_eval_step, compile_steps
from lwcl.engine.replicas import One, Replicas
from lwcl.errors import ConfigError
from lwcl.io.results import data_fingerprint
from lwcl.methods import METHODS, Method, build_method
from lwcl.models import build_model, input_problem
from lwcl.platform import targets, xla_flags
from lwcl.platform.devices import DataParallel


@dataclasses.dataclass(frozen=True)
class Stream:
  """One replica's stream of tasks: its scenario (in its task order) and what each task trains on
  (``method.training_data``)."""
  scenario: Scenario
  train_data: tuple


# Config keys in which the replicas of one program may differ, besides the float hyper-parameters their
# method keeps in its state (Method.STATE_HYPER) and the keys that choose the replicas (Replicas.choosers):
# what every step takes as data (the seed: initial state and minibatch order; the task order: the stream's
# data; the learning rate: an argument of every step).
AS_DATA = ("seed", "scenario.task_order", "optimizer.learning_rate")


class UnequalStreams(ConfigError):
  """Replicas whose streams' tasks differ in size cannot train in lockstep (:meth:`Setup.build`); the
  caller runs them on their own (:func:`lwcl.runs.orders.run_orders`: one task order after another)."""


def _flat(tree: dict, prefix: str = "") -> dict:
  """A nested dict as ``{dotted key: value}``."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def check_one_program(config, configs, choosers=()) -> None:
  """Checks that replicas with single-run configs ``configs`` can be replicas of the program of
  ``config``: every config differs from it only in :data:`AS_DATA`, the method's ``STATE_HYPER`` keys and
  ``choosers`` (the keys that choose the replicas, :attr:`lwcl.engine.replicas.Replicas.choosers`).

  Raises:
    ValueError: a replica differs in a key the compiled program does not take as data (names the replica
      and the key; a bug of the caller that built the replicas, not of a user's config).
  """
  allowed = set(AS_DATA) | set(choosers) | set(METHODS[config.method.name].STATE_HYPER)
  base = _flat(config.to_dict())
  for r, c in enumerate(configs):
    other = _flat(c.to_dict())
    differ = sorted(k for k in base.keys() | other.keys() if k not in allowed and base.get(k) != other.get(k))
    if differ:
      raise ValueError(f"replica {r} differs from the program in {', '.join(differ)}, which one compiled "
                       "program cannot take as data; run it on its own")


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run builds once from its config (see the module docstring).

  Attributes:
    config: the run's (locked) config as given (``num_seeds`` / ``num_orders`` included): the program's.
    replicas: the runs the program trains (:class:`~lwcl.engine.replicas.Replicas`; :class:`One` for a
      single run).
    configs: each replica's single-run config (``replicas.config(config, r)``), differing from
      :attr:`config` only in what the program takes as data (:func:`check_one_program`).
    parallel: the device mesh (``replica`` x ``data``) and shardings.
    platforms: the platforms the programs are built for (:func:`lwcl.platform.targets.target_platforms`).
    dataset, data_fingerprint: the loaded data set and its SHA-256 (:func:`lwcl.io.results.data_fingerprint`).
    preprocess: uint8 images -> normalized float32.
    steps_per_dispatch: train steps per compiled call (1 on multi-process runs).
    eval_batch_size: evaluation batch size, rounded up to a multiple of the data shards.
    streams: the replicas' task streams (:class:`Stream`): one shared by every replica, or one per replica
      for task orders.
    fns: the model functions; method: the continual method; tx: the method's transformation chained with
      the base optimizer; readouts: the layer-wise read-outs (inactive for plain runs). For task orders
      under masked heads, ``fns`` holds one table of label masks per replica, read inside the vmapped
      program (:func:`lwcl.core.model_fns.task_masks`), and :attr:`host_parts` holds each replica's own.
    learning_rates: the schedule (:class:`~lwcl.engine.optim.LearningRates`), one, or one per replica (a swept
      learning rate).
    steps_per_epoch: per task (equal for every stream).
    host_parts: when the replicas have a table of label masks each, every replica's ``(fns, method,
      readouts)`` of its single run (its own masks), for the hooks that run on the host outside the vmapped
      program (end of task, read-outs); else empty.
    task_il_masks: in class-incremental scenarios, each task's classes for the Task-IL evaluation (bool
      ``[max_tasks, O]``, :attr:`~lwcl.data.scenarios.Scenario.task_il_masks`; ``[R, max_tasks, O]`` when the
      replicas' task orders give them different tables, read inside the vmapped program as label masks
      are); None otherwise (no Task-IL accuracies are recorded).
    steps: the compiled steps (:class:`Steps`).
  """
  config: Any
  replicas: Replicas
  configs: tuple
  parallel: DataParallel
  platforms: tuple
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
  host_parts: tuple
  task_il_masks: np.ndarray | None
  steps: Steps

  @classmethod
  def build(cls, config, replicas: Replicas | None = None, platforms=None) -> "Setup":
    """Builds the setup of ``config`` for ``replicas`` (default: the single run of ``config``), its programs
    for ``platforms`` (a platform name or names, :func:`lwcl.platform.targets.target_platforms`; default: the
    default backend's platform; e.g. ``('cuda',)`` to export them with ``jax.export`` for GPUs on a machine
    without one).

    Raises:
      ConfigError: a bad config value (:func:`lwcl.config.values.check_values`), a batch size the data
        shards do not divide, a device split that does not fit (:func:`lwcl.platform.devices.mesh_shape`),
        or batches, tasks or replicas' states that cannot fit in memory (:mod:`lwcl.engine.budget`,
        :func:`lwcl.data.scenarios.held_bytes`; estimated before they are allocated).
      UnequalStreams: replicas whose streams' tasks differ in size (they cannot train in lockstep).
      ValueError: a replica's config differs from the program's in a key the program does not take as
        data (:func:`check_one_program`).
      DataError: the data set cannot be loaded.
    """
    platforms = targets.target_platforms(platforms)
    config_values.check_values(config)
    replicas = replicas or One()
    parallel = DataParallel.create(config.devices, replicas.size if replicas.batched else 0)
    xla_flags.check_in_effect()
    # Multi-process runs keep one host batch per step (each process would have to place the task's data).
    k = config.train.steps_per_dispatch if jax.process_count() == 1 else 1
    if k != config.train.steps_per_dispatch:
      logging.warning("multi-process run: train.steps_per_dispatch=%d ignored, one step per dispatch",
                      config.train.steps_per_dispatch)
    parallel.check_batch_size(config.train.batch_size, "train.batch_size")
    eval_batch_size = -(-config.train.eval_batch_size // parallel.data_shards) * parallel.data_shards
    dataset = load_dataset(config.data)
    size = replicas.size if replicas.batched else 1
    budget.check_batches(config, dataset.image_shape, size, eval_batch_size,
                         max(len(dataset.train_labels), len(dataset.test_labels)))
    preprocess = Preprocessor.from_config(config.data, dataset.train_images)
    by_stream = {}  # one scenario per distinct stream (task order), shared by its replicas (seeds, candidates)
    # The states, estimated on the program's own stream before anything per replica is built.
    by_stream[_stream_key(config)] = base = build_scenario(config.scenario, dataset)
    budget.check_states(config, size, _replica_state(config, base, preprocess, parallel, k, eval_batch_size,
                                                     platforms))
    configs = tuple(replicas.config(config, r) for r in range(replicas.size))
    check_one_program(config, configs, replicas.choosers)
    keys = [_stream_key(c) for c in configs]
    for c, key in zip(configs, keys):
      if key not in by_stream:
        by_stream[key] = build_scenario(c.scenario, dataset)
    scenarios = [by_stream[key] for key in (keys if len(set(keys)) > 1 else keys[:1])]
    fields = dict(config=config, replicas=replicas, configs=configs, parallel=parallel, platforms=platforms,
                  dataset=dataset,
                  data_fingerprint=data_fingerprint(config.data, dataset), preprocess=preprocess,
                  steps_per_dispatch=k, eval_batch_size=eval_batch_size)
    return cls(**fields, **_stream_parts(config, configs, scenarios, preprocess, parallel, replicas, k,
                                         eval_batch_size, platforms))

  def with_task_order(self, order) -> "Setup":
    """The setup of the same single run in another task order (``scenario.task_order = order``, a
    permutation of the tasks as defined). The data set is not reloaded; the compiled steps are reused when
    the label masks are unchanged (always, except masked task-incremental heads, whose masks follow the
    order), the evaluation step too unless the tasks' classes of the Task-IL evaluation moved
    (class-incremental: only it is compiled again).

    Raises:
      ValueError: the setup trains batched replicas (each has its own order).
    """
    if self.replicas.batched:
      raise ValueError("with_task_order switches the order of a single run, not of replicas")
    config = self.config.copy_and_resolve_references()
    with config.unlocked():
      config.scenario.task_order = tuple(int(i) for i in order)
    config.lock()
    scenario = build_scenario(config.scenario, self.dataset)
    if not np.array_equal(scenario.label_masks, self.scenario.label_masks):
      return dataclasses.replace(self, config=config, configs=(config,), **_stream_parts(
          config, (config,), [scenario], self.preprocess, self.parallel, self.replicas, self.steps_per_dispatch,
          self.eval_batch_size, self.platforms))
    stream = Stream(scenario, tuple(self.method.training_data(scenario, t) for t in range(scenario.num_tasks)))
    task_il, steps = scenario.task_il_masks, self.steps
    if task_il is not None and not np.array_equal(task_il, self.task_il_masks):  # class-IL: the tasks' classes
      steps = dataclasses.replace(steps, eval_step=compile_eval_step(self.fns, self.method, self.parallel,
                                                                     self.replicas, True, task_il))
    return dataclasses.replace(self, config=config, configs=(config,), streams=(stream,),
                               steps_per_epoch=_steps_per_epoch([stream], config), task_il_masks=task_il,
                               steps=steps)

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

  @property
  def seeds(self) -> tuple:
    """Each replica's seed (``config.seed`` of its single-run config): initial state, minibatch order,
    linear-probe subsets."""
    return tuple(int(c.seed) for c in self.configs)

  def parts(self, r: int) -> tuple:
    """Replica ``r``'s ``(fns, method, readouts)`` for the host-side hooks (end of task, read-outs), which
    run outside the vmapped program."""
    return self.host_parts[r] if self.host_parts else (self.fns, self.method, self.readouts)

  # -- the state at the start of the stream -------------------------------------------------------

  def initial_state(self) -> TrainState:
    """Every replica's state at the start of the stream (from its seed; the method hyper-parameters in
    which replicas differ set in each one's method state, :meth:`lwcl.methods.base.Method.set_hyper`), as
    the run holds it."""
    return self.replicas.each(self._initial_state)

  def _initial_state(self, r: int) -> TrainState:
    init_key, train_key = jax.random.split(jax.random.PRNGKey(self.configs[r].seed))
    params, batch_stats = self.fns.init(init_key, self.scenario.image_shape)
    method = self.parts(r)[1]
    method_state = method.init_state(params, batch_stats)
    for key in method.STATE_HYPER:  # a hyper-parameter in which replicas differ (a sweep's candidates)
      if any(get_key(c, key) != get_key(self.config, key) for c in self.configs):
        method_state = method.set_hyper(method_state, key, get_key(self.configs[r], key))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=self.tx.init(params), method_state=method_state, rng=train_key)

  def initial_record(self) -> Record:
    """Every replica's empty :class:`~lwcl.core.record.Record`, as the run holds it."""
    T = self.scenario.num_tasks
    return self.replicas.each(lambda _: Record.zeros(
        T, self.config.eval.lca_batches, self.readouts.initial_record(T), self.config.train.epochs_per_task,
        self.method.report_keys, task_il=self.task_il_masks is not None))


def _stream_key(config) -> str:
  """What distinguishes one replica's stream from another's: its scenario settings, as text."""
  return repr(sorted(_flat(config.scenario.to_dict()).items()))


def _replica_state(config, scenario, preprocess, parallel, k, eval_batch_size, platforms):
  """``key -> (params, state)`` of one replica of ``config`` on ``scenario`` (parameters, batch statistics,
  optimizer and method state, as :meth:`Setup._initial_state` builds them): what
  :func:`lwcl.engine.budget.check_states` traces with ``jax.eval_shape``."""
  model = build_model(config.model, scenario, k, platforms)
  _check_input(model, scenario.image_shape, config)  # before tracing the network on images it cannot take
  fns, method, tx, _ = _parts(config, scenario, model, preprocess, parallel, eval_batch_size)

  def one_state(key):
    params, batch_stats = fns.init(key, scenario.image_shape)
    return params, (params, batch_stats, tx.init(params), method.init_state(params, batch_stats))
  return one_state


def _steps_per_epoch(streams, config) -> tuple:
  """Steps per epoch of each task, equal in every stream.

  Raises:
    UnequalStreams: two streams' tasks at one position differ in size.
  """
  per_stream = {tuple(steps_per_epoch(len(d), config.train.batch_size) for d in s.train_data) for s in streams}
  if len(per_stream) > 1:
    raise UnequalStreams("the replicas' streams differ in the size of their tasks, so they cannot train in "
                         f"lockstep (steps per epoch {sorted(per_stream)[:2]}...)")
  return per_stream.pop()


def _parts(config, scenario, model, preprocess, parallel, eval_batch_size, label_masks=None):
  """``(fns, method, tx, readouts)`` of one scenario, with its label masks or the given ``label_masks`` (one
  table per replica, :func:`lwcl.core.model_fns.task_masks`)."""
  masks = scenario.label_masks if label_masks is None else label_masks
  fns = layerwise.build_fns(config.layerwise, model, preprocess, masks, scenario.image_shape,
                            scenario.num_heads, scenario.output_dim)
  method = build_method(config.method, scenario, fns)
  tx = optim.optimizer(fns, method.transformation(), config.optimizer, config.train.epochs_per_task)
  readouts = layerwise.Readouts(fns, config.layerwise, strides=str(config.model.strides),
                                image_shape=scenario.image_shape, parallel=parallel,
                                eval_batch_size=eval_batch_size)
  return fns, method, tx, readouts


def _stream_parts(config, configs, scenarios, preprocess, parallel, replicas, steps_per_dispatch,
                  eval_batch_size, platforms) -> dict:
  """The fields of a :class:`Setup` that depend on the scenarios (one, or one per replica): model functions,
  method, optimizer, streams, read-outs and compiled steps. Task orders under masked heads have a table of
  label masks each: the model functions hold them stacked (``[R, max_tasks, O]``, read at each replica's
  index inside the vmapped program), and each distinct stream gets the host-side parts of its single run.
  The model's lowerings are those of ``platforms`` (:func:`lwcl.models.build_model`)."""
  first = scenarios[0]
  model = build_model(config.model, first, steps_per_dispatch, platforms)
  _check_input(model, first.image_shape, config)
  per_replica = any(not np.array_equal(sc.label_masks, first.label_masks) for sc in scenarios)
  masks = np.stack([sc.label_masks for sc in scenarios]) if per_replica else None
  fns, method, tx, readouts = _parts(config, first, model, preprocess, parallel, eval_batch_size, masks)
  by_scenario = {}  # replicas of one task order share its stream (and its host-side parts)
  for r, sc in enumerate(scenarios):
    if id(sc) not in by_scenario:
      parts = (_parts(configs[r], sc, model, preprocess, parallel, eval_batch_size) if per_replica else
               (fns, method, None, readouts))
      by_scenario[id(sc)] = (Stream(sc, tuple(method.training_data(sc, t) for t in range(sc.num_tasks))),
                             (parts[0], parts[1], parts[3]))
  streams = tuple(by_scenario[id(sc)][0] for sc in scenarios)
  host_parts = tuple(by_scenario[id(sc)][1] for sc in scenarios) if per_replica else ()
  epochs = config.train.epochs_per_task
  if any(c.optimizer.to_dict() != config.optimizer.to_dict() for c in configs):  # a learning rate per replica
    learning_rates = tuple(optim.LearningRates(fns, c.optimizer, epochs) for c in configs)
  else:
    learning_rates = (optim.LearningRates(fns, config.optimizer, epochs),)
  task_il = _task_il_masks(scenarios)
  return dict(streams=streams, fns=fns, method=method, tx=tx, learning_rates=learning_rates, readouts=readouts,
              steps_per_epoch=_steps_per_epoch(streams, config), host_parts=host_parts, task_il_masks=task_il,
              steps=compile_steps(fns, tx, method, parallel, replicas, len(streams) == 1, len(learning_rates) > 1,
                                  task_il))


def _check_input(model, image_shape: tuple, config) -> None:
  """Refuses images the network cannot take (:func:`lwcl.models.input_problem`) before anything is written.

  Raises:
    ConfigError: naming the model, the image shape, why, and where the shape comes from.
  """
  problem = input_problem(model, image_shape)
  if problem is None:
    return
  if int(config.data.get("image_size", 0) or 0):
    fix = "give a larger --config.data.image_size"
  else:
    fix = ("check the data's image shape (a record folder's features.json: image.shape), or choose a model "
           "that takes it (--config.model.name)")
  raise ConfigError(f"model.name={config.model.name} cannot take images of shape {list(image_shape)} "
                    f"({problem}); {fix}")


def _task_il_masks(scenarios) -> np.ndarray | None:
  """The tasks' classes of the Task-IL evaluation: None unless class-incremental; one table when every
  scenario has the same, else one per replica stacked (``[R, max_tasks, O]``, task orders)."""
  tables = [sc.task_il_masks for sc in scenarios]
  if tables[0] is None:
    return None
  return tables[0] if all(np.array_equal(t, tables[0]) for t in tables) else np.stack(tables)
