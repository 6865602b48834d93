"""Task-IL accuracies of class-incremental runs (Mammoth's ``mask_classes``; Buzzega et al. 2020 report both
columns from one run): the matrix against a NumPy argmax of the final network's logits over each task's
classes, never below Class-IL on the tasks seen, absent from other runs, in the terminal summary, resumed
to identical results, and an older checkpoint without it refused with one line."""

import os

import flax.serialization
import numpy as np
import pytest

from lwcl.core import metrics
from lwcl.core.record import Progress
from lwcl.engine.experiment import Experiment
from lwcl.errors import CheckpointError, Interrupted
from lwcl.io.checkpoint import RunCheckpointer
from lwcl.io.results import result_config
from lwcl.runs import driver

import helpers
from helpers import assert_same_stream, small_config

# 3 tasks of 2 classes on one 10-way head, 120 examples each (6 steps of 20), fine-tuning: the old classes
# are forgotten in Class-IL, much less so with the task given.
CLASS_IL = {**helpers.TINY, "scenario.num_tasks": 3, "scenario.incremental": "class"}


@pytest.fixture(scope="module")
def class_il(tmp_path_factory):
  exp = Experiment(small_config(**CLASS_IL))
  return exp, exp.run(str(tmp_path_factory.mktemp("class_il")))


def test_the_task_il_matrix_is_the_argmax_over_each_tasks_classes(class_il):
  exp, results = class_il
  state = exp.final_state
  task_il, R = np.asarray(results["task_il_accuracy_matrix"]), np.asarray(results["accuracy_matrix"])
  assert task_il.shape == R.shape == (3, 3)
  for j, task in enumerate(exp.scenario.tasks):  # the final network, on the test split, in NumPy
    batch = {"image": task.test.images, "task": task.test.tasks}
    logits = np.asarray(exp.fns.logits(state.params, state.batch_stats, batch, train=False)[0], np.float64)
    labels, classes = np.asarray(task.test.labels), np.asarray(task.classes)
    assert abs(task_il[-1, j] - np.mean(classes[np.argmax(logits[:, classes], 1)] == labels)) <= 1e-6, j
    assert abs(R[-1, j] - np.mean(np.argmax(logits, 1) == labels)) <= 1e-6, j
  assert results["task_il_acc"] == metrics.acc(task_il) and results["task_il_bwt"] == metrics.bwt(task_il)
  assert results["task_il_forgetting"] == metrics.forgetting(task_il)
  assert task_il[-1, 0] > R[-1, 0] + 0.3  # not the Class-IL numbers: task 1's classes, forgotten in Class-IL


def test_task_il_is_never_below_class_il_on_the_tasks_seen(class_il):
  _, results = class_il
  task_il, R = np.asarray(results["task_il_accuracy_matrix"]), np.asarray(results["accuracy_matrix"])
  seen = np.tril(np.ones_like(R, bool))  # row i: after task i, on tasks j <= i
  assert np.all(task_il[seen] >= R[seen]), (task_il, R)


def test_the_terminal_summary_gives_the_task_il_acc(class_il):
  _, results = class_il
  text = driver.format_summary(results)
  assert f"Task-IL (each task's classes only): ACC {100 * results['task_il_acc']:.2f}%" in text, text


def test_other_runs_record_no_task_il(tmp_path):
  for incremental in ("task", "domain"):
    results = driver.run(small_config(**{**CLASS_IL, "scenario.incremental": incremental}),
                         str(tmp_path / incremental))
    assert not [k for k in results if "task_il" in k], incremental
    assert "Task-IL" not in driver.format_summary(results)


def test_a_resumed_class_il_run_gives_the_identical_task_il_matrix(class_il, tmp_path, capsys):
  _, want = class_il
  workdir = str(tmp_path / "run")

  def interrupt(step):
    if step == 9:  # task 2, after the checkpoint at its start (the end of task 1)
      raise KeyboardInterrupt

  with pytest.raises(Interrupted):
    driver.run(small_config(**CLASS_IL), workdir, on_step=interrupt)
  got = driver.run(small_config(**CLASS_IL), workdir)
  assert "resuming from checkpoint at task 2, step 0" in capsys.readouterr().out
  assert_same_stream(got, want)
  assert got["task_il_accuracy_matrix"] == want["task_il_accuracy_matrix"]


def test_a_checkpoint_without_the_task_il_matrix_is_refused_with_one_line(class_il, tmp_path):
  # What an lwcl before the Task-IL matrix left in a class-incremental run's workdir after task 1.
  exp, _ = class_il
  workdir = str(tmp_path / "old")
  ckpt = RunCheckpointer(os.path.join(workdir, "checkpoints"), 2, result_config(exp.config.to_dict()),
                         exp.setup.data_fingerprint)
  record = flax.serialization.to_state_dict(exp.initial_record())
  del record["task_il_R"]
  ckpt.save(6, {"state": exp.initial_state(), "record": record}, Progress(task=1).to_meta())
  ckpt.close()
  with pytest.raises(CheckpointError) as e:
    driver.run(exp.config, workdir)
  message = str(e.value)
  assert "\n" not in message and "corrupt" not in message, message
  assert "was written by an older lwcl: it lacks record.task_il_R (the Task-IL accuracy matrix" in message
  assert message.endswith("; finish that run with the lwcl version that started it, or use a new --workdir")
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["6"]
  assert not os.path.exists(os.path.join(workdir, "results.json"))
