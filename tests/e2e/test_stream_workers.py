"""No process outlives its run (issue 32): ``kill -9`` of a streamed run with a grain worker process
(``data.stream.workers=1``) left the worker and multiprocessing's resource tracker alive for over 5 minutes.
Now every worker ends when its parent does (:func:`lwcl.platform.workers.exit_with_parent`) and the
tracker with the last worker holding its pipe. Each run is tagged with an environment variable that every
process it starts inherits, so a survivor is found even after the kernel re-parents it (Linux ``/proc``)."""

import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from lwcl.data import records

from helpers import ROOT

TAG = "LWCL_TEST_RUN_TAG"
GRACE_S = 15.0  # a worker killed during its start-up ends once its imports finish (about 3 s on 2 busy cores)

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the process table in /proc")


def _tagged(tag: str) -> dict:
  """``{pid: command line}`` of the live processes (zombies excluded) whose environment holds ``TAG=tag``."""
  found = {}
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/environ", "rb") as f:
        if f"{TAG}={tag}".encode() not in f.read().split(b"\0"):
          continue
      with open(f"/proc/{pid}/stat", "rb") as f:
        if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
          continue
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        found[int(pid)] = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # ended meanwhile, or not ours to read
      continue
  return found


@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory):
  """240 training and 80 test images of 8 x 8 pixels, 4 classes, in 2 shards each."""
  d = str(tmp_path_factory.mktemp("worker_records") / "records")
  rng = np.random.default_rng(0)
  split = lambda n: (rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), np.arange(n) % 4)  # noqa: E731
  records.write_dataset(d, split(240), split(80), num_shards=2)
  return d


def _start(tmp_path, tiny_records, tag, kill_after_step=None):
  """A streamed run with one worker process: 2 tasks of 120 examples, batch 20 (6 steps per epoch), 50
  epochs per task (it is killed long before it ends); with ``kill_after_step`` it SIGKILLs itself after
  that global step (tests/fault_run.py)."""
  entry = ["-m", "lwcl.main"] if kill_after_step is None else [
      os.path.join(ROOT, "tests", "fault_run.py"), str(kill_after_step)]
  args = [f"--config={ROOT}/configs/default.py", f"--workdir={tmp_path / 'w'}", "--config.model.name=mlp",
          "--config.model.hidden=(16,)", "--config.data.name=tiny", f"--config.data.record_dir={tiny_records}",
          "--config.data.stream.workers=1", "--config.scenario.num_tasks=2", "--config.train.batch_size=20",
          "--config.train.epochs_per_task=50", "--config.train.eval_batch_size=80",
          "--config.train.progress=False", "--config.checkpoint.every_steps=0"]
  path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
  return subprocess.Popen([sys.executable, *entry, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ, **{TAG: tag}, JAX_PLATFORMS="cpu", PYTHONPATH=path))


def _seen_until_exit(proc, tag: str, kill_when_worker_starts: bool) -> dict:
  """Every tagged process seen while ``proc`` runs (polled every 50 ms); with ``kill_when_worker_starts``
  ``proc`` is SIGKILLed as soon as its first grain worker process appears."""
  seen, deadline = {}, time.monotonic() + 300
  while proc.poll() is None and time.monotonic() < deadline:
    seen.update(_tagged(tag))
    if kill_when_worker_starts and any("spawn_main" in c for c in seen.values()):
      proc.kill()
    time.sleep(0.05)
  if proc.poll() is None:
    proc.kill()
  proc.wait()
  return seen


def _gone_within(tag: str, seconds: float) -> tuple[dict, float]:
  """``(survivors, seconds waited)``: the tagged processes still alive after ``seconds``, or none at once."""
  start = time.monotonic()
  while _tagged(tag) and time.monotonic() - start < seconds:
    time.sleep(0.1)
  return _tagged(tag), time.monotonic() - start


@pytest.mark.parametrize("when", ["mid-epoch", "worker start-up"])
def test_kill_9_leaves_no_worker_or_resource_tracker(tmp_path, tiny_records, when):
  tag = uuid.uuid4().hex
  if when == "mid-epoch":  # task 1, epoch 2, batch 4: the epoch's worker is serving batches
    proc = _start(tmp_path, tiny_records, tag, kill_after_step=10)
  else:  # killed from outside while its first worker is still starting (importing grain and JAX)
    proc = _start(tmp_path, tiny_records, tag)
  try:
    seen = _seen_until_exit(proc, tag, kill_when_worker_starts=when != "mid-epoch")
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-3000:]
    assert any("spawn_main" in c for c in seen.values()), seen  # a worker was up: the case was exercised
    survivors, waited = _gone_within(tag, GRACE_S)
    assert not survivors, f"alive {GRACE_S:.0f} s after the run's kill -9: {survivors}"
  finally:
    for pid in _tagged(tag):  # never leave one behind, whatever failed
      try:
        os.kill(pid, signal.SIGKILL)
      except OSError:
        pass
  print(f"{when}: the {len(seen) - 1} processes the run started were gone {waited:.1f} s after its kill -9")
