"""One continual-learning experiment in code: a :class:`~lwcl.engine.build.Setup` built once from a config, and
the stream loop (:func:`lwcl.engine.loop.run_stream`) over it.

    exp = Experiment(config)            # data, scenario, model, method, optimizer, compiled steps
    results = exp.run("runs/x")         # trains the stream (resuming), writes results.json; a dict
    exp.final_state                     # the train state after the run

``Experiment(config, replicas)`` trains several runs as replicas of one vmapped program: any
:class:`~lwcl.engine.replicas.Replicas`, e.g. seeds as ``lwcl.runs.axis.ReplicaAxis.of_seeds(seeds)``
(``run_replicas`` returns one results dict per replica; :func:`lwcl.runs.seeds.run_replicas` adds the
summary over seeds). Sweeps, task orders and the results-exist check are the caller's
(:mod:`lwcl.runs.driver`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import optax

from lwcl.core.model_fns import ModelFns
from lwcl.core.record import Record
from lwcl.core.state import TrainState
from lwcl.data.scenarios import Scenario
from lwcl.engine import loop
from lwcl.engine.build import Setup
from lwcl.engine.replicas import Replicas
from lwcl.methods import Method
from lwcl.platform.devices import DataParallel


class Experiment:
  """A run's setup and its stream loop.

  Attributes:
    setup: the :class:`~lwcl.engine.build.Setup` (everything built once from the config).
    final_state: the train state after :meth:`run` (with the replicas' leading axis when batched; for tests
      and notebooks).

  The setup's parts a user's own loop needs are typed properties (:attr:`config`, :attr:`scenario`,
  :attr:`fns`, :attr:`method`, :attr:`tx`, :attr:`parallel`, :attr:`train_data`, :attr:`steps_per_epoch`,
  and the compiled :attr:`train_step`, :attr:`train_steps`, :attr:`eval_step`); anything else is read from
  :attr:`setup`.

  ``platforms`` (a platform name or names: ``cpu``, ``cuda``, ``rocm``, ``tpu``; default: the default
  backend's) are the platforms the compiled steps are built for (:mod:`lwcl.platform.targets`): e.g.
  ``Experiment(config, platforms=('cuda',))`` on a CPU-only machine has steps that
  ``jax.export.export(exp.train_step, platforms=['cuda'])`` lowers for GPUs (``model.conv_impl=auto`` then
  takes no CPU lowering).

  Raises (constructor): the errors of :meth:`lwcl.engine.build.Setup.build` (ConfigError, DataError).
  """

  def __init__(self, config, replicas: Replicas | None = None, platforms=None):
    self.setup = Setup.build(config, replicas, platforms)
    self.final_state = None

  # -- the setup's parts (typed; no attribute forwarding) --------------------------------------------

  @property
  def config(self):
    """The run's locked ``ml_collections.ConfigDict``."""
    return self.setup.config

  @property
  def scenario(self) -> Scenario:
    """The task stream (:class:`~lwcl.data.scenarios.Scenario`), in the run's task order."""
    return self.setup.scenario

  @property
  def fns(self) -> ModelFns:
    """The model functions (forward pass, masked logits, training loss)."""
    return self.setup.fns

  @property
  def method(self) -> Method:
    """The continual method (:data:`lwcl.methods.METHODS`)."""
    return self.setup.method

  @property
  def tx(self) -> optax.GradientTransformationExtraArgs:
    """The method's transformation chained with the base optimizer."""
    return self.setup.tx

  @property
  def parallel(self) -> DataParallel:
    """The device mesh and shardings (``replicate``, ``put_batch``)."""
    return self.setup.parallel

  @property
  def train_data(self) -> tuple:
    """What each task trains on (:class:`~lwcl.data.examples.Examples` per task; joint training: the union
    of the tasks so far)."""
    return self.setup.train_data

  @property
  def steps_per_epoch(self) -> tuple:
    """Train steps per epoch of each task (ints)."""
    return self.setup.steps_per_epoch

  @property
  def train_step(self) -> Callable:
    """The compiled ``(state, batch, learning_rate) -> (state, metrics)`` (state donated;
    :func:`lwcl.engine.steps.make_train_step`)."""
    return self.setup.steps.train_step

  @property
  def train_steps(self) -> Callable:
    """The compiled K-step loop ``(state, data, steps, count) -> (state, losses)``
    (:func:`lwcl.engine.steps.make_train_steps`)."""
    return self.setup.steps.train_steps

  @property
  def eval_step(self) -> Callable:
    """The compiled ``(params, batch_stats, batch, method_state) -> (correct, count)``, with the Task-IL
    hits third in a class-incremental scenario (:func:`lwcl.engine.steps.make_eval_step`; ``method_state``
    is read only by a method with its own ``eval_scores``)."""
    return self.setup.steps.eval_step

  # -- running ---------------------------------------------------------------------------------------

  def reorder(self, order) -> None:
    """Switches to another task order (:meth:`lwcl.engine.build.Setup.with_task_order`)."""
    self.setup = self.setup.with_task_order(order)

  def initial_state(self) -> TrainState:
    """The state at the start of the stream (every replica's, from its seed)."""
    return self.setup.initial_state()

  def initial_record(self) -> Record:
    """An empty :class:`~lwcl.core.record.Record` of this stream (every replica's)."""
    return self.setup.initial_record()

  def evaluate(self, state: TrainState, split: str = "test") -> np.ndarray:
    """Accuracy on every task of the stream, float32 ``[T]`` (``[R, T]`` for replicas)."""
    return loop.evaluate(self.setup, state, split)

  def run(self, workdir: str, on_step: Callable[[int], None] | None = None,
          on_task_end: Callable[[int, TrainState], None] | None = None) -> dict:
    """Trains and evaluates the whole stream of a single run in ``workdir`` (resuming when it holds a
    checkpoint); returns its results dict (also in ``workdir/results.json``).

    Args and raises: those of :func:`lwcl.engine.loop.run_stream`; also
    ValueError: the experiment has replicas (use :meth:`run_replicas`).
    """
    if self.setup.replicas.batched:
      raise ValueError(f"this experiment trains {self.setup.replicas.describe()} as replicas; "
                       "run_replicas returns each replica's results")
    return self.run_replicas(workdir, on_step, on_task_end)[0]

  def run_replicas(self, workdir: str, on_step: Callable[[int], None] | None = None,
                   on_task_end: Callable[[int, TrainState], None] | None = None,
                   done: list | None = None) -> list:
    """Trains every replica's stream (one vmapped program) in ``workdir``; returns one results dict per
    replica, in order (one for a single run).

    Args:
      done: per replica, its finished results (reported as found, not trained again), or None.
      Others, and raises: those of :func:`lwcl.engine.loop.run_stream`.
    """
    results, self.final_state = loop.run_stream(self.setup, workdir, done, on_step, on_task_end)
    return results
