"""A config's seeds in one folder (lwcl/runs/seed_folders.py, ``bin/compare --seeds=N``): more seeds added to
a finished run train alone and join its summary, fewer are reported, seeds copied in are not retrained, and
a run of every seed that stopped early resumes instead of training its missing seeds again."""

import json
import os
import shutil

import numpy as np
import pytest

from lwcl.engine import loop
from lwcl.errors import ConfigError, LwclError
from lwcl.runs import seed_folders

import helpers

CONFIG = helpers.small_config(**{**helpers.TINY, "method.name": "finetune"})


def _bytes(folder):
  return {os.path.relpath(os.path.join(d, n), folder): open(os.path.join(d, n), "rb").read()
          for d, _, names in os.walk(folder) for n in names if n == "results.json" and "checkpoints" not in d}


def _no_training(monkeypatch):
  monkeypatch.setattr(loop, "run_stream", lambda *a, **k: pytest.fail("trained what was finished"))


@pytest.mark.e2e
def test_more_seeds_train_alone_and_join_the_summary(tmp_path, monkeypatch):
  direct = seed_folders.run(CONFIG, str(tmp_path / "direct"), 3)  # seeds 0-2 in one program
  out = str(tmp_path / "out")
  two = seed_folders.run(CONFIG, out, 2)
  first = _bytes(out)
  assert sorted(first) == ["results.json", "seed0/results.json", "seed1/results.json"]
  three = seed_folders.run(CONFIG, out, 3)
  # seed 2 alone, in its own program's folder; seeds 0 and 1 untouched; the 2-seed summary kept
  assert os.path.isdir(os.path.join(out, "seeds2-2", "checkpoints"))
  with open(os.path.join(out, "seeds2-2", "seed2", "results.json"), "rb") as f:
    assert f.read() == _bytes(out)["seed2/results.json"]
  assert all(_bytes(out)[k] == v for k, v in first.items() if k != "results.json")
  with open(os.path.join(out, "results.seeds0-1.json"), "rb") as f:
    assert f.read() == first["results.json"]
  assert [r["accuracy_matrix"] for r in three[:2]] == [r["accuracy_matrix"] for r in two]
  # a replica equals its seed's run in any program (up to float rounding: tests/runs/test_seeds.py)
  np.testing.assert_allclose(three[2]["accuracy_matrix"], direct[2]["accuracy_matrix"], atol=2e-3)
  with open(os.path.join(out, "results.json")) as f:
    summary = json.load(f)
  assert summary["num_seeds"] == 3 and summary["seeds"] == [0, 1, 2]
  assert [r["accuracy_matrix"] for r in summary["runs"]] == [r["accuracy_matrix"] for r in three]
  programs = {r["replica"]["workdir"]: r["train_seconds"] for r in three}
  assert len(programs) == 2 and summary["train_seconds"] == pytest.approx(sum(programs.values()))
  # Reported again without training: 3 seeds, and 2 (the summary of 3 left as it is)
  _no_training(monkeypatch)
  settled = _bytes(out)
  assert [r["accuracy_matrix"] for r in seed_folders.run(CONFIG, out, 3)] == [r["accuracy_matrix"] for r in three]
  assert [r["accuracy_matrix"] for r in seed_folders.run(CONFIG, out, 2)] == [r["accuracy_matrix"] for r in two]
  assert _bytes(out) == settled


@pytest.mark.e2e
def test_copied_seeds_are_not_retrained_and_a_stopped_run_resumes(tmp_path, monkeypatch):
  direct = str(tmp_path / "direct")
  runs = seed_folders.run(CONFIG, direct, 2)
  # Seed 0 copied into a new folder (no checkpoints): only seed 1 trains
  copy = tmp_path / "copy"
  shutil.copytree(os.path.join(direct, "seed0"), copy / "seed0")
  got = seed_folders.run(CONFIG, str(copy), 2)
  assert os.path.isdir(copy / "seeds1-1") and got[0] == runs[0]
  np.testing.assert_allclose(got[1]["accuracy_matrix"], runs[1]["accuracy_matrix"], atol=2e-3)
  # A run of both seeds that stopped after writing seed 0's folder: it resumes (from its last checkpoint,
  # nothing left to train) and reports seed 1 from its own program, not a program of seed 1 alone
  os.remove(os.path.join(direct, "results.json"))
  shutil.rmtree(os.path.join(direct, "seed1"))
  again = seed_folders.run(CONFIG, direct, 2)
  assert not os.path.exists(os.path.join(direct, "seeds1-1"))
  assert [r["accuracy_matrix"] for r in again] == [r["accuracy_matrix"] for r in runs]
  # Another experiment's summary is refused, naming the difference; nothing is overwritten
  other = helpers.small_config(**{**helpers.TINY, "method.name": "finetune", "optimizer.learning_rate": 0.05})
  before = _bytes(direct)
  _no_training(monkeypatch)
  with pytest.raises(ConfigError, match="different experiment .config differs in optimizer.learning_rate"):
    seed_folders.run(other, direct, 2)
  assert _bytes(direct) == before
  # A symbolic link below the folder: refused before anything is read, moved or written
  os.symlink(os.path.join(direct, "seed0"), os.path.join(direct, "elsewhere"))
  with pytest.raises(LwclError, match="elsewhere"):
    seed_folders.run(CONFIG, direct, 3)
  assert _bytes(direct) == before and not os.path.exists(os.path.join(direct, "seeds2-2"))
