"""One continual-learning experiment in code: a :class:`~lwcl.engine.build.Setup` built once from a config, and
the stream loop (:func:`lwcl.engine.loop.run_stream`) over it.

    exp = Experiment(config)            # data, scenario, model, method, optimizer, compiled steps
    results = exp.run("runs/x")         # trains the stream (resuming), writes results.json; a dict
    exp.final_state                     # the train state after the run

``Experiment(config, ReplicaAxis.of_seeds(seeds))`` trains several seeds as replicas of one vmapped program
(``run`` then returns one results dict per seed; :func:`lwcl.runs.seeds.run_replicas` adds the summary).
Sweeps, task orders and the results-exist check are the caller's (:mod:`lwcl.runs.driver`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from lwcl.core.state import TrainState
from lwcl.engine import loop
from lwcl.engine.build import Setup
from lwcl.engine.replica_axis import ReplicaAxis


class Experiment:
  """A run's setup and its stream loop.

  Attributes:
    setup: the :class:`~lwcl.engine.build.Setup` (``config``, ``scenario``, ``fns``, ``method``, ``steps``, ...,
      also readable as attributes of the experiment).
    final_state: the train state after :meth:`run` (with the replica axis; for tests and notebooks).

  Raises (constructor): the errors of :meth:`lwcl.engine.build.Setup.build` (ConfigError, DataError).
  """

  def __init__(self, config, axis: ReplicaAxis | None = None):
    self.setup = Setup.build(config, axis)
    self.final_state = None

  def __getattr__(self, name: str):
    """The setup's fields (``config``, ``scenario``, ``fns``, ``method``, ``tx``, ``parallel``, ...) and
    its compiled steps (``train_step``, ``train_steps``, ``eval_step``) as attributes."""
    setup = self.__dict__.get("setup")
    if setup is None:
      raise AttributeError(name)
    if name in ("train_step", "train_steps", "eval_step"):
      return getattr(setup.steps, name)
    return getattr(setup, name)

  def reorder(self, order) -> None:
    """Switches to another task order (:meth:`lwcl.engine.build.Setup.with_order`)."""
    self.setup = self.setup.with_order(order)

  def initial_state(self) -> TrainState:
    """The state at the start of the stream (every replica's, from its seed)."""
    return self.setup.initial_state()

  def initial_record(self):
    """An empty :class:`~lwcl.core.record.Record` of this stream (every replica's)."""
    return self.setup.initial_record()

  def evaluate(self, state: TrainState, split: str = "test") -> np.ndarray:
    """Accuracy on every task of the stream, float32 ``[T]`` (``[R, T]`` for replicas)."""
    return loop.evaluate(self.setup, state, split)

  def run(self, workdir: str, on_step: Callable[[int], None] | None = None,
          on_task_end: Callable[[int, TrainState], None] | None = None, done: list | None = None):
    """Trains and evaluates the whole stream in ``workdir`` (resuming when it holds a checkpoint).

    Args and raises: those of :func:`lwcl.engine.loop.run_stream` (``done``: per replica, finished results).
    Returns:
      The results dict (also in ``workdir/results.json``); for replicas the list of every seed's.
    """
    results, self.final_state = loop.run_stream(self.setup, workdir, done, on_step, on_task_end)
    return results if self.setup.axis.batched else results[0]
