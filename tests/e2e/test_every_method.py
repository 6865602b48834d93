"""Every method in every training mode, through the real driver, and resumed after a SIGKILL in mid-task.

A tiny stream (MLP 16-16, 2 tasks of 2 classes, 120 examples per task, batch 20, 6 steps per task) keeps
the 27 runs and 9 kill/resume pairs within a few minutes on 2 CPU cores.
"""

import json
import os
import signal
import subprocess
import sys

import chex
import numpy as np
import pytest

from conftest import assert_same_stream, small_config
from helpers import METHODS, ROOT, TINY
from lwcl.runs import driver

MODES = ("backprop", "local", "greedy")
_RESULTS = {}  # (method, mode) -> results of the in-process run, reused by the resume test


def tiny(method, mode, **extra):
  return small_config(**TINY, **{"method.name": method, "layerwise.mode": mode}, **extra)


def as_flags(config_overrides: dict) -> list:
  def value(v):
    return "(" + ",".join(map(str, v)) + ("," if len(v) == 1 else "") + ")" if isinstance(v, tuple) else str(v)
  return [f"--config.{k}={value(v)}" for k, v in config_overrides.items()]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_in_every_mode(tmp_path, method, mode):
  results = driver.run(tiny(method, mode), str(tmp_path))
  _RESULTS[(method, mode)] = results
  with open(tmp_path / "results.json") as f:
    on_disk = json.load(f)
  R = np.asarray(on_disk["accuracy_matrix"])
  chex.assert_shape(R, (2, 2))
  assert np.isfinite(R).all() and ((R >= 0) & (R <= 1)).all()
  assert R[0, 0] > 0.6, R  # the first task is learned in every mode (2 classes: chance is 0.5)
  assert np.isfinite(on_disk["final_train_loss"]).all()
  assert on_disk["method"] == method and on_disk["config"]["layerwise"]["mode"] == mode
  if mode != "backprop":  # 2 local blocks: the hidden layers (the last with the network's head)
    block_R = np.asarray(on_disk["block_accuracy"])
    chex.assert_shape(block_R, (2, 2, 2))
    assert on_disk["layerwise"]["mode"] == mode
    # Which blocks forget: each head's forgetting from its own accuracy matrix block_R[:, k, :].
    np.testing.assert_allclose(on_disk["block_forgetting"],
                               [block_R[0, k, 0] - block_R[1, k, 0] for k in range(2)], atol=1e-12)
    assert os.path.exists(tmp_path / "block_forgetting.png")


@pytest.mark.parametrize("method", METHODS)
def test_every_method_resumes_after_sigkill_in_mid_task(tmp_path, capsys, method):
  mode = MODES[METHODS.index(method) % 3]
  want = _RESULTS.get((method, mode)) or driver.run(tiny(method, mode), str(tmp_path / "ref"))
  workdir = str(tmp_path / "killed")
  # Checkpoints at global steps 4, 6 (task end) and 8 (task 2, memory of task 1 full); killed at step 9
  # by the real entry point (tests/fault_run.py), then resumed here.
  every = {"checkpoint.every_steps": 4}
  overrides = as_flags({**TINY, "method.name": method, "layerwise.mode": mode, **every})
  cmd = [sys.executable, os.path.join(ROOT, "tests", "fault_run.py"), "9", f"--config={ROOT}/configs/default.py",
         f"--workdir={workdir}", "--config.model.name=mlp", "--config.train.epochs_per_task=1",
         "--config.train.progress=False", "--config.scenario.classes_per_task=2",
         "--config.train.eval_batch_size=500", *overrides]
  killed = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  got = driver.run(tiny(method, mode, **every), workdir)
  assert "resuming from checkpoint at task 2, step 2" in capsys.readouterr().out
  assert_same_stream(got, want)
