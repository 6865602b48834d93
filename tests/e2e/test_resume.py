"""Resumption: runs killed (SIGKILL through tests/fault_run.py) mid task or mid dispatch resume to identical
results, for every method; corrupt and foreign checkpoints are refused and kept."""

import os
import signal
import subprocess
import sys

import pytest

from lwcl.engine import report as run_report
from lwcl.errors import ConfigError
from lwcl.platform import provenance
from lwcl.runs import driver

from helpers import (
  METHODS,
  MODES,
  ROOT,
  TINY,
  assert_one_line_error,
  assert_same_stream,
  cli,
  load_results,
  method_mode,
  method_overrides,
  small_config,
  tiny_config,
  tiny_run,
)


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
  # resumed in the environment it started in: one part, nothing to say
  assert "provenance_segments" not in b and "resumed_across" not in b["provenance"]


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


def as_flags(config_overrides: dict) -> list:
  def value(v):
    return "(" + ",".join(map(str, v)) + ("," if len(v) == 1 else "") + ")" if isinstance(v, tuple) else str(v)
  return [f"--config.{k}={value(v)}" for k, v in config_overrides.items()]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_resumes_after_sigkill_in_mid_task(tmp_path, session_dir, capsys, method):
  mode = method_mode(method, MODES[METHODS.index(method) % 3])
  want = load_results(tiny_run(session_dir, method, mode))  # the uninterrupted run, as test_every_method.py's
  workdir = str(tmp_path / "killed")
  # Checkpoints at global steps 4, 6 (task end) and 8 (task 2, memory of task 1 full); killed at step 9
  # by the real entry point (tests/fault_run.py), then resumed here.
  every = {"checkpoint.every_steps": 4}
  overrides = as_flags({**TINY, "method.name": method, "layerwise.mode": mode, **method_overrides(method, mode),
                        **every})
  cmd = [sys.executable, os.path.join(ROOT, "tests", "fault_run.py"), "9", f"--config={ROOT}/configs/default.py",
         f"--workdir={workdir}", "--config.model.name=mlp", "--config.train.epochs_per_task=1",
         "--config.train.progress=False", "--config.scenario.classes_per_task=2",
         "--config.train.eval_batch_size=500", *overrides]
  killed = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  got = driver.run(tiny_config(method, mode, **every), workdir)
  assert "resuming from checkpoint at task 2, step 2" in capsys.readouterr().out
  assert_same_stream(got, want)


def test_resume_after_sigkill_in_mid_dispatch_gives_identical_results(tmp_path, capsys, monkeypatch):
  # 10 steps per task; checkpoints at global steps 4, 8, 12, ...; K = 4: task 2 (global steps 11..20)
  # runs dispatches of 2, 4 and 4 steps. Killed (by the real entry point, tests/fault_run.py) after step
  # 14, inside the dispatch of steps 13..16, it resumes here from the checkpoint at 12.
  overrides = {"train.steps_per_dispatch": 4, "checkpoint.every_steps": 4, "method.name": "agem",
               "method.memory_per_task": 20, "method.agem_ref_batch": 20}
  want = driver.run(small_config(**overrides), str(tmp_path / "ref"))
  killed = str(tmp_path / "killed")
  proc = cli(killed, *[f"--config.{k}={v}" for k, v in overrides.items()], kill_after_step=14)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
  assert not os.path.exists(os.path.join(killed, "results.json"))
  assert sorted(os.listdir(os.path.join(killed, "checkpoints")), key=int)[-1] == "12"
  capsys.readouterr()
  # Resumed "on another CPU" (this process's provenance block says AVX2 only): the numbers are this machine's,
  # the results say which parts ran where, and bin/compare refuses to average the parts
  real = run_report.run_provenance
  avx2 = lambda setup: {**real(setup), "cpu": {**(real(setup)["cpu"] or {}), "isa": ["avx", "avx2"]}}  # noqa: E731
  monkeypatch.setattr(run_report, "run_provenance", avx2)
  got = driver.run(small_config(**overrides), killed)
  assert "resuming from checkpoint at task 2, step 2" in capsys.readouterr().out
  assert_same_stream(got, want)
  on_disk = load_results(killed)
  assert on_disk["provenance_segments"] == got["provenance_segments"] and "provenance_segments" not in want
  first, second = got["provenance_segments"]
  assert (first["task"], first["task_step"], second["task"], second["task_step"]) == (0, 0, 1, 2)
  assert first["provenance"]["cpu"] == want["provenance"]["cpu"]
  assert second["provenance"]["cpu"]["isa"] == ["avx", "avx2"]
  # (the CLI's process and this test's also differ in xla_flags.lwcl: a real difference, recorded as such)
  assert "cpu.isa" in got["provenance"]["resumed_across"] and got["provenance"]["cpu"]["isa"] == ["avx", "avx2"]
  with pytest.raises(ConfigError) as e:
    provenance.notes(["agem"], [[got]])
  assert str(e.value).startswith("the seeds of agem (or the parts of a resumed seed) were computed on different")
  assert "(agem/seed0 from task 1 step 0); avx avx2 (agem/seed0 from task 2 step 2)" in str(e.value)
