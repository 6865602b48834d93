"""One run per workdir (lwcl/io/lock.py), through the command line: a busy workdir is refused, the lock
of a killed run is taken over."""

import os
import signal
import subprocess
import sys
import time

import pytest

from lwcl.io import lock as workdir_lock
from lwcl.runs import driver

from helpers import LOCK_AND_SLEEP, ROOT, SMALL, assert_one_line_error, cli, load_results, small_config, snapshot

# Runs lwcl.main like the command line, but after train step 1 creates the file argv[1] + '.paused' and waits
# until the file argv[1] exists.
PAUSED_RUN = """
import os, sys, time
from lwcl import main
go = sys.argv.pop(1)
def on_step(step):
  if step == 1:
    open(go + ".paused", "w").close()
  deadline = time.time() + 300
  while step == 1 and not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
main.run(on_step=on_step)
"""


def wait_for(predicate, proc, what, timeout=300):
  deadline = time.time() + timeout
  while not predicate():
    assert proc.poll() is None, f"process ended before {what}: {proc.communicate()}"
    assert time.time() < deadline, f"timed out waiting for {what}"
    time.sleep(0.1)


def test_second_run_on_a_busy_workdir_is_refused_and_the_first_finishes(tmp_path):
  workdir, go = str(tmp_path / "w"), str(tmp_path / "go")
  lock = os.path.join(workdir, workdir_lock.LOCK_FILE)
  first = subprocess.Popen(
      [sys.executable, "-c", PAUSED_RUN, go, f"--config={ROOT}/configs/default.py", f"--workdir={workdir}",
       *SMALL], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    wait_for(lambda: os.path.exists(lock) and "started=" in open(lock).read(), first, "the lock")
    # Paused: the first run writes nothing more to the workdir until `go` exists.
    wait_for(lambda: os.path.exists(go + ".paused"), first, "the first run's step 1")
    with open(lock) as f:
      held = f.read()
    assert f"pid={first.pid}\n" in held
    before = snapshot(workdir)
    second = cli(workdir)
    assert_one_line_error(second, "in use by another lwcl run", f"pid {first.pid}", "another --workdir")
    assert snapshot(workdir) == before
    with open(lock) as f:
      assert f.read() == held
  finally:
    open(go, "w").close()
    out, err = first.communicate(timeout=600)
  assert first.returncode == 0, err[-2000:]
  assert len(load_results(workdir)["accuracy_matrix"]) == 3


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
  workdir = str(tmp_path / "new" / "w")  # missing folders are created
  holder = subprocess.Popen([sys.executable, "-c", LOCK_AND_SLEEP, workdir], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {holder.pid} on "):
      driver.run(small_config(), workdir)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  results = driver.run(small_config(), workdir)
  assert len(results["accuracy_matrix"]) == 3
  with open(os.path.join(workdir, workdir_lock.LOCK_FILE)) as f:
    assert f"pid={os.getpid()}\n" in f.read()
