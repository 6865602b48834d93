"""``bin/gpu-check --dry-run``: every step of the GPU check runs on the CPU, shrunk, and the JSON holds it."""

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT

STEPS = ["install", "device", "tests_models", "tests_lowering", "default_run", "layerwise", "gem_replicas"]


@pytest.mark.e2e  # subprocesses: two pytest runs and two whole streams (about 30 s on 2 cores)
def test_dry_run_passes_every_step_and_writes_the_report(tmp_path):
  out = tmp_path / "gc"
  # Budgets x4: a shared machine's load (the suite's own workers among them) must not fail the steps' checks;
  # a step over its budget: test_a_step_over_its_budget_is_stopped_and_recorded_as_timed_out
  proc = subprocess.run([sys.executable, "-m", "lwcl.benchmarks.gpu_check", "--dry-run", "--budget-scale=4",
                         f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=1800,
                        env=dict(os.environ, PYTHONPATH=ROOT))
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "| layerwise | passed |" in proc.stdout and "all steps passed" in proc.stdout
  got = json.loads((out / "gpu_check.json").read_text())
  assert {"dry_run", "platform", "passed", "seconds", "data", "device", "versions", "matmul_baseline",
          "provenance", "steps"} <= set(got)
  assert got["dry_run"] and got["passed"] and got["platform"] == "cpu" and got["data"].startswith("synthetic")
  assert list(got["steps"]) == STEPS
  assert got["steps"]["install"]["status"] == "skipped"
  assert all(got["steps"][s]["status"] == "passed" and got["steps"][s]["seconds"] > 0 for s in STEPS[1:])
  assert got["device"]["default_backend"] == "cpu" and got["device"]["count"] >= 1 and got["device"]["kind"]
  assert got["versions"]["jax"] and got["versions"]["jaxlib"]
  assert got["provenance"]["devices"]["platform"] == "cpu" and "packages" in got["provenance"]
  base = got["matmul_baseline"]
  assert base["units"].startswith("FLOP/s") and base["float32_flops_per_s"] > 0 and base["bfloat16_flops_per_s"] > 0
  assert all(got["steps"][s]["figures"]["tests"]["passed"] == 1 for s in ("tests_models", "tests_lowering"))
  run = got["steps"]["default_run"]["figures"]
  assert 0 <= run["acc"] <= 1 and run["examples_per_second"] > 0 and run["examples_per_second_per_matmul_tflops"] > 0
  rows = got["steps"]["layerwise"]["figures"]["rows"]
  assert [r["variant"].split(",")[1] for r in rows] == ["backprop", "local", "local+accelerated"]
  assert all(r["temp_bytes"] > 0 and r["steps_per_second"] > 0 and 0 < r["of_matmul"] for r in rows)
  assert got["steps"]["layerwise"]["figures"]["units"]["memory"].startswith("bytes")
  gem = got["steps"]["gem_replicas"]["figures"]
  assert gem["replicas"] == 8 and gem["wall_seconds"] > 0 and 0 <= gem["acc"] <= 1 and gem["examples_per_second"] > 0


def test_a_step_over_its_budget_is_stopped_and_recorded_as_timed_out(tmp_path):
  from lwcl.benchmarks import gpu_check  # pylint: disable=g-import-not-at-top
  log = str(tmp_path / "slow.log")
  step = gpu_check._run([sys.executable, "-c", "print('started', flush=True); import time; time.sleep(30)"], 1.0,
                        dict(os.environ), log)
  assert step["status"] == "timed out" and step["returncode"] is None and 1.0 <= step["seconds"] < 20
  assert step["budget_s"] == 1.0 and step["log_tail"] == "started\n"
  failed = gpu_check._run([sys.executable, "-c", "raise SystemExit(3)"], 30.0, dict(os.environ), log)
  assert failed["status"] == "failed" and failed["returncode"] == 3


def test_the_entry_script_hands_over_to_the_module():
  script = os.path.join(ROOT, "bin", "gpu-check")
  assert os.access(script, os.X_OK)
  with open(script) as f:
    assert "-m lwcl.benchmarks.gpu_check" in f.read()


def test_the_device_budgets_fit_eight_minutes_and_the_install_uses_the_locked_jax():
  from lwcl.benchmarks import gpu_check  # pylint: disable=g-import-not-at-top
  assert sum(device for device, _ in gpu_check.BUDGETS.values()) <= 8 * 60
  assert list(gpu_check.BUDGETS) == STEPS
  with open(os.path.join(ROOT, "README.md")) as f:  # the README's GPU install names the same version
    assert f"'jax[cuda12]=={gpu_check.locked_version('jax')}'" in f.read()
