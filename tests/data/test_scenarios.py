"""lwcl.data.scenarios: split, permuted and rotated scenarios on synthetic data."""


import numpy as np
import pytest

from lwcl.data import scenarios
from lwcl.errors import ConfigError

from helpers import small_config, synthetic_dataset


def test_split_task_incremental_multi_head():
  ds = synthetic_dataset()
  cfg = small_config(**{"scenario.num_tasks": 5, "scenario.samples_per_task": 0})
  sc = scenarios.build_scenario(cfg.scenario, ds)
  assert sc.num_heads == 5 and sc.output_dim == 2 and sc.label_masks.all()
  for t, task in enumerate(sc.tasks):
    assert task.classes == (2 * t, 2 * t + 1)
    assert set(np.unique(task.train.labels)) == {0, 1}
    assert len(task.train) == 40 and len(task.test) == 20


def test_split_masked_and_class_incremental_keep_global_labels():
  ds = synthetic_dataset()
  masked = scenarios.build_scenario(small_config(**{"scenario.task_heads": "masked"}).scenario, ds)
  assert masked.num_heads == 1 and masked.output_dim == 10
  np.testing.assert_array_equal(masked.label_masks[1], np.isin(np.arange(10), [2, 3]))
  assert set(np.unique(masked.tasks[1].train.labels)) == {2, 3}
  cls = scenarios.build_scenario(small_config(**{"scenario.incremental": "class"}).scenario, ds)
  assert cls.num_heads == 1 and cls.output_dim == 10 and cls.label_masks.all()
  assert set(np.unique(cls.tasks[2].test.labels)) == {4, 5}


def test_task_il_masks_are_each_tasks_classes_in_class_incremental_scenarios_only():
  ds = synthetic_dataset()
  cls = scenarios.build_scenario(small_config(**{"scenario.incremental": "class", "scenario.max_tasks": 4,
                                                 "scenario.order_seed": 3}).scenario, ds)
  masks = cls.task_il_masks
  assert masks.shape == (4, 10) and masks.dtype == bool and not masks[3].any()  # a padded slot: no class
  for t, task in enumerate(cls.tasks):  # the classes of each task in stream order (the order applied)
    np.testing.assert_array_equal(np.flatnonzero(masks[t]), sorted(task.classes))
  assert [t.classes for t in cls.tasks] != [(0, 1), (2, 3), (4, 5)]
  for overrides in ({}, {"scenario.task_heads": "masked"}, {"scenario.incremental": "domain"}):
    assert scenarios.build_scenario(small_config(**overrides).scenario, ds).task_il_masks is None
  permuted = scenarios.build_scenario(small_config(**{"scenario.incremental": "class",
                                                      "scenario.kind": "permuted"}).scenario, ds)
  assert permuted.task_il_masks.all()  # every task holds every class: Task-IL is Class-IL


def test_class_and_task_order_and_samples_and_validation():
  ds = synthetic_dataset(n=400)
  cfg = small_config(**{"scenario.class_order": (9, 8, 7, 6, 5, 4), "scenario.order_seed": 3,
                        "scenario.samples_per_task": 30, "scenario.validation_fraction": 0.25})
  sc = scenarios.build_scenario(cfg.scenario, ds)
  order = scenarios.task_order(3, 3)
  assert [t.classes for t in sc.tasks] == [((9, 8), (7, 6), (5, 4))[i] for i in order]
  for task in sc.tasks:
    assert len(task.train) == 30 and len(task.valid) == 20  # 80 per task, a quarter held out
    # validation and training examples are disjoint
    tr = {a.tobytes() for a in task.train.images}
    assert not tr & {a.tobytes() for a in task.valid.images}


def test_impossible_scenarios_raise_config_errors():
  ds = synthetic_dataset()
  with pytest.raises(ConfigError, match="cannot be split evenly"):
    scenarios.build_scenario(small_config(**{"scenario.num_tasks": 3,
                                             "scenario.classes_per_task": 0}).scenario, ds)
  with pytest.raises(ConfigError, match="need 12 classes"):
    scenarios.build_scenario(small_config(**{"scenario.num_tasks": 6}).scenario, ds)
  with pytest.raises(ConfigError, match="class_order"):
    scenarios.build_scenario(small_config(**{"scenario.class_order": (1, 1, 2)}).scenario, ds)


def test_permuted_applies_one_fixed_permutation_per_task():
  ds = synthetic_dataset()
  sc = scenarios.build_scenario(small_config(**{"scenario.kind": "permuted",
                                                "scenario.samples_per_task": 0}).scenario, ds)
  assert sc.output_dim == 10 and sc.num_heads == 3
  seen = []
  for task in sc.tasks:
    perm = np.random.default_rng(task.transform["permutation_seed"]).permutation(36)
    np.testing.assert_array_equal(task.test.images.reshape(-1, 36)[:, :],
                                  ds.test_images.reshape(-1, 36)[:, perm])
    seen.append(tuple(perm))
  assert len(set(seen)) == 3


def test_rotated_rotates_by_the_task_angle():
  ds = synthetic_dataset()
  sc = scenarios.build_scenario(small_config(**{"scenario.kind": "rotated", "scenario.angles": (0.0, 90.0, 180.0),
                                                "scenario.incremental": "domain"}).scenario, ds)
  assert sc.num_heads == 1
  np.testing.assert_array_equal(sc.tasks[0].test.images, ds.test_images)
  np.testing.assert_array_equal(sc.tasks[1].test.images, np.rot90(ds.test_images, 1, axes=(1, 2)))
  np.testing.assert_array_equal(sc.tasks[2].test.images, ds.test_images[:, ::-1, ::-1])


@pytest.mark.parametrize("overrides", [
    {"scenario.kind": "split", "scenario.samples_per_task": 0},
    {"scenario.kind": "permuted", "scenario.num_tasks": 4, "scenario.validation_fraction": 0.25},
    {"scenario.kind": "rotated", "scenario.num_tasks": 2, "scenario.samples_per_task": 30}])
def test_held_bytes_is_what_the_built_tasks_hold(overrides):
  ds = synthetic_dataset()
  cfg = small_config(**overrides).scenario
  need, rows = scenarios.held_bytes(cfg, ds, scenarios.SCENARIOS[cfg.kind].tasks(cfg, ds)[0])
  built = [e for task in scenarios.build_scenario(cfg, ds).tasks for e in (task.train, task.valid, task.test)]
  assert rows == sum(len(e) for e in built)
  assert need == sum(e.images.nbytes + e.labels.nbytes + e.tasks.nbytes for e in built)


def test_tasks_that_cannot_fit_in_memory_are_refused_before_they_are_built(monkeypatch):
  ds = synthetic_dataset()
  cfg = small_config(**{"scenario.kind": "permuted", "scenario.num_tasks": 4}).scenario
  need, _ = scenarios.held_bytes(cfg, ds, scenarios.SCENARIOS["permuted"].tasks(cfg, ds)[0])
  build_task = scenarios._train_valid
  monkeypatch.setattr(scenarios.host_memory, "limit_bytes", lambda: need - 1)
  monkeypatch.setattr(scenarios, "_train_valid", lambda *a: pytest.fail("a task was built"))
  with pytest.raises(ConfigError, match=r"num_tasks=4 permuted tasks .* would take at least .* \(about 3 fit\)$"):
    scenarios.build_scenario(cfg, ds)
  monkeypatch.setattr(scenarios.host_memory, "limit_bytes", lambda: need)  # exactly what fits
  monkeypatch.setattr(scenarios, "_train_valid", build_task)
  assert scenarios.build_scenario(cfg, ds).num_tasks == 4
