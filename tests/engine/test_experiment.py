"""lwcl.engine.experiment: the compiled train steps of an Experiment."""


import jax
import numpy as np

from lwcl.data.pipeline import step_indices
from lwcl.engine import experiment

from helpers import small_config


def test_train_steps_runs_count_steps_of_k():
  exp = experiment.Experiment(small_config(**{"train.steps_per_dispatch": 4}))
  assert exp.setup.steps_per_dispatch == 4
  state = exp.parallel.replicate(exp.initial_state())
  data = exp.parallel.replicate({"image": exp.train_data[0].images, "label": exp.train_data[0].labels,
                                 "task": exp.train_data[0].tasks})
  steps = {"index": step_indices(len(exp.train_data[0]), 20, 0, 0, 10, 0, 2, rows=4),
           "learning_rate": np.full(4, 0.01, np.float32)}
  state, losses = exp.train_steps(state, data, steps, np.int32(2))
  losses = np.asarray(jax.device_get(losses))
  assert np.isfinite(losses).all() and (losses[:2] > 0).all() and (losses[2:] == 0).all()
  assert int(state.step) == 2
