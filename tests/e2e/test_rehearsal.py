"""Rehearsal on real data: on a class-incremental stream of Fashion-MNIST, where fine-tuning forgets every
earlier task (its accuracy on them falls to about 0: one shared head, only the last task's classes
predicted), ER, DER and DER++ keep a share of the old tasks, as the literature reports (Buzzega et al.
2020, Table 2: on Seq-MNIST class-IL, DER++ >= DER >= ER >> LwF ~ fine-tuning)."""

import numpy as np
import pytest

from lwcl.runs import driver

from helpers import small_config

# 3 tasks of 2 classes, one 10-way head, 300 examples per task, 2 epochs of batch 10 (60 steps per task),
# Mammoth's seq-mnist optimizer (SGD 0.03, no momentum), a buffer of 100.
STREAM = {"scenario.incremental": "class", "scenario.samples_per_task": 300, "train.batch_size": 10,
          "train.epochs_per_task": 2, "optimizer.momentum": 0.0, "optimizer.learning_rate": 0.03,
          "method.buffer_size": 100, "method.replay_batch": 10, "seed": 0}


@pytest.fixture(scope="module")
def finetune(tmp_path_factory):
  return driver.run(small_config(**STREAM, **{"method.name": "finetune"}),
                    str(tmp_path_factory.mktemp("finetune")))


def _old_tasks(results) -> float:
  """Mean final accuracy on every task but the last."""
  return float(np.mean(np.asarray(results["accuracy_matrix"])[-1, :-1]))


def test_fine_tuning_forgets_the_old_classes(finetune):
  assert _old_tasks(finetune) < 0.05, finetune["accuracy_matrix"]


@pytest.mark.parametrize("method,extra", [("er", {}), ("der", {"method.der_alpha": 0.3}),
                                          ("derpp", {"method.der_alpha": 0.3, "method.der_beta": 0.5})])
def test_rehearsal_keeps_part_of_the_old_classes(tmp_path, finetune, method, extra):
  results = driver.run(small_config(**STREAM, **{"method.name": method, **extra}), str(tmp_path))
  assert _old_tasks(results) > _old_tasks(finetune) + 0.2, (results["accuracy_matrix"], finetune["acc"])
  assert results["acc"] > finetune["acc"] + 0.1
