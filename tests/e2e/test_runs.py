"""End-to-end runs on real Fashion-MNIST: results, resume after SIGKILL, data parallelism, bad input."""

import os
import signal

import chex
import numpy as np
import pytest

from conftest import assert_same_stream, small_config
from helpers import DIVERGES_IN_SECOND_EPOCH, assert_one_line_error, cli, load_results
from lwcl.runs import driver
from lwcl.engine import experiment
from lwcl.io import results as results_lib
from lwcl.io.checkpoint import RunCheckpointer
from lwcl.errors import ConfigError, DivergenceError


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
  with pytest.raises(ConfigError, match="different experiment"):
    driver.run(small_config(**{"optimizer.learning_rate": 0.5}), workdir)
  assert load_results(workdir) == on_disk


def test_joint_trains_on_the_union_of_seen_tasks():
  exp = experiment.Experiment(small_config(**{"method.name": "joint"}))
  sizes = [len(d) for d in exp.train_data]
  assert sizes == [200, 400, 600]
  assert sorted(set(exp.train_data[2].tasks.tolist())) == [0, 1, 2]


def test_resume_after_sigkill_gives_identical_results(tmp_path):
  ref, killed = str(tmp_path / "ref"), str(tmp_path / "killed")
  extra = ["--config.checkpoint.every_steps=4", "--config.model.name=convnet",
           "--config.model.conv_stages=((8,),)", "--config.model.dense=(16,)"]
  assert cli(ref, *extra).returncode == 0
  proc = cli(killed, *extra, kill_after_step=17)  # mid task 2; last checkpoint at step 16
  assert proc.returncode == -signal.SIGKILL
  assert not os.path.exists(os.path.join(killed, "results.json"))
  assert sorted(os.listdir(os.path.join(killed, "checkpoints")))[-1] == "16"
  proc = cli(killed, *extra)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "resuming from checkpoint at task 2, step 6" in proc.stdout
  a, b = load_results(ref), load_results(killed)
  assert_same_stream(a, b)


def test_four_devices_match_one_device(tmp_path):
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
  one = cli(str(tmp_path / "one"), "--config.devices.num_devices=1", env=env)
  four = cli(str(tmp_path / "four"), "--config.devices.num_devices=4", env=env)
  assert one.returncode == 0 and four.returncode == 0, four.stderr[-2000:]
  a, b = load_results(str(tmp_path / "one")), load_results(str(tmp_path / "four"))
  assert a["devices"]["count"] == 1 and b["devices"]["count"] == 4
  np.testing.assert_allclose(a["final_train_loss"], b["final_train_loss"], rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(a["accuracy_matrix"], b["accuracy_matrix"], atol=0.01)
  bad = cli(str(tmp_path / "bad"), "--config.devices.num_devices=4", "--config.train.batch_size=18", env=env)
  assert_one_line_error(bad, "train.batch_size=18", "4 devices")


def test_unknown_and_mistyped_config_keys(tmp_path):
  proc = cli(str(tmp_path / "w"), "--config.train.batchsize=3")
  assert_one_line_error(proc, "batchsize")
  proc = cli(str(tmp_path / "w"), "--config.train.batch_size=lots")
  assert_one_line_error(proc, "batch_size")
  assert not os.path.exists(str(tmp_path / "w"))


def test_impossible_scenario_and_missing_data(tmp_path):
  proc = cli(str(tmp_path / "w"), "--config.scenario.num_tasks=4", "--config.scenario.classes_per_task=0")
  assert_one_line_error(proc, "cannot be split evenly", "num_tasks")
  proc = cli(str(tmp_path / "w"), "--config.data.source=idx", f"--config.data.idx_dir={tmp_path}/none")
  assert_one_line_error(proc, "not found", "dataset-fashion-mnist")


def test_corrupt_and_foreign_checkpoints_are_refused_and_kept(tmp_path):
  workdir = str(tmp_path / "w")
  proc = cli(workdir, "--config.checkpoint.every_steps=5", kill_after_step=12)
  assert proc.returncode == -signal.SIGKILL
  foreign = cli(workdir, "--config.optimizer.learning_rate=0.5")
  assert_one_line_error(foreign, "different experiment", "optimizer.learning_rate")
  latest = os.path.join(workdir, "checkpoints", "10")
  damaged = 0
  for dirpath, _, names in os.walk(latest):
    for name in names:
      path = os.path.join(dirpath, name)
      if os.path.getsize(path) > 0:
        with open(path, "wb") as f:
          f.write(b"\x00garbage")
        damaged += 1
  assert damaged
  proc = cli(workdir)
  assert_one_line_error(proc, "corrupt", "checkpoints/10")
  assert os.path.isdir(latest)  # nothing is deleted
  assert not os.path.exists(os.path.join(workdir, "results.json"))


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


def test_tfds_source_end_to_end_with_mock_data(tmp_path):
  import tensorflow_datasets as tfds
  config = small_config(**{"data.source": "tfds", "data.name": "cifar10", "scenario.num_tasks": 2,
                           "scenario.samples_per_task": 0, "train.batch_size": 10,
                           "data.augment.random_crop": True, "data.augment.horizontal_flip": True})
  with tfds.testing.mock_data(num_examples=100):
    results = driver.run(config, str(tmp_path / "w"))
  assert results["data_source"] == "tfds"
  chex.assert_shape(np.asarray(results["accuracy_matrix"]), (2, 2))
  assert results["tasks"][0]["num_test"] > 0


def test_results_of_an_older_version_still_match_when_keys_were_added():
  config = small_config().to_dict()
  older = results_lib.result_config(config)
  del older["method"]["name"], older["sweep"]  # keys an older lwcl did not have
  assert results_lib.same_experiment({"config": older}, config)
  older["optimizer"]["learning_rate"] = 0.5  # a key both have, with another value
  assert not results_lib.same_experiment({"config": older}, config)
  assert results_lib.same_experiment({"config": dict(config, devices={"num_devices": 4})}, config)
  assert not results_lib.same_experiment(None, config)
