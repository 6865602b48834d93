"""Data parallelism: every method on 8 forced CPU devices matches 1 device, and a real 2-process run
(2 CPU devices each, collectives through gloo on localhost) matches a single process with 4 devices.
Replicas split over devices (the mesh's ``replica`` axis): on 8 forced CPU devices and over 2 processes,
every replica equals the single run of its seed on one device."""

import json
import os
import subprocess
import sys
import threading
import time

import chex
import numpy as np
import pytest

from helpers import (
  ENV,
  FOUR_DEVICES,
  METHODS,
  ROOT,
  SMALL,
  assert_close_per_leaf,
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


def two_processes(workdir, *extra, per_process=((), ()), devices=2, timeout=600, entries=None):
  """Runs ``python -m lwcl.main`` (the small default config, ``extra`` overrides) as processes 0 and 1 of a
  multi-host run on localhost, each with ``devices`` forced CPU devices and its own ``per_process``
  overrides (and its own ``entries``: the arguments before the config, ``-m lwcl.main`` by default);
  returns their CompletedProcesses."""
  address = f"localhost:{free_port()}"
  args = [f"--config={ROOT}/configs/default.py", f"--workdir={workdir}", *SMALL, *extra,
          "--config.devices.multihost=True", f"--config.devices.coordinator_address={address}",
          "--config.devices.num_processes=2"]
  entries = entries or (["-m", "lwcl.main"],) * 2
  procs = [subprocess.Popen([sys.executable, *entry, *args, f"--config.devices.process_id={i}", *own],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=forced_devices(devices),
                            cwd=ROOT)
           for i, (own, entry) in enumerate(zip(per_process, entries))]
  outs = [p.communicate(timeout=timeout) for p in procs]
  assert_none_left(address)
  return [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outs)]


def left(address):
  """The command lines of the processes still running (not zombies) with the port of ``address``
  (``...coordinator_address=host:port``) in them: the run's lwcl processes, the coordination service
  process 0 started (lwcl/platform/coordination.py)."""
  port = ":" + address.rsplit(":", 1)[1]
  found = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = f.read().decode(errors="replace").replace("\0", " ")
    except OSError:
      continue
    if port + " " in cmd + " " or port + '"' in cmd:
      found.append(cmd)
  return found


def assert_none_left(address, within=5.0):
  """No process of the run with ``address`` outlives it ("no process outlives its run"), ``within``
  seconds (the service's last poll, after its last client left)."""
  deadline = time.monotonic() + within
  while left(address) and time.monotonic() < deadline:
    time.sleep(0.1)
  assert not left(address), left(address)


@pytest.mark.parametrize("method", ["agem"])  # episodic memory written from a batch sharded over processes
def test_two_processes_match_one_process(tmp_path, method):
  extra = [f"--config.method.name={method}", "--config.method.memory_per_task=20",
           "--config.method.importance_samples=100"]
  single = cli(str(tmp_path / "single"), *extra, env={**ENV, "XLA_FLAGS":
                                                      "--xla_force_host_platform_device_count=4"})
  assert single.returncode == 0, single.stderr[-2000:]
  workdir = str(tmp_path / "multi")
  for p in two_processes(workdir, *extra):
    assert p.returncode == 0, p.stderr[-3000:]
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


def _npz(path: str) -> dict:
  with np.load(path) as f:
    return dict(f)


def test_replicas_split_over_eight_devices_equal_their_single_runs(tmp_path):
  # LGD with memory_grad_chunk=1: the replicas' state includes the episodic memory, and its old-task loop's
  # trip count is a maximum over the replicas (a collective across the devices when they are split).
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "device_runs.py"), str(tmp_path), "8",
                         "replicas:lgd"], capture_output=True, text=True, env=forced_devices(8), cwd=ROOT,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  runs = json.loads(proc.stdout.strip().splitlines()[-1])
  assert runs["split"]["mesh"] == {"replica": 8, "data": 1}  # auto: replicas over the devices first
  assert runs["split_data"]["mesh"] == {"replica": 4, "data": 2}
  singles = [_npz(str(tmp_path / f"single{s}.npz")) for s in range(8)]
  assert all(runs[f"single{s}"]["mesh"] == {"replica": 1, "data": 1} for s in range(8))
  split, split_data = _npz(str(tmp_path / "split.npz")), _npz(str(tmp_path / "split_data.npz"))
  for r in range(8):
    # One replica per device: each device runs its replica's step as the single run does, so the state is
    # the single run's bit for bit, and so are the accuracies. The loss the step reports is gathered onto
    # every device, and XLA fuses its reduction differently in that program (a last-bit difference).
    chex.assert_trees_all_equal({k: v[r] for k, v in split.items()}, singles[r])
    got, want = runs["split"]["results"][r], runs[f"single{r}"]["results"][0]
    assert got["accuracy_matrix"] == want["accuracy_matrix"]
    assert got["devices"] == {"count": 8, "platform": "cpu", "processes": 1}
    np.testing.assert_allclose(got["final_train_loss"], want["final_train_loss"], rtol=1e-6)
  # Stopped after a checkpoint of the 8 x 1 split (the state gathered, whole arrays as on one device) and
  # resumed with every replica on one device: each replica is still its single run.
  assert runs["resumed"]["mesh"] == {"replica": 1, "data": 1}
  chex.assert_trees_all_equal(_npz(str(tmp_path / "resumed.npz")), split)
  for r in range(4):
    # Each replica's batch split over 2 devices: its sums over the batch add two halves (float
    # reassociation), and 4 steps per dispatch run in one compiled loop.
    assert_close_per_leaf({k: v[r] for k, v in split_data.items()}, singles[r])
    np.testing.assert_allclose(runs["split_data"]["results"][r]["accuracy_matrix"],
                               runs[f"single{r}"]["results"][0]["accuracy_matrix"], atol=2e-3)
    np.testing.assert_allclose(runs["split_data"]["results"][r]["final_train_loss"],
                               runs[f"single{r}"]["results"][0]["final_train_loss"], rtol=1e-4)


def test_replicas_split_over_two_processes_equal_their_single_runs(tmp_path):
  # 2 processes x 2 CPU devices, 2 seeds: one replica per process, its batch over the process's 2 devices;
  # EWC's end-of-task update runs on the gathered state in both processes.
  extra = ["--config.method.name=ewc", "--config.method.importance_samples=100", "--config.num_seeds=2",
           "--config.devices.data_shards=2"]
  workdir = str(tmp_path / "multi")
  for p in two_processes(workdir, *extra):
    assert p.returncode == 0, p.stderr[-3000:]
  for seed in (0, 1):
    single = cli(str(tmp_path / f"single{seed}"), *extra[:2], f"--config.seed={seed}",
                 "--config.devices.num_devices=1", env=ENV)
    assert single.returncode == 0, single.stderr[-2000:]
    a, b = load_results(os.path.join(workdir, f"seed{seed}")), load_results(str(tmp_path / f"single{seed}"))
    assert a["devices"] == {"count": 4, "platform": "cpu", "processes": 2} and b["devices"]["count"] == 1
    # The batch sums of each replica add the halves of its 2 devices (float reassociation).
    np.testing.assert_allclose(a["final_train_loss"], b["final_train_loss"], rtol=1e-4)
    np.testing.assert_allclose(a["accuracy_matrix"], b["accuracy_matrix"], atol=2e-3)


def test_processes_with_different_configs_stop_with_one_line_before_training(tmp_path):
  # Issue 32: a process started with another learning rate trained to the end, exit 0. Both now name the
  # difference and stop before any collective; nothing is trained.
  workdir = str(tmp_path / "multi")
  procs = two_processes(workdir, per_process=(["--config.optimizer.learning_rate=0.01"],
                                              ["--config.optimizer.learning_rate=0.1"]), devices=1, timeout=300)
  assert_one_line_error(procs[0], "process 0 and process 1 of this run differ in optimizer.learning_rate "
                                  "(0.01 here, 0.1 there)")
  assert_one_line_error(procs[1], "process 1 and process 0 of this run differ in optimizer.learning_rate "
                                  "(0.1 here, 0.01 there)")
  assert not os.path.exists(os.path.join(workdir, "results.json"))


def test_a_process_without_its_coordinator_stops_within_the_startup_timeout(tmp_path):
  # Issue 32: a wrong port, or process 0 never started, sat silent until killed.
  proc = cli(str(tmp_path / "w"), "--config.devices.multihost=True", "--config.devices.num_processes=2",
             f"--config.devices.coordinator_address=localhost:{free_port()}", "--config.devices.process_id=1",
             "--config.devices.startup_timeout=2", env=ENV)
  assert_one_line_error(proc, "process 1 of 2: no coordinator answered", "within devices.startup_timeout=2 s")


def test_a_coordinator_whose_partners_never_register_stops_with_one_line(tmp_path):
  # Issue 32: process 0 alone ended, after the start-up timeout, in JAX's fatal abort (exit 134, a C++ dump).
  port = free_port()
  proc = cli(str(tmp_path / "w"), "--config.devices.multihost=True", "--config.devices.num_processes=2",
             f"--config.devices.coordinator_address=localhost:{port}", "--config.devices.process_id=0",
             "--config.devices.startup_timeout=2", env=ENV)
  assert_one_line_error(proc, f"process 0 of 2 at localhost:{port}: the processes did not all connect within "
                              "devices.startup_timeout=2 s")
  assert_none_left(f"localhost:{port}")  # its coordination service process ended with it


@pytest.mark.parametrize("fault", ["KILL", "INT"])
def test_a_process_killed_or_stopped_mid_run_stops_its_partner_with_one_line(tmp_path, fault):
  # Issue 32: when one process died the other waited JAX's heartbeat timeout (100 s), then aborted (exit 134).
  # Process 1 is killed (SIGKILL, no cleanup) or stopped by Ctrl-C after its 3rd step; process 0 stops within
  # devices.heartbeat_timeout=3 s of its silence (JAX's own abort would come 30 s later), or at its next
  # check when process 1 says it stopped.
  start = time.monotonic()
  procs = two_processes(str(tmp_path / "w"), "--config.devices.heartbeat_timeout=3", devices=1, timeout=300,
                        entries=(["-m", "lwcl.main"], [os.path.join(ROOT, "tests", "fault_run.py"), f"3:{fault}"]))
  # Process 0 is either in a collective (gloo: the connection closed) or between two (the watch).
  either = ("process 0 of 2: another process of this run left a collective (Gloo",
            "process 1 of 2 stopped sending its heartbeat" if fault == "KILL" else "process 1 of 2 stopped (an "
            "error or Ctrl-C: its output has the line), so process 0 stops too")
  line = assert_one_line_error(procs[0])
  assert line.startswith(tuple(f"error: {e}" for e in either)), line
  if fault == "KILL":
    assert procs[1].returncode == -9, procs[1].stderr[-2000:]
  else:
    assert procs[1].returncode == 130, procs[1].stderr[-2000:]
    assert procs[1].stderr.rstrip().splitlines()[-1].startswith("stopped: ")
    assert "Traceback" not in procs[1].stderr and "Check failure" not in procs[1].stderr, procs[1].stderr[-2000:]
  assert time.monotonic() - start < 120  # not JAX's heartbeat abort: its timeout is 33 s here, its default 100


def test_a_hung_process_stops_its_partner_with_one_line_within_the_heartbeat_timeout(tmp_path):
  # Process 1 hangs (SIGSTOP: its heartbeat stops with it) after its 3rd step; process 0 waits in the next
  # collective, where gloo would wait for it, until its watch finds process 1 silent for more than
  # devices.heartbeat_timeout=3 s. (JAX's own heartbeat timeout, 30 s later, would abort with a C++ dump.)
  args = tiny_run_args(tmp_path / "w")
  entries = (["-m", "lwcl.main"], [os.path.join(ROOT, "tests", "fault_run.py"), "3:STOP"])
  procs = [subprocess.Popen([sys.executable, *entry, *args, f"--config.devices.process_id={i}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=forced_devices(1),
                            cwd=ROOT) for i, entry in enumerate(entries)]
  try:
    procs[0].wait(timeout=300)  # not its output's end: its service serves the stopped process 1 meanwhile
  finally:
    procs[1].kill()
    procs[1].communicate()
  out, err = procs[0].communicate(timeout=60)
  assert_none_left(args[-1])
  line = assert_one_line_error(subprocess.CompletedProcess(procs[0].args, procs[0].returncode, out, err),
                               "(devices.heartbeat_timeout=3 s): it was killed, crashed or hangs; process 0 stops")
  assert line.startswith("error: process 1 of 2 stopped sending its heartbeat "), line
  seconds = int(line.split("heartbeat ")[1].split(" s ago")[0])
  assert 3 <= seconds < 10, line  # more than 3 s, rounded


def tiny_run_args(workdir):
  """The arguments of both processes of a 2-process run with the small config and
  devices.heartbeat_timeout=3 (the process id left out); the coordinator's address last."""
  return [f"--config={ROOT}/configs/default.py", f"--workdir={workdir}", *SMALL,
          "--config.devices.multihost=True", "--config.devices.num_processes=2",
          "--config.devices.heartbeat_timeout=3", f"--config.devices.coordinator_address=localhost:{free_port()}"]


@pytest.mark.parametrize("fault", ["KILL", "STOP"])
def test_process_0_killed_or_hung_mid_run_stops_its_partner_with_one_line(tmp_path, fault):
  # Issue 32: process 0 hosted JAX's coordination service; killed, it took the service with it, and process
  # 1's JAX client aborted 0.2 s later (SIGABRT, 57 lines of C++ log and stack dump), before any Python ran.
  # The service now runs in a child process of process 0 (lwcl/platform/coordination.py), which serves
  # process 1 until it has stopped, then ends. Process 0 is killed (SIGKILL) or hangs (SIGSTOP, the service
  # serving on) after its 3rd step.
  args = tiny_run_args(tmp_path / "w")
  entries = ([os.path.join(ROOT, "tests", "fault_run.py"), f"3:{fault}"], ["-m", "lwcl.main"])
  procs = [subprocess.Popen([sys.executable, *entry, *args, f"--config.devices.process_id={i}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=forced_devices(1),
                            cwd=ROOT) for i, entry in enumerate(entries)]
  died = []
  watcher = threading.Thread(target=lambda: died.append((procs[0].wait(), time.monotonic())), daemon=True)
  watcher.start()
  try:
    out, err = procs[1].communicate(timeout=300)
    ended = time.monotonic()
  finally:
    procs[0].kill()  # hung: still there
    watcher.join(60)
  procs[0].communicate(timeout=60)  # its output ends with its service process
  assert_none_left(args[-1])
  line = assert_one_line_error(subprocess.CompletedProcess(procs[1].args, procs[1].returncode, out, err),
                               "(the run resumes from its last checkpoint)")
  # In a collective (gloo: the connection closed, killed only) or between two (the watch: its heartbeat).
  either = ("error: process 1 of 2: another process of this run left a collective (Gloo",
            "error: process 0 of 2 stopped sending its heartbeat ")
  assert line.startswith(either if fault == "KILL" else either[1]), line
  assert "): process 0 was killed or stopped" in line or line.startswith(either[1]), line
  if fault == "KILL":
    assert died[0][0] == -9
    assert ended - died[0][1] < 3 + 5, (ended - died[0][1], line)  # devices.heartbeat_timeout, a beat, exit
  else:
    assert 3 <= int(line.split("heartbeat ")[1].split(" s ago")[0]) < 10, line
