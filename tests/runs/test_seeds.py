"""``num_seeds``: R seeds as replicas of one vmapped program (lwcl/runs/seeds.py, lwcl/runs/summaries.py).

Replica r equals the single run of seed ``seed + r`` (two tasks, so the method's end-of-task update and
its use in the second task are exercised); the driver writes each seed's results and the summary, resumes
after an interruption and reports a finished workdir; unsupported combinations are one-line errors.
"""

import json
import os
import types

import numpy as np
import pytest

from lwcl.core import metrics
from lwcl.engine import loop, run_io
from lwcl.engine.experiment import Experiment
from lwcl.errors import ConfigError, DivergenceError, Interrupted
from lwcl.runs import driver
from lwcl.runs import seeds as replicas
from lwcl.runs import summaries as replica_results
from lwcl.runs.axis import ReplicaAxis

import helpers
from helpers import small_config

TINY = {**helpers.TINY, "seed": 3}


def tiny(**extra):
  return small_config(**{**TINY, **extra})


# (method, train.steps_per_dispatch, epochs per task, replicas compared with their single runs); the last
# replica's seed differs from config.seed, so that comparison also checks that each replica trains from its
# own seed. Every method at one step per dispatch and one epoch (replica 1 against its single run: step,
# parameters, method state, accuracy matrix) is tests/methods/test_contract.py's
# test_a_replica_equals_its_single_run (the same stream and seeds); here the cases it does not cover.
@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
@pytest.mark.parametrize("method,steps_per_dispatch,epochs,compared,extra", [
    ("finetune", 3, 1, (0, 1), {}),  # several steps per dispatch; every replica
    ("ewc", 1, 2, (1,), {}),  # two epochs per task
    ("finetune", 1, 1, (1,), {"scenario.incremental": "class"})])  # the Task-IL matrix of the logits too
def test_replica_r_matches_the_single_run_of_seed_plus_r(tmp_path, method, steps_per_dispatch, epochs, compared,
                                                         extra):
  config = tiny(**{"method.name": method, "num_seeds": 2, "train.steps_per_dispatch": steps_per_dispatch,
                   "train.epochs_per_task": epochs, **helpers.method_overrides(method), **extra})
  reps = Experiment(config, ReplicaAxis.of_seeds(replica_results.seeds_of(config)))
  summary = replica_results.summarize(config, reps.run_replicas(str(tmp_path / "replicas")))
  assert summary["seeds"] == [3, 4]
  for r in compared:
    seed = 3 + r
    exp = Experiment(replica_results.seed_config(config, seed))
    single = exp.run(str(tmp_path / f"single{seed}"))
    got = replicas.replica(reps.final_state, r)
    assert int(got.step) == int(exp.final_state.step) >= 12 * epochs  # >= 6 steps per epoch, 2 tasks
    helpers.assert_close_per_leaf(got.params, exp.final_state.params)
    helpers.assert_close_per_leaf(got.method_state, exp.final_state.method_state)
    np.testing.assert_allclose(summary["runs"][r]["accuracy_matrix"], single["accuracy_matrix"], atol=2e-3)
    assert ("task_il_accuracy_matrix" in single) == bool(extra)
    if extra:  # class-incremental
      np.testing.assert_allclose(summary["runs"][r]["task_il_accuracy_matrix"], single["task_il_accuracy_matrix"],
                                 atol=2e-3)
  if extra:
    values = [run["task_il_acc"] for run in summary["runs"]]
    assert summary["task_il_acc"]["mean"] == pytest.approx(np.mean(values)) and summary["task_il_acc"]["n"] == 2
    assert "TASK-IL ACC" in replica_results.format_summary(summary)


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_driver_writes_every_seed_and_the_summary_resumes_and_reports_finished(tmp_path, capsys, monkeypatch):
  config = tiny(**{"method.name": "si", "num_seeds": 2, "checkpoint.every_steps": 4})
  workdir = str(tmp_path / "run")

  def interrupt(step):
    if step == 9:  # task 2, after the checkpoint at step 8
      raise KeyboardInterrupt

  with pytest.raises(Interrupted, match="rerun the same command to resume"):  # Ctrl-C: one line
    driver.run(config, workdir, on_step=interrupt)
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  results = json.loads(json.dumps(driver.run(config, workdir)))  # tuples as in the file
  assert "resuming 2 seeds from checkpoint at task 2, step 2" in capsys.readouterr().out

  runs = []
  for seed in (3, 4):
    with open(os.path.join(workdir, f"seed{seed}", "results.json")) as f:
      runs.append(json.load(f))
    assert runs[-1]["config"]["seed"] == seed and runs[-1]["config"]["num_seeds"] == 0
    assert np.asarray(runs[-1]["accuracy_matrix"]).shape == (2, 2)
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f) == results
  for k in ("acc", "bwt", "fwt", "forgetting"):
    values = [r[k] for r in runs]
    assert results[k]["mean"] == pytest.approx(np.mean(values))
    assert results[k]["std"] == pytest.approx(np.std(values))
    assert results[k]["n"] == 2
  assert [r["acc"] for r in results["runs"]] == [r["acc"] for r in runs]
  assert "mean" in driver.format_summary(results) and "over 2 seeds" in driver.format_summary(results)

  # Uninterrupted, the same replicas give the same results (the resumed run continued exactly).
  uninterrupted = driver.run(config, str(tmp_path / "uninterrupted"))
  assert [r["accuracy_matrix"] for r in uninterrupted["runs"]] == [r["accuracy_matrix"] for r in runs]

  # Finished: reported again without training; each seed's folder is a finished single run of its seed.
  monkeypatch.setattr(loop, "run_stream", lambda *a, **k: pytest.fail("retrained a finished workdir or seed"))
  assert driver.run(config, workdir) == results
  os.remove(os.path.join(workdir, "results.json"))  # a summary lost after every seed finished
  assert driver.run(config, workdir)["runs"] == results["runs"]
  assert driver.run(replica_results.seed_config(config, 4), os.path.join(workdir, "seed4")) == runs[1]
  # Another experiment's results in a seed's folder are refused before anything is trained.
  os.makedirs(tmp_path / "foreign" / "seed3")
  with open(tmp_path / "foreign" / "seed3" / "results.json", "w") as f:
    json.dump(runs[1], f)  # seed 4's
  with pytest.raises(ConfigError, match="different experiment"):
    driver.run(config, str(tmp_path / "foreign"))


@pytest.mark.parametrize("overrides,message", [
    ({"num_seeds": -1}, "num_seeds=-1: must be at least 0"),
    ({"num_seeds": 2, "num_orders": 2, "sweep.key": "method.strength", "sweep.candidates": (1.0,),
      "scenario.validation_fraction": 0.1}, "sweep.key cannot be combined with num_orders"),
])
def test_unsupported_combinations_are_one_line_errors(tmp_path, overrides, message):
  with pytest.raises(ConfigError, match=message) as e:
    driver.run(tiny(**overrides), str(tmp_path / "w"))
  assert "\n" not in str(e.value) and "--config." in str(e.value)
  assert not os.path.exists(tmp_path / "w")  # refused before the workdir is made


def test_divergence_names_the_replica():
  finite, nan = np.asarray([0.5, 0.4, 0.3], np.float32), np.asarray([[0.5, 0.5], [0.4, np.nan], [0.3, 0.2]],
                                                                     np.float32)
  who = ReplicaAxis.of_seeds([7, 8, 9]).who
  np.testing.assert_allclose(run_io.check_finite([(finite, None)], 0, 1, who), finite)
  with pytest.raises(DivergenceError, match=r"loss of seed 8 \(replica 1 of 3\) became nan in task 2"):
    run_io.check_finite([(finite, None), (nan, 1)], 1, 5, who)


def test_an_end_task_hook_that_cannot_be_vmapped_runs_replica_by_replica():
  class HostOnly:  # an end-of-task hook that needs concrete values (float() of a traced array)
    def end_task(self, method_state, params, batch_stats, task, data):
      return {"total": method_state["total"] + float(np.sum(params["w"])) + task}

  method = HostOnly()
  setup = types.SimpleNamespace(method=method, train_data=[None, None], replicas=ReplicaAxis.of_seeds([0, 1, 2]),
                                streams=(None,), values=None, parts=lambda r: (None, method, None))
  state = types.SimpleNamespace(params={"w": np.arange(6.0).reshape(3, 2)}, batch_stats={},
                                method_state={"total": np.zeros(3)})
  run = types.SimpleNamespace(state=state, end_task_vmappable=True, gather=lambda tree: tree)  # one device
  got = loop.end_task(setup, run, 1)
  np.testing.assert_allclose(got["total"], [2.0, 6.0, 10.0])  # sum of each replica's w, plus the task
  assert run.end_task_vmappable is False  # later tasks go straight to the replica-by-replica loop
  np.testing.assert_allclose(loop.end_task(setup, run, 0)["total"], [1.0, 5.0, 9.0])


def test_the_summary_gives_the_t_interval_keeps_the_std_and_carries_the_seeds_provenance():
  config = tiny(num_seeds=3)
  block = {"cpu": {"isa": ["avx", "avx2"], "family": 25}, "lwcl": {"commit": "a" * 40}}
  accs = [0.527, 0.691, 0.60]

  def seed_results(acc, prov):
    return {"acc": acc, "bwt": -acc / 10, "fwt": None, "forgetting": acc / 10,
            "accuracy_matrix": [[1.0, 0.5], [0.9, acc]], "final_train_loss": [0.1, 0.2],
            "tasks": [{"name": "0-1"}, {"name": "2-3"}], "method": "finetune",
            "dataset": "fashion_mnist", "scenario": {}, "train_seconds": 1.0, "provenance": prov}

  summary = replica_results.summarize(config, [seed_results(a, block) for a in accs])
  v = np.asarray(accs, np.float64)
  half = 4.302653 * v.std(ddof=1) / np.sqrt(3)  # t_{0.975, 2} * s / sqrt(n)
  acc = summary["acc"]
  assert (acc["mean"], acc["std"], acc["n"]) == (pytest.approx(v.mean()), pytest.approx(v.std()), 3)  # as before
  assert acc["ci95_half_width"] == pytest.approx(half, rel=1e-6)
  assert acc["ci95"] == pytest.approx([v.mean() - half, v.mean() + half], rel=1e-6)
  assert summary["fwt"] is None and summary["task_final_accuracy"]["2-3"]["ci95"] == acc["ci95"]
  assert summary["provenance"] == block and "+-95%" in replica_results.format_summary(summary)
  other = {**block, "cpu": {"isa": ["avx"], "family": 23}}
  mixed = replica_results.summarize(config, [seed_results(a, p) for a, p in zip(accs, (block, other, None))])
  assert mixed["provenance"] == {**block, "differs_across_runs": ["cpu.family", "cpu.isa"]}
  assert "provenance" not in replica_results.summarize(config, [seed_results(a, None) for a in accs])
  assert not [k for k in summary if "task_il" in k] and "TASK-IL" not in replica_results.format_summary(summary)
  assert not [k for k in summary["runs"][0] if "task_il" in k]


def test_the_summary_of_class_incremental_seeds_gives_the_task_il_statistics():
  config = tiny(num_seeds=3)
  task_il = [0.9, 0.8, 0.85]

  def seed_results(acc, til):
    return {"acc": acc, "bwt": -0.5, "fwt": None, "forgetting": 0.5, "accuracy_matrix": [[1.0, 0.0], [0.1, acc]],
            "task_il_accuracy_matrix": [[1.0, 0.5], [til, 0.95]], "task_il_acc": til, "task_il_bwt": til - 1.0,
            "task_il_forgetting": 1.0 - til, "final_train_loss": [0.1, 0.2],
            "tasks": [{"name": "0-1"}, {"name": "2-3"}], "method": "finetune", "dataset": "fashion_mnist",
            "scenario": {}, "train_seconds": 1.0}

  per_seed = [seed_results(0.5, t) for t in task_il]
  summary = replica_results.summarize(config, per_seed)
  assert summary["task_il_acc"] == metrics.seed_statistics(task_il)
  assert summary["task_il_forgetting"]["mean"] == pytest.approx(1.0 - np.mean(task_il))
  assert [run["task_il_acc"] for run in summary["runs"]] == task_il
  assert summary["runs"][1]["task_il_accuracy_matrix"] == [[1.0, 0.5], [0.8, 0.95]]
  np.testing.assert_allclose(summary["task_il_accuracy_matrix_mean"], [[1.0, 0.5], [0.85, 0.95]])
  text = replica_results.format_summary(summary)
  assert "TASK-IL ACC" in text.splitlines()[1] and f"{100 * np.mean(task_il):.2f}" in text.splitlines()[5]
  # A seed finished by an lwcl that did not record it: no Task-IL statistic over the seeds.
  del per_seed[2]["task_il_accuracy_matrix"], per_seed[2]["task_il_acc"]
  assert not [k for k in replica_results.summarize(config, per_seed) if "task_il" in k]
