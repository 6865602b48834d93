"""End-to-end runs on real Fashion-MNIST (or its synthetic stand-in): results and outputs, joint training."""

import json
import os

import chex
import numpy as np
import pytest

from lwcl.engine import experiment
from lwcl.errors import ConfigError, DivergenceError
from lwcl.io import results as results_lib
from lwcl.io.checkpoint import RunCheckpointer
from lwcl.runs import driver

from helpers import DIVERGES_IN_SECOND_EPOCH, assert_one_line_error, cli, load_results, small_config


def test_end_to_end_results_and_outputs(tmp_path):
  workdir = str(tmp_path / "run")
  results = driver.run(small_config(), workdir)
  on_disk = load_results(workdir)
  R = np.asarray(on_disk["accuracy_matrix"])
  chex.assert_shape(R, (3, 3))
  chex.assert_shape(np.asarray(on_disk["initial_accuracy"]), (3,))
  assert ((R >= 0) & (R <= 1)).all()
  # Each 2-class task is learned well right after training on it.
  assert np.diag(R).min() > 0.8, R
  for key in ("acc", "bwt", "fwt", "forgetting", "config", "tasks", "train_seconds", "examples_per_second"):
    assert key in on_disk
  assert on_disk["acc"] == pytest.approx(R[-1].mean())
  assert on_disk["bwt"] == pytest.approx(np.mean(R[-1, :-1] - np.diag(R)[:-1]))
  assert [t["classes"] for t in on_disk["tasks"]] == [[0, 1], [2, 3], [4, 5]]
  assert on_disk["train_examples"] == 3 * 10 * 20
  files = os.listdir(workdir)
  assert "accuracy_matrix.png" in files and any(f.startswith("events.out.tfevents") for f in files)
  assert results["accuracy_matrix"] == on_disk["accuracy_matrix"]
  # A finished workdir reports its results again; another experiment's workdir is refused.
  again = driver.run(small_config(), workdir)
  assert again["accuracy_matrix"] == on_disk["accuracy_matrix"]
  lr = small_config().optimizer.learning_rate
  with pytest.raises(ConfigError, match=rf"different experiment \(config differs in optimizer.learning_rate: "
                                        rf"{lr} there, 0.5 here\); choose a new --workdir"):
    driver.run(small_config(**{"optimizer.learning_rate": 0.5}), workdir)
  assert load_results(workdir) == on_disk


def test_joint_trains_on_the_union_of_seen_tasks():
  exp = experiment.Experiment(small_config(**{"method.name": "joint"}))
  sizes = [len(d) for d in exp.train_data]
  assert sizes == [200, 400, 600]
  assert sorted(set(exp.train_data[2].tasks.tolist())) == [0, 1, 2]


def test_nan_loss_stops_with_a_clear_error_and_keeps_good_checkpoints(tmp_path):
  workdir = str(tmp_path / "w")
  config = small_config(**DIVERGES_IN_SECOND_EPOCH, **{"checkpoint.every_steps": 1, "train.log_every_steps": 1})
  exp = experiment.Experiment(config)
  with pytest.raises(DivergenceError, match="learning_rate") as error:
    exp.run(workdir)
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  ckpt = RunCheckpointer(os.path.join(workdir, "checkpoints"), 2, results_lib.result_config(config.to_dict()))
  assert ckpt.latest_step() >= 10  # the first epoch (10 steps at learning rate 1e-6) is checkpointed
  assert "the last good checkpoint (task 1, step" in str(error.value), str(error.value)
  state, _ = ckpt.restore({"state": exp.initial_state(), "record": exp.initial_record()})
  chex.assert_tree_all_finite(state["state"].params)
  proc = cli(str(tmp_path / "cli"), "--config.optimizer.learning_rate=1e8", "--config.train.log_every_steps=1")
  line = assert_one_line_error(proc, "loss became", "learning_rate", "no checkpoint was written")  # step 1
  assert "kept" not in line


def test_more_seeds_on_the_command_line_train_alone_and_fewer_are_reported(tmp_path):
  # bin/run --config.num_seeds=3 on a workdir of 2 seeds adds seed 2 (trained alone, as bin/compare --seeds=3
  # does: tests/runs/test_seed_folders.py); it was refused as a different experiment, and all 3 retrained.
  workdir = str(tmp_path / "w")
  proc = cli(workdir, "--config.num_seeds=2")
  assert proc.returncode == 0, proc.stderr[-2000:]
  two = load_results(workdir)
  proc = cli(workdir, "--config.num_seeds=3")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"lwcl: seeds 2-2 of {workdir} as replicas of their own program" in proc.stdout
  assert "over 3 seeds" in proc.stdout and proc.stdout.rstrip().endswith(f"results: {workdir}/results.json")
  three = load_results(workdir)
  assert three["seeds"] == [0, 1, 2] and [r["accuracy_matrix"] for r in three["runs"][:2]] == \
      [r["accuracy_matrix"] for r in two["runs"]]
  with open(os.path.join(workdir, "results.seeds0-1.json")) as f:
    assert json.load(f) == two
  # Fewer seeds: reported from their folders, the summary of 3 left as it is.
  proc = cli(workdir, "--config.num_seeds=2")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "over 2 seeds" in proc.stdout and f"{workdir}/results.json summarizes its 3 seeds" in proc.stdout
  assert "seeds 2-2" not in proc.stdout and load_results(workdir) == three
  proc = cli(workdir, "--config.num_seeds=1")  # one seed is a run of seeds too
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "over 1 seeds" in proc.stdout and load_results(workdir) == three
  # No num_seeds (one run, not a summary of seeds) is another experiment: refused as before.
  assert_one_line_error(cli(workdir), "different experiment", "num_seeds: 3 there, 0 here")
  assert load_results(workdir) == three
