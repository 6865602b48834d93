"""lwcl.engine.steps: the evaluation step's Task-IL hits (class-incremental scenarios) are the argmax of the
same scores over each example's task's classes, against NumPy; without a table the step is the Class-IL
one, traced as before."""

import jax
import numpy as np

from lwcl.engine import experiment
from lwcl.engine.steps import make_eval_step

from helpers import small_config


def test_the_eval_step_counts_task_il_hits_of_the_same_logits():
  exp = experiment.Experiment(small_config(**{"scenario.incremental": "class", "data.normalize": "unit"}))
  table = exp.scenario.task_il_masks
  assert np.array_equal(exp.setup.task_il_masks, table)
  state = exp.initial_state()
  task = exp.scenario.tasks[1]
  batch = {"image": task.test.images[:64], "label": task.test.labels[:64], "task": task.test.tasks[:64],
           "mask": np.r_[np.ones(60, np.float32), np.zeros(4, np.float32)]}  # 4 padding rows
  logits = np.asarray(exp.fns.logits(state.params, state.batch_stats, batch, train=False)[0], np.float64)
  classes = np.asarray(task.classes)
  real = batch["mask"] > 0
  want = np.sum((np.argmax(logits, -1) == batch["label"])[real])
  want_task_il = np.sum((classes[np.argmax(logits[:, classes], -1)] == batch["label"])[real])
  correct, count, task_il = jax.jit(make_eval_step(exp.fns, exp.method, table))(
      state.params, state.batch_stats, batch, state.method_state)
  assert (float(correct), float(count), float(task_il)) == (want, 60.0, want_task_il)
  assert want_task_il >= want  # restricting the argmax to a set holding the label only helps
  assert len(exp.eval_step(state.params, state.batch_stats, batch, state.method_state)) == 3  # the run's step
  plain = jax.jit(make_eval_step(exp.fns, exp.method))(state.params, state.batch_stats, batch, state.method_state)
  assert len(plain) == 2 and float(plain[0]) == want


def test_other_scenarios_compile_the_class_il_step_alone():
  exp = experiment.Experiment(small_config())  # task-incremental, a head per task
  assert exp.setup.task_il_masks is None and exp.initial_record().task_il_R is None
  state, task = exp.initial_state(), exp.scenario.tasks[0]
  batch = {"image": task.test.images[:8], "label": task.test.labels[:8], "task": task.test.tasks[:8],
           "mask": np.ones(8, np.float32)}
  assert len(exp.eval_step(state.params, state.batch_stats, batch, state.method_state)) == 2
