"""Data parallelism: every method on 8 forced CPU devices matches 1 device, and a real 2-process run
(2 CPU devices each, collectives through gloo on localhost) matches a single process with 4 devices."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import (
  ENV,
  FOUR_DEVICES,
  METHODS,
  ROOT,
  SMALL,
  assert_one_line_error,
  cli,
  forced_devices,
  four_device_run,
  free_port,
  load_results,
)

# Every method, in two halves (two processes, so parallel test workers share the work).
HALVES = (METHODS[0::2], METHODS[1::2])


def test_the_halves_cover_every_method():
  assert sorted(HALVES[0] + HALVES[1]) == sorted(METHODS)


@pytest.mark.parametrize("half", [0, 1])
def test_every_method_on_eight_devices_matches_one_device(tmp_path, half):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "device_runs.py"), str(tmp_path), "8",
                         ",".join(HALVES[half])],
                        capture_output=True, text=True, env=forced_devices(8), cwd=ROOT, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  runs = json.loads(proc.stdout.strip().splitlines()[-1])
  methods = sorted({k.split("/")[0] for k in runs})
  assert methods == sorted(HALVES[half])
  for m in methods:
    one, eight = runs[f"{m}/1"], runs[f"{m}/8"]
    assert one["devices"]["count"] == 1 and eight["devices"]["count"] == 8
    # Sums over the batch (and Fisher / activation / memory-gradient reductions) run across devices;
    # only the order of float additions differs.
    np.testing.assert_allclose(one["final_train_loss"], eight["final_train_loss"], rtol=1e-3, atol=1e-5,
                               err_msg=m)
    np.testing.assert_allclose(one["accuracy_matrix"], eight["accuracy_matrix"], atol=0.01, err_msg=m)


@pytest.mark.parametrize("method", ["agem"])  # episodic memory written from a batch sharded over processes
def test_two_processes_match_one_process(tmp_path, method):
  extra = [f"--config.method.name={method}", "--config.method.memory_per_task=20",
           "--config.method.importance_samples=100"]
  single = cli(str(tmp_path / "single"), *extra, env={**ENV, "XLA_FLAGS":
                                                      "--xla_force_host_platform_device_count=4"})
  assert single.returncode == 0, single.stderr[-2000:]
  port, workdir = free_port(), str(tmp_path / "multi")
  cmd = [sys.executable, "-m", "lwcl.main", f"--config={ROOT}/configs/default.py", f"--workdir={workdir}",
         *SMALL, *extra, "--config.devices.multihost=True", f"--config.devices.coordinator_address=localhost:{port}",
         "--config.devices.num_processes=2"]
  procs = [subprocess.Popen(cmd + [f"--config.devices.process_id={i}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=forced_devices(2), cwd=ROOT)
           for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  a, b = load_results(str(tmp_path / "single")), load_results(workdir)
  assert a["devices"]["count"] == 4 and b["devices"] == {"count": 4, "platform": "cpu", "processes": 2}
  np.testing.assert_allclose(a["final_train_loss"], b["final_train_loss"], rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(a["accuracy_matrix"], b["accuracy_matrix"], atol=0.01)


def test_four_devices_match_one_device(tmp_path, session_dir):
  one = cli(str(tmp_path / "one"), "--config.devices.num_devices=1", env=FOUR_DEVICES)
  assert one.returncode == 0, one.stderr[-2000:]
  four = four_device_run(session_dir)  # --config.devices.num_devices=4 under FOUR_DEVICES, as `one`
  a, b = load_results(str(tmp_path / "one")), load_results(four)
  assert a["devices"]["count"] == 1 and b["devices"]["count"] == 4
  np.testing.assert_allclose(a["final_train_loss"], b["final_train_loss"], rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(a["accuracy_matrix"], b["accuracy_matrix"], atol=0.01)
  bad = cli(str(tmp_path / "bad"), "--config.devices.num_devices=4", "--config.train.batch_size=18",
            env=FOUR_DEVICES)
  assert_one_line_error(bad, "train.batch_size=18", "4 devices")
