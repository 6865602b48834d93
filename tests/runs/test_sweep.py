"""lwcl.runs.sweep: validation-split hyper-parameter sweeps."""

import json
import os

import pytest

from lwcl.errors import ConfigError
from lwcl.runs import axis as replica_axis
from lwcl.runs import driver, sweep

from helpers import small_config


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_sweep_selects_on_validation_and_reports_test(tmp_path):
  # class-incremental: the candidates' rows and the final run carry the Task-IL metrics too
  config = small_config(**{"sweep.key": "optimizer.learning_rate", "sweep.candidates": (1e-4, 0.05),
                           "scenario.validation_fraction": 0.2, "scenario.num_tasks": 2,
                           "scenario.incremental": "class"})
  results = sweep.run_sweep(config, str(tmp_path))
  cands = results["sweep"]["candidates"]
  assert [c["value"] for c in cands] == [1e-4, 0.05]
  assert results["selected"] == max(cands, key=lambda c: c["acc"])["value"]
  sweep_run = driver.run(replica_axis.candidate_config(config, config.sweep.key, 1e-4, "valid"),
                         str(tmp_path / "sweep" / "0.0001"))
  assert sweep_run["eval_split"] == "valid"
  assert cands[0]["task_il_acc"] == sweep_run["task_il_acc"] and "task_il_accuracy_matrix" in results
  assert results["eval_split"] == "test"
  assert results["config"]["sweep"]["key"] == "optimizer.learning_rate"  # the summary keeps the sweep config
  final = driver.run(replica_axis.candidate_config(config, config.sweep.key, results["selected"], "test"),
                     str(tmp_path / "final"))
  assert final["config"]["optimizer"]["learning_rate"] == results["selected"]
  assert final["accuracy_matrix"] == results["accuracy_matrix"]


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
@pytest.mark.parametrize("key,candidates,method", [
    ("method.strength", (1.0, 100.0), "si"),  # SI: the strength in the method state and the step
    ("optimizer.learning_rate", (1e-3, 0.05), "ewc")])  # per-replica learning-rate schedules
def test_sweep_candidates_as_replicas_equal_one_after_another(tmp_path, monkeypatch, capsys, key, candidates,
                                                              method):
  config = small_config(**{"sweep.key": key, "sweep.candidates": candidates, "method.name": method,
                           "scenario.validation_fraction": 0.2, "scenario.num_tasks": 2})
  replicas = sweep.run_sweep(config, str(tmp_path / "replicas"))
  assert f"sweep 2 candidates of {key} as replicas of one program" in capsys.readouterr().out
  assert os.path.isdir(tmp_path / "replicas" / "sweep" / "checkpoints")
  monkeypatch.setattr(sweep, "replicable", lambda config: "forced by the test")
  one_by_one = sweep.run_sweep(config, str(tmp_path / "sequential"))
  assert "run one after another (forced by the test)" in capsys.readouterr().out
  for got, want in zip(replicas["sweep"]["candidates"], one_by_one["sweep"]["candidates"]):
    assert got["value"] == want["value"]
    assert got["acc"] == pytest.approx(want["acc"], abs=2e-3)
  assert replicas["selected"] == one_by_one["selected"]
  # Each replica trained with its own value (a value ignored by the replicas would give equal results).
  assert len({tuple(map(tuple, r["accuracy_matrix"])) for r in _candidate_results(tmp_path / "replicas", candidates)}) \
      == len(candidates)
  # Each candidate's folder holds the finished validation run of that value (the sequential runs find
  # them too: the same config, whichever way they were trained).
  for value in candidates:
    cand = replica_axis.candidate_config(config, config.sweep.key, value, "valid")
    assert driver.run(cand, str(tmp_path / "replicas" / "sweep" / f"{value:g}"))["eval_split"] == "valid"


def _candidate_results(workdir, candidates):
  return [json.loads((workdir / "sweep" / f"{v:g}" / "results.json").read_text()) for v in candidates]


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_sweep_of_a_shape_key_runs_one_after_another(tmp_path, capsys):
  config = small_config(**{"sweep.key": "method.memory_per_task", "sweep.candidates": (10.0, 20.0),
                           "method.name": "agem", "scenario.validation_fraction": 0.2, "scenario.num_tasks": 2})
  results = sweep.run_sweep(config, str(tmp_path))
  assert "method.memory_per_task is not a float (it may change shapes)" in capsys.readouterr().out
  assert [c["value"] for c in results["sweep"]["candidates"]] == [10.0, 20.0]


def test_sweep_needs_validation_data_and_a_real_key(tmp_path):
  with pytest.raises(ConfigError, match="validation_fraction"):
    sweep.run_sweep(small_config(**{"sweep.key": "method.name", "sweep.candidates": (1.0,)}), str(tmp_path))
  with pytest.raises(ConfigError, match="not a numeric config key"):
    replica_axis.candidate_config(small_config(**{"sweep.key": "optimizer.nope", "sweep.candidates": (1.0,)}),
                                  "optimizer.nope", 1.0, "valid")


def test_which_sweeps_run_as_replicas_is_decided_from_the_config():
  def why(method, key):
    return sweep.replicable(small_config(**{"method.name": method, "sweep.key": key, "sweep.candidates": (1., 2.),
                                            "scenario.validation_fraction": 0.1}))
  assert why("ewc", "method.strength") is None and why("si", "method.si_xi") is None
  assert why("gem", "method.gem_margin") is None and why("finetune", "optimizer.learning_rate") is None
  assert why("lgd", "method.lgd_threshold") == ("LGD needs method.lgd_threshold on the host (it chooses what is "
                                                "compiled)")
  assert why("ewc", "method.gem_margin") == "EWC does not read method.gem_margin"
  assert why("ewc", "train.batch_size").startswith("train.batch_size is not the learning rate")


def test_candidates_that_print_alike_get_folders_of_their_own(tmp_path):
  """Issue 32: 0.01 and 0.010000001 shared sweep/0.01/ (``%g``), one results.json over the other. A name is
  ``%g`` when that reads back exactly (the folders of earlier sweeps keep their names), else ``repr``."""
  values = (0.01, 0.010000001, 1e-05, 10.0, 100, 0.1 + 0.2)
  names = [replica_axis.candidate_name(v) for v in values]
  assert names == ["0.01", "0.010000001", "1e-05", "10", "100", "0.30000000000000004"]
  assert [float(n) for n in names] == [float(v) for v in values]  # the name gives the value back: one-to-one
  workdir = str(tmp_path)
  both = replica_axis.ReplicaAxis.of_candidates(0, "optimizer.learning_rate", values[:2], seeds=(0, 1))
  assert [both.folder(workdir, r) for r in range(4)] == [
      os.path.join(workdir, "0.01", "seed0"), os.path.join(workdir, "0.01", "seed1"),
      os.path.join(workdir, "0.010000001", "seed0"), os.path.join(workdir, "0.010000001", "seed1")]
  assert both.label(2) == "optimizer.learning_rate=0.010000001, seed 0"
  assert sweep.candidate_folder(workdir, 0.010000001) == os.path.join(workdir, "sweep", "0.010000001")
  assert sweep.candidate_folder(workdir, 0.01) == os.path.join(workdir, "sweep", "0.01")
