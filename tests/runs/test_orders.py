"""lwcl.runs.orders: task orders, one after another or as replicas, and their summary."""

import os

import numpy as np
import pytest

from lwcl.engine import experiment
from lwcl.engine.build import Setup
from lwcl.errors import ConfigError, Interrupted
from lwcl.runs import driver, orders
from lwcl.runs.axis import ReplicaAxis

from helpers import small_config


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_orders_reuse_compiled_steps_and_summarize(tmp_path):
  config = small_config(**{"num_orders": 2})
  order0, order1 = orders.config_orders(config)
  assert order0 == list(range(config.scenario.num_tasks)) and order1 != order0  # order 0: as defined
  exp = experiment.Experiment(orders.order_config(config, order0))
  first = exp.run(str(tmp_path / "order0"))
  exp.reorder(order1)
  second = exp.run(str(tmp_path / "order1"))
  assert exp.train_step._cache_size() == 1  # one compilation for both orders  # pylint: disable=protected-access
  names0 = [t["name"] for t in first["tasks"]]
  names1 = [t["name"] for t in second["tasks"]]
  assert sorted(names0) == sorted(names1)
  # run_orders finds both finished orders and only summarizes.
  results = orders.run_orders(config, str(tmp_path))
  accs = [first["acc"], second["acc"]]
  assert results["acc"]["mean"] == pytest.approx(np.mean(accs))
  assert results["acc"]["std"] == pytest.approx(np.std(accs))
  spread = results["task_final_accuracy"]
  assert set(spread) == set(names0)
  j = names1.index(names0[0])
  np.testing.assert_allclose(sorted([first["accuracy_matrix"][-1][0], second["accuracy_matrix"][-1][j]]),
                             [spread[names0[0]]["min"], spread[names0[0]]["max"]])
  assert os.path.exists(tmp_path / "acc_per_order.png")
  assert [o["task_order"] for o in results["orders"]] == [order0, order1]
  assert [o["tasks"] for o in results["orders"]] == [names0, names1]


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
@pytest.mark.parametrize("overrides", [
    {"method.name": "ewc"},  # one head per task: every order shares the label masks
    # masked task-incremental heads: each order's masks are replica data (a table per replica, read at the
    # replica's index inside the vmapped program), in layer-wise local mode (every auxiliary head masked);
    # A-GEM's memory gradients use them (the plain network's case: tests/runs/test_driver.py)
    {"method.name": "agem", "scenario.task_heads": "masked", "train.steps_per_dispatch": 3,
     "layerwise.mode": "local"},
    # class-incremental: one head for every order, but each order's tasks' classes for the Task-IL matrix,
    # a table per replica as the masked heads' masks are (one after another: the eval step compiled anew)
    {"scenario.incremental": "class"}])
def test_orders_as_replicas_equal_the_orders_one_after_another(tmp_path, overrides):
  config = small_config(**{"num_orders": 3, **overrides})
  setup = Setup.build(config, ReplicaAxis.of_orders(config.seed, orders.config_orders(config)))
  assert setup.fns.masks_per_replica == ("scenario.task_heads" in overrides)  # a table per order, as data
  class_il = overrides.get("scenario.incremental") == "class"
  assert (setup.task_il_masks is not None and setup.task_il_masks.shape == (3, 3, 10)) == class_il
  replicas = driver.run(config, str(tmp_path / "replicas"))
  assert "checkpoints" in os.listdir(tmp_path / "replicas")  # one program, one stacked checkpoint
  sequential = config.copy_and_resolve_references()
  sequential.orders_as_replicas = False
  one_by_one = driver.run(sequential, str(tmp_path / "sequential"))
  assert "checkpoints" not in os.listdir(tmp_path / "sequential")
  assert replicas["kind"] == one_by_one["kind"] == "orders"
  for got, want in zip(replicas["orders"], one_by_one["orders"]):
    assert got["task_order"] == want["task_order"] and got["tasks"] == want["tasks"]
    np.testing.assert_allclose(got["accuracy_matrix"], want["accuracy_matrix"], atol=2e-3)
    assert ("task_il_accuracy_matrix" in got) == ("task_il_accuracy_matrix" in want) == class_il
    if class_il:
      np.testing.assert_allclose(got["task_il_accuracy_matrix"], want["task_il_accuracy_matrix"], atol=2e-3)
      assert got["task_il_acc"] > got["acc"]  # fine-tuning forgets the old classes, less so with the task given
  assert ("task_il_acc" in replicas) == class_il and ("TASK-IL ACC" in orders.format_summary(replicas)) == class_il
  # Each order's folder is the finished single run of that order.
  for r, order in enumerate(orders.config_orders(config)):
    single = driver.run(orders.order_config(config, order), str(tmp_path / "replicas" / f"order{r}"))
    assert single["accuracy_matrix"] == replicas["orders"][r]["accuracy_matrix"]
    assert single.get("task_il_accuracy_matrix") == replicas["orders"][r].get("task_il_accuracy_matrix")
    assert single["replica"]["num_replicas"] == 3 and single["replica"]["of"] == "3 task orders"


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_orders_as_replicas_resume_after_an_interruption(tmp_path, capsys):
  config = small_config(**{"num_orders": 2, "method.name": "si", "checkpoint.every_steps": 4})

  def interrupt(step):
    if step == 13:  # task 2, after the checkpoint at step 12
      raise KeyboardInterrupt

  with pytest.raises(Interrupted, match="rerun the same command to resume"):
    driver.run(config, str(tmp_path / "run"), on_step=interrupt)
  resumed = driver.run(config, str(tmp_path / "run"))
  assert "resuming 2 task orders from checkpoint at task 2, step 2" in capsys.readouterr().out
  uninterrupted = driver.run(config, str(tmp_path / "uninterrupted"))
  assert [o["accuracy_matrix"] for o in resumed["orders"]] == [o["accuracy_matrix"] for o in uninterrupted["orders"]]
  assert "over 2 task orders" in driver.format_summary(resumed)


@pytest.mark.parametrize("num_tasks,num_orders", [(3, 6), (5, 10), (9, 10)])
def test_orders_are_distinct_and_start_with_the_stream_as_defined(num_tasks, num_orders):
  first = [int(i) for i in np.random.default_rng(7).permutation(num_tasks)]
  got = orders.distinct_orders(num_tasks, num_orders, first)
  assert got[0] == first and len(got) == num_orders
  assert len({tuple(o) for o in got}) == num_orders  # pairwise distinct
  assert all(sorted(o) == list(range(num_tasks)) for o in got)
  assert orders.distinct_orders(num_tasks, num_orders, first) == got  # deterministic


def test_more_orders_than_permutations_and_bad_task_order_are_refused(tmp_path):
  with pytest.raises(ConfigError, match="at most 6"):
    orders.run_orders(small_config(**{"num_orders": 7, "scenario.num_tasks": 3}), str(tmp_path))
  assert not os.listdir(tmp_path)  # refused before any run
  with pytest.raises(ConfigError, match="not a permutation"):
    experiment.Experiment(small_config(**{"scenario.task_order": (0, 0)}))
