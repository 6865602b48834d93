"""Command-line safety: every config value checked up front (lwcl/config/types.py), one run per workdir
(lwcl/io/lock.py)."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import small_config
from helpers import ROOT, SMALL, assert_one_line_error, cli, load_results
from lwcl.config import types as config_check
from lwcl.config import files as config_files
from lwcl.runs import driver
from lwcl.io import lock as workdir_lock
from lwcl.errors import ConfigError


def default_dict(**overrides) -> dict:
  """``configs/default.py`` as a nested dict with dotted ``overrides`` set as given (no type checks)."""
  d = config_check.default_reference().to_dict()
  for key, value in overrides.items():
    config_files.set_key(d, key, value)
  return d


@pytest.mark.parametrize("key,value,fragments", [
    # What ml_collections keeps of --config.model.hidden='(100,abc)': the text as one element.
    ("model.hidden", ("(100,abc)",), ["model.hidden=(100,abc)", "'abc' is not an integer", "'(256,256)'"]),
    ("model.hidden", (100, "abc"), ["model.hidden", "'abc'"]),
    ("model.hidden", (1e3,), ["model.hidden", "1000.0 is not an integer"]),
    ("model.hidden", ("'(100,200)'",), ["model.hidden", "drop the inner quotes"]),
    ("model.conv_stages", (8, 16), ["model.conv_stages", "tuple of tuples of integers", "((32,),(64,))"]),
    ("train.epochs_per_task", 1.5, ["train.epochs_per_task=1.5", "not an integer", "epochs_per_task=2"]),
    ("train.batch_size", True, ["train.batch_size=True", "not an integer"]),
    ("train.progress", 1, ["train.progress=1", "not a boolean", "progress=True"]),
    ("data.name", 3, ["data.name=3", "not a string"]),
    ("scenario.class_order", ("(3,1,x)",), ["scenario.class_order=(3,1,x)", "'x' is not an integer"]),
    ("scenario.class_order", ((1, 2),), ["scenario.class_order", "(1, 2) is not an integer"]),
    ("scenario.angles", ("(0,abc)",), ["scenario.angles", "'abc' is not a number"]),
    ("sweep.candidates", ("(a,b)",), ["sweep.candidates", "'a' is not a number", "(1.,10.,100.)"]),
    ("layerwise.aux_hidden", ("x",), ["layerwise.aux_hidden", "'x' is not an integer"]),
    ("model", 3, ["config key model must be a section"]),
])
def test_check_config_names_key_value_and_example(key, value, fragments):
  with pytest.raises(ConfigError) as info:
    config_check.check_config(default_dict(**{key: value}), config_check.default_reference())
  message = str(info.value)
  assert "\n" not in message and ("; give " in message or "; see " in message), message
  for f in fragments:
    assert f in message, message


@pytest.mark.parametrize("key,value", [
    ("model.hidden", (256, 256)), ("model.hidden", ()), ("model.conv_stages", ((8,), (16, 16))),
    ("optimizer.learning_rate", 1), ("scenario.angles", (0, 90.5)), ("sweep.candidates", (1, 10.0)),
    ("scenario.class_order", (3, 1, 0, 2)), ("data.name", "(1,2)"),
])
def test_check_config_accepts_valid_values(key, value):
  config_check.check_config(default_dict(**{key: value}), config_check.default_reference())


def test_shipped_configs_pass_and_every_empty_default_tuple_has_an_element_type():
  reference = config_check.default_reference()
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "[!_]*.py"))):
    try:
      config = config_files.load(path).get_config()
    except Exception:  # pylint: disable=broad-except  (a config that does not load is not this test's)
      continue
    config_check.check_config(config, reference)

  def tuples(node, prefix=""):
    for k, v in node.items():
      if isinstance(v, dict):
        yield from tuples(v, prefix + k + ".")
      elif isinstance(v, tuple):
        yield prefix + k, v
  empty = {k for k, v in tuples(reference.to_dict()) if not v}
  assert empty <= set(config_check.TUPLE_ELEMENTS), empty - set(config_check.TUPLE_ELEMENTS)


def test_override_message_for_values_ml_collections_refuses():
  reference = config_check.default_reference()
  assert config_check.override_message("train.batchsize", "3", reference) is None
  message = config_check.override_message("train.progress", "yes", reference)
  assert message.startswith("bad config value train.progress=yes:") and "; give a boolean" in message


# SMALL sets model.hidden=(32,); ml_collections appends a repeated tuple override: (32, '(100,abc)').
@pytest.mark.parametrize("overrides,fragments", [
    (["--config.model.hidden=(100,abc)"], ["model.hidden=(32, '(100,abc)')", "'abc' is not an integer"]),
    (["--config.model.name=convnet", "--config.model.hidden=(100,abc)"], ["model.hidden=", "'abc'"]),
    (["--config.train.epochs_per_task=1.5"], ["train.epochs_per_task=1.5", "not an integer"]),
    (["--config.train.progress=yes"], ["train.progress=yes", "not a boolean"]),
])
def test_bad_overrides_end_in_one_line_before_the_workdir_exists(tmp_path, overrides, fragments):
  workdir = str(tmp_path / "w")
  assert_one_line_error(cli(workdir, *overrides), *fragments)
  assert not os.path.exists(workdir)


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


def snapshot(workdir):
  return {os.path.relpath(os.path.join(d, n), workdir): os.stat(os.path.join(d, n)).st_mtime_ns
          for d, _, names in os.walk(workdir) for n in names}


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


LOCK_AND_SLEEP = """
import sys, time
from lwcl.io import lock as workdir_lock
with workdir_lock.hold(sys.argv[1]):
  print("locked", flush=True)
  time.sleep(600)
"""


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
