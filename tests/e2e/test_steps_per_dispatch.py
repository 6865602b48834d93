"""Several train steps per compiled call (``train.steps_per_dispatch``): same results as one step per call.

With ``K > 1`` the task's training data lives on the device and up to ``K`` steps run in one compiled loop,
each gathering its batch on the device from precomputed indices; dispatches end at checkpoints and at the
LCA curve's steps. These tests compare it with the one-step path (``K = 1``) for every method and the
layer-wise modes, resume it after a SIGKILL in mid-dispatch, and make it diverge.
"""

import os

import chex
import numpy as np
import pytest

from lwcl.engine import experiment
from lwcl.errors import DivergenceError
from lwcl.io import results as results_lib
from lwcl.io.checkpoint import RunCheckpointer
from lwcl.platform.native import build as native_build

from helpers import (
  DIVERGES_IN_SECOND_EPOCH,
  FOUR_DEVICES,
  METHODS,
  assert_one_line_error,
  cli,
  four_device_run,
  load_results,
  method_overrides,
  small_config,
)

# Small memories and importance samples keep the 9 x 2 runs fast; 3 tasks of 10 steps each.
FAST = {"method.memory_per_task": 20, "method.agem_ref_batch": 20, "method.importance_samples": 40,
        "method.importance_batch_size": 20, "method.strength": 10.0}


def _run(tmp_path, name, **overrides):
  exp = experiment.Experiment(small_config(**FAST, **overrides))
  steps = []
  results = exp.run(str(tmp_path / name), on_step=steps.append)
  return exp, results, steps


def _assert_same_run(one, many):
  (exp1, res1, steps1), (expk, resk, stepsk) = one, many
  chex.assert_trees_all_close(expk.final_state.params, exp1.final_state.params, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(expk.final_state.batch_stats, exp1.final_state.batch_stats, rtol=1e-5,
                              atol=1e-6)
  assert int(expk.final_state.step) == int(exp1.final_state.step)
  np.testing.assert_allclose(resk["accuracy_matrix"], res1["accuracy_matrix"], atol=2e-3)
  np.testing.assert_allclose(resk["final_train_loss"], res1["final_train_loss"], rtol=1e-4, atol=1e-5)
  assert resk["train_examples"] == res1["train_examples"]
  assert stepsk == steps1 == list(range(1, len(steps1) + 1))  # on_step: every step, in order


@pytest.mark.parametrize("method", METHODS)
def test_every_method_matches_one_step_per_dispatch(tmp_path, method):
  extra = {"method.name": method, **method_overrides(method)}
  if method == "finetune":  # boundaries: checkpoints mid-task and the LCA curve's one-step dispatches
    extra.update({"checkpoint.every_steps": 7, "eval.lca_batches": 3})
  one = _run(tmp_path, "k1", **extra)
  many = _run(tmp_path, "k4", **extra, **{"train.steps_per_dispatch": 4})
  _assert_same_run(one, many)
  if method == "finetune":
    np.testing.assert_allclose(many[1]["lca_curves"], one[1]["lca_curves"], atol=2e-3)
  if method == "joint":  # tasks of 200, 400 and 600 examples: padded to one shape, compiled once
    assert many[0].train_steps._cache_size() == 1  # pylint: disable=protected-access
  if method in ("agem", "gem", "lgd"):
    chex.assert_trees_all_equal(many[0].final_state.method_state.memory,
                                one[0].final_state.method_state.memory)


@pytest.mark.parametrize("mode", ("local", "greedy"))
def test_layerwise_modes_match_one_step_per_dispatch(tmp_path, mode):
  extra = {"layerwise.mode": mode, "model.hidden": (16, 16), "train.epochs_per_task": 2,
           "method.name": "si" if mode == "local" else "finetune"}
  one = _run(tmp_path, "k1", **extra)
  many = _run(tmp_path, "k8", **extra, **{"train.steps_per_dispatch": 8})
  _assert_same_run(one, many)


@pytest.mark.parametrize("with_onednn", (True, False), ids=("onednn", "xla"))
def test_convnet_matches_one_step_per_dispatch_up_to_rounding(tmp_path, monkeypatch, request, with_onednn):
  # On CPU with lwcl's oneDNN library (model.conv_impl=auto) both programs compute the convolutions with
  # oneDNN: the same run. Without it, the loop computes the wide convolutions as patch matmuls, the one-step
  # program with XLA's convolution (both: the 1-channel first one as multiply-adds), so parameters agree to
  # float rounding only.
  if with_onednn:
    request.getfixturevalue("onednn_available")
  else:
    monkeypatch.setitem(native_build._state, "reason", "off (test)")  # pylint: disable=protected-access
  extra = {"model.name": "convnet", "model.conv_stages": ((8,),), "model.dense": (16,),
           "scenario.num_tasks": 2}
  one, many = _run(tmp_path, "k1", **extra), _run(tmp_path, "k4", **extra, **{"train.steps_per_dispatch": 4})
  (exp1, res1, _), (expk, resk, _) = one, many
  if with_onednn:
    assert exp1.fns.model.conv_impl == expk.fns.model.conv_impl == res1["conv_impl"] == "onednn+direct"
    _assert_same_run(one, many)
    return
  assert (exp1.fns.model.conv_impl, expk.fns.model.conv_impl) == ("native+direct", "patches+direct")
  assert (res1["conv_impl"], resk["conv_impl"]) == ("native+direct", "patches+direct")  # results.json says so
  chex.assert_trees_all_close(expk.final_state.params, exp1.final_state.params, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(resk["accuracy_matrix"], res1["accuracy_matrix"], atol=2e-3)


def test_every_epoch_records_each_tasks_learning_curve(tmp_path):
  extra = {"train.epochs_per_task": 3, "eval.every_epoch": True}
  one, many = _run(tmp_path, "k1", **extra), _run(tmp_path, "k4", **extra, **{"train.steps_per_dispatch": 4})
  _assert_same_run(one, many)  # 10 steps per epoch: dispatches of 4, 4, 2 end at every epoch
  curve, R = np.asarray(one[1]["epoch_accuracy"]), np.asarray(one[1]["accuracy_matrix"])
  chex.assert_shape(curve, (3, 3))
  np.testing.assert_array_equal(curve[:, -1], np.diag(R))  # the last epoch's is the task's final accuracy
  assert np.all(curve[:, 0] > 0.5)  # learned from the first epoch on (2-way tasks)
  np.testing.assert_allclose(many[1]["epoch_accuracy"], curve, atol=2e-3)
  assert "epoch_accuracy" not in _run(tmp_path, "off")[1]


def test_four_devices_gather_a_batch_split_over_devices(tmp_path, session_dir):
  one = four_device_run(session_dir)  # --config.devices.num_devices=4 under FOUR_DEVICES, as `many`
  many = cli(str(tmp_path / "k4"), "--config.devices.num_devices=4", "--config.train.steps_per_dispatch=4",
             env=FOUR_DEVICES)
  assert many.returncode == 0, many.stderr[-2000:]
  a, b = load_results(one), load_results(str(tmp_path / "k4"))
  assert b["devices"]["count"] == 4
  np.testing.assert_allclose(b["final_train_loss"], a["final_train_loss"], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(b["accuracy_matrix"], a["accuracy_matrix"], atol=2e-3)


def _divergence(tmp_path, name, k):
  """Runs a diverging config; returns the error message, the newest checkpoint step and its params."""
  config = small_config(**DIVERGES_IN_SECOND_EPOCH, **{"checkpoint.every_steps": 3, "train.steps_per_dispatch": k})
  exp = experiment.Experiment(config)
  workdir = str(tmp_path / name)
  with pytest.raises(DivergenceError, match="learning_rate") as error:
    exp.run(workdir)
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  ckpt = RunCheckpointer(os.path.join(workdir, "checkpoints"), 2, results_lib.result_config(config.to_dict()))
  step = ckpt.latest_step()
  assert step >= 9, step  # checkpoints every 3 steps of the first epoch (10 steps at learning rate 1e-6)
  state, _ = ckpt.restore({"state": exp.initial_state(), "record": exp.initial_record()})
  params = state["state"].params
  chex.assert_tree_all_finite(params)
  ckpt.close()
  return str(error.value), step, params


def test_nan_loss_inside_a_dispatch_stops_like_one_step_dispatches(tmp_path):
  # Dispatches of up to 8 steps end at the checkpoints every 3 steps: the first non-finite loss is
  # inside a dispatch, found when its last step is checked, before that step's checkpoint is written.
  message1, step1, params1 = _divergence(tmp_path, "k1", 1)
  message8, step8, params8 = _divergence(tmp_path, "k8", 8)
  assert message8 == message1 and step8 == step1
  chex.assert_trees_all_close(params8, params1, rtol=1e-5, atol=1e-6)
  proc = cli(str(tmp_path / "cli"), "--config.optimizer.learning_rate=1e8",
             "--config.train.log_every_steps=1", "--config.train.steps_per_dispatch=4")
  assert_one_line_error(proc, "loss became", "learning_rate")
