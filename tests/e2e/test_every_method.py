"""Every method in every training mode, through the real driver (tests/e2e/test_resume.py resumes each
method after a SIGKILL in mid-task to the results of these runs: helpers.tiny_run runs each once per session,
for whichever of the two tests asks first).

A tiny stream (MLP 16-16, 2 tasks of 2 classes, 120 examples per task, batch 20, 6 steps per task) keeps
the runs of every method in every mode and the kill/resume pairs within a few minutes on 2 CPU cores.
"""

import json
import os

import chex
import numpy as np
import pytest

from lwcl.errors import ConfigError
from lwcl.runs import driver

from helpers import METHODS, MODES, method_mode, tiny_config, tiny_run


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_in_every_mode(session_dir, tmp_path, method, mode):
  if method_mode(method, mode) != mode:  # a method that does not run in this mode says so in one line
    with pytest.raises(ConfigError, match="layerwise.mode=backprop") as e:
      driver.run(tiny_config(method, mode), str(tmp_path / "w"))
    assert "\n" not in str(e.value) and not os.path.exists(tmp_path / "w" / "results.json")
    return
  workdir = tiny_run(session_dir, method, mode)  # driver.run(tiny_config(method, mode), workdir)
  with open(os.path.join(workdir, "results.json")) as f:
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
    assert os.path.exists(os.path.join(workdir, "block_forgetting.png"))
