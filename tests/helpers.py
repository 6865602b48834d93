"""Helpers shared by the test modules: the command-line entry point as a subprocess (:func:`cli`), its
one-line error check, the small and tiny configs, and the methods under test."""

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl import methods
from lwcl.config import files as config_files
from lwcl.data import idx, sources
from lwcl.models.heads import TaskHeads
from lwcl.models.mlp import mlp_blocks
from lwcl.models.network import Network

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)

FMNIST_DIR = sources.DEFAULT_IDX_DIRS["fashion_mnist"]
HAVE_REAL_FMNIST = idx.has_idx_dataset(FMNIST_DIR)
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Every continual method, in one fixed order (the registry is the one list; tests never restate it).
METHODS = tuple(sorted(methods.METHODS))

# conftest.small_config as command-line overrides of configs/default.py.
SMALL = ["--config.model.name=mlp", "--config.model.hidden=(32,)", "--config.scenario.num_tasks=3",
         "--config.scenario.samples_per_task=200", "--config.train.epochs_per_task=1",
         "--config.train.batch_size=20", "--config.train.eval_batch_size=500",
         "--config.train.progress=False"]

# Overrides of conftest.small_config for the many-run tests (every method, every mode, replicas): MLP 16-16,
# 2 tasks of 120 examples, batch 20 (6 steps per task), small memories and importance samples. Inputs scaled
# to [0, 1] (`unit`: no per-channel statistics of the stream, which enter the programs as constants): the
# tests of a method's tiny run (contract, end to end, resume, seeds) share programs, compiled by the first and
# loaded from the persistent compilation cache by the others.
TINY = {"data.normalize": "unit", "model.hidden": (16, 16), "scenario.num_tasks": 2,
        "scenario.samples_per_task": 120, "train.batch_size": 20, "method.memory_per_task": 20,
        "method.agem_ref_batch": 20, "method.importance_samples": 40, "method.importance_batch_size": 20,
        "method.strength": 10.0, "method.buffer_size": 20, "method.icarl_memory": 20, "optimizer.learning_rate": 0.1}

# The layer-wise training modes; the many-run tests run every method in each.
MODES = ("backprop", "local", "greedy")

# A stream that trains normally for one epoch and then diverges (for conftest.small_config: 10 steps per
# epoch): 2 epochs per task, the step schedule's learning rate 1e-6 in the first epoch of task 1 (10 steps,
# every one checkpointable), 1e-6 * 1e14 = 1e8 from its second.
DIVERGES_IN_SECOND_EPOCH = {"train.epochs_per_task": 2, "optimizer.learning_rate": 1e-6,
                            "optimizer.schedule": "step", "optimizer.decay_every_epochs": 1,
                            "optimizer.decay_factor": 1e14}

# A config file for bin/compare (written with .format(tests=<this folder>)): get_config('METHOD') or
# get_config('METHOD/H1,H2') (model.hidden as text): conftest.small_config with 2 tasks.
TINY_CONFIG_FILE = """import sys
sys.path.insert(0, {tests!r})
from helpers import small_config


def get_config(arg="finetune"):
  method, _, hidden = arg.partition("/")
  overrides = {{"method.name": method, "scenario.num_tasks": 2}}
  if hidden:
    overrides["model.hidden"] = tuple(hidden.split(","))
  return small_config(**overrides)
"""


def cli(workdir, *overrides, env=None, kill_after_step=None, entry=None):
  """Runs ``python -m lwcl.main`` on the default config with the small overrides; with
  ``kill_after_step`` the same entry point SIGKILLs itself after that global step (tests/fault_run.py);
  ``entry`` replaces the entry point's arguments (e.g. ``['-c', code]``); ``env`` adds variables (None
  removes one). Returns the CompletedProcess."""
  full_env = {k: v for k, v in dict(os.environ, **(env or {})).items() if v is not None}
  if entry is None:
    entry = ["-m", "lwcl.main"] if kill_after_step is None else [
        os.path.join(ROOT, "tests", "fault_run.py"), str(kill_after_step)]
  cmd = [sys.executable, *entry, f"--config={ROOT}/configs/default.py", f"--workdir={workdir}",
         *SMALL, *overrides]
  return subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=600)


def assert_one_line_error(proc, *fragments):
  """Exit status 2, no traceback, exactly one ``error:`` line (the last) containing every fragment;
  returns that line."""
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, proc.stderr[-2000:]
  assert proc.stderr.rstrip().splitlines()[-1] == errors[0]
  for f in fragments:
    assert f in errors[0], errors[0]
  return errors[0]


def load_results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def normal(seed: int, *shapes, dtype=jnp.float32):
  """Standard normal test inputs of each of ``shapes`` (one array, or a list for several shapes), drawn on
  the host (NumPy's ``default_rng(seed)``, in order) and cast to ``dtype``. Not ``jax.random.normal``:
  that compiles a threefry and inverse-error-function program for every shape, about 1 s of CPU each on
  2 cores (60 of them made 62 CPU-seconds of the suite)."""
  rng = np.random.default_rng(seed)
  arrays = [jnp.asarray(rng.standard_normal(shape).astype(np.dtype(dtype))) for shape in shapes]
  return arrays[0] if len(arrays) == 1 else arrays


def assert_close_per_leaf(got, want, rtol=2e-4):
  """Every float leaf within ``rtol`` of the leaf's largest magnitude (float32 reassociation under vmap:
  e.g. EWC's Fisher sums per-example gradients in another order); integer leaves equal."""
  def scaled(tree, ref):
    return jax.tree.map(lambda x, r: np.asarray(x, np.float64) / max(1.0, float(np.max(np.abs(r), initial=0.0)))
                        if np.asarray(r).dtype.kind == "f" else np.asarray(x), tree, ref)
  chex.assert_trees_all_close(scaled(got, want), scaled(want, want), atol=rtol, rtol=0.0)
def requires_real_fmnist(test):
  """Marks a test of the real Fashion-MNIST files: skipped when they are missing, failed under CI."""
  if HAVE_REAL_FMNIST:
    return test
  if ON_CI:
    def fail(*args, **kwargs):
      pytest.fail(f"Fashion-MNIST IDX files missing from {FMNIST_DIR} under CI=true; bin/setup installs "
                  "them (apt-get install dataset-fashion-mnist)")
    fail.__name__ = test.__name__
    return fail
  return pytest.mark.skip(reason="Fashion-MNIST IDX files not installed (bin/setup installs them)")(test)


def small_config(**overrides):
  """The default config shrunk for tests: MLP, 3 tasks, 200 examples per task, 1 epoch, no progress bar.

  ``overrides`` maps dotted keys to values, e.g. ``{'method.name': 'joint'}``.
  """
  c = config_files.load(os.path.join(ROOT, "configs", "default.py")).get_config()
  c.model.name = "mlp"
  c.model.hidden = (32,)
  c.scenario.num_tasks = 3
  c.scenario.classes_per_task = 2
  c.scenario.samples_per_task = 200
  c.train.epochs_per_task = 1
  c.train.batch_size = 20
  c.train.eval_batch_size = 500
  c.train.progress = False
  c.checkpoint.every_steps = 0
  for key, value in overrides.items():
    config_files.set_key(c, key, value)
  c.lock()
  return c


def assert_same_stream(got: dict, want: dict) -> None:
  """Two results dicts of one stream agree exactly: accuracy matrix, initial accuracies, final losses and,
  in class-incremental runs, the Task-IL accuracy matrix (what a resumed or re-dispatched run must reproduce
  bit for bit)."""
  for key in ("accuracy_matrix", "initial_accuracy", "final_train_loss", "task_il_accuracy_matrix"):
    assert got.get(key) == want.get(key), key


def snapshot(workdir):
  """Every file under ``workdir`` with its modification time (ns): what a refused run must leave as it was."""
  return {os.path.relpath(os.path.join(d, n), workdir): os.stat(os.path.join(d, n)).st_mtime_ns
          for d, _, names in os.walk(workdir) for n in names}


LOCK_AND_SLEEP = """
import sys, time
from lwcl.io import lock as workdir_lock
with workdir_lock.hold(sys.argv[1]):
  print("locked", flush=True)
  time.sleep(600)
"""


ENV = {"JAX_PLATFORMS": "cpu"}
# A process with 4 forced CPU devices.
FOUR_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}


def forced_devices(n: int) -> dict:
  return dict(os.environ, **ENV, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


DN = ("NHWC", "HWIO", "NHWC")
# (input side, in channels, out channels, kernel, stride, padding): the models' convolutions (3x3 SAME at
# stride 1 and 2, 1x1 projection shortcuts at stride 2, odd feature maps: 7x7 after two pools of 28x28,
# ResNets on 28x28 at 7x7 after two stride-2 blocks) and the other paddings lax accepts.
CASES = [(28, 1, 8, 3, 1, "SAME"), (32, 16, 32, 3, 2, "SAME"), (16, 16, 32, 1, 2, "SAME"), (7, 8, 8, 3, 2, "SAME"),
         (7, 8, 8, 1, 2, "SAME"), (9, 4, 6, 3, 1, "VALID"), (9, 4, 6, 3, 2, ((1, 2), (0, 1)))]


# DER and DER++ with TINY's optimizer (SGD 0.1, momentum 0.9) diverge within a task of 6 steps (their replay
# terms add to every step: DER++'s loss 2.7 after task 1, chance accuracy); they get the optimizer of their
# reference protocol (Mammoth's seq-mnist: SGD 0.03 without momentum).
REFERENCE_OPTIMIZER = {"der": {"optimizer.learning_rate": 0.03, "optimizer.momentum": 0.0},
                       "derpp": {"optimizer.learning_rate": 0.03, "optimizer.momentum": 0.0}}


# In layer-wise local / greedy training (each block's own terms), DER and DER++ at that slow optimizer do not
# learn the first task in 6 steps (chance accuracy, as fine-tuning at that optimizer does); there they keep
# TINY's optimizer with smaller replay weights, which learns it in both modes (R[0, 0] 0.90-0.92 measured).
LOCAL_SETTING = {"der": {"method.der_alpha": 0.1}, "derpp": {"method.der_alpha": 0.1, "method.der_beta": 0.1}}


def method_overrides(method, mode: str = "backprop") -> dict:
  """The overrides that give ``method`` a setting it runs in (in layer-wise ``mode``): domain-incremental
  (one 2-way head shared by the tasks, as quick to learn as the default task-incremental heads) for a method
  that needs a shared head (``Method.shared_head_only``: the default scenario has a head per task), and the
  reference optimizer of :data:`REFERENCE_OPTIMIZER` (in local and greedy modes :data:`LOCAL_SETTING`
  instead)."""
  scenario = {"scenario.incremental": "domain"} if methods.METHODS[method].shared_head_only else {}
  training = REFERENCE_OPTIMIZER if mode == "backprop" else LOCAL_SETTING
  return {**scenario, **training.get(method, {})}


def method_mode(method, mode) -> str:
  """``mode``, or ``backprop`` for a method that does not run in layer-wise local and greedy training
  (``Method.layerwise_local``)."""
  return mode if methods.METHODS[method].layerwise_local else "backprop"


def tiny_config(method, mode, **extra):
  """small_config with TINY, ``method.name = method``, ``layerwise.mode = mode``, the method's setting
  (:func:`method_overrides`) and ``extra``."""
  return small_config(**{**TINY, "method.name": method, "layerwise.mode": mode, **method_overrides(method, mode),
                         **extra})


def once_per_session(folder: str, name: str, make) -> str:
  """``folder/name``, made by ``make(path)`` for the first test of the session that asks for it, whichever
  pytest-xdist worker runs it (a test asking meanwhile waits for it), then reused; ``folder`` is conftest's
  ``session_dir``. When ``make`` fails, what it left is removed and the next test asking makes it again."""
  path = os.path.join(folder, name)
  with open(path + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
    if not os.path.exists(path + ".done"):
      try:
        make(path)
      except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
      open(path + ".done", "w").close()
  return path


def four_device_run(folder: str) -> str:
  """The workdir of the small config's command-line run on 4 CPU devices (``--config.devices.num_devices=4``
  under :data:`FOUR_DEVICES`), run once per session (:func:`once_per_session`): tests/e2e/test_multi_device.py
  compares it with 1 device, tests/e2e/test_steps_per_dispatch.py with 4 steps per dispatch."""
  def make(workdir):
    proc = cli(workdir, "--config.devices.num_devices=4", env=FOUR_DEVICES)
    assert proc.returncode == 0, proc.stderr[-2000:]
  return once_per_session(folder, "four-devices", make)


def tiny_run(folder: str, method: str, mode: str) -> str:
  """The workdir of ``driver.run(tiny_config(method, mode))``, run once per session (:func:`once_per_session`):
  tests/e2e/test_every_method.py checks it, tests/e2e/test_resume.py resumes a killed run of the same stream to
  its results."""
  from lwcl.runs import driver  # pylint: disable=g-import-not-at-top
  return once_per_session(folder, f"tiny-{method}-{mode}", lambda workdir: driver.run(tiny_config(method, mode),
                                                                                      workdir))


def flip_bytes(step_dir: str) -> str:
  """XORs 64 bytes in the middle of the largest file under ``step_dir`` with 0xFF; returns its path."""
  files = [os.path.join(d, n) for d, _, names in os.walk(step_dir) for n in names]
  path = max(files, key=os.path.getsize)
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    f.seek(0)
    f.write(data)
  return path


def synthetic_dataset(n=200, size=6, classes=10, seed=0):
  rng = np.random.default_rng(seed)
  mk = lambda k: (rng.integers(0, 256, (k, size, size, 1), dtype=np.uint8),
                  (np.arange(k) % classes).astype(np.int32))
  (tx, ty), (vx, vy) = mk(n), mk(n // 2)
  return sources.ImageDataset("synthetic", tx, ty, vx, vy, classes, tuple(map(str, range(classes))), "test")


def fresh_rng():
  seed = int(np.random.SeedSequence().entropy % 2**32)
  return np.random.default_rng(seed), seed


def mlp_params(hidden):
  """The parameter tree's structure and shapes (``jax.ShapeDtypeStruct`` leaves; nothing computed)."""
  model = Network(mlp_blocks(hidden), TaskHeads(1, 10, name="head"))
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 6, 6, 1)),
                        jnp.zeros((1,), jnp.int32))["params"]


def random_like(rng, tree, lead=None):
  return jax.tree_util.tree_map(
      lambda x: jnp.asarray(rng.standard_normal(((lead,) if lead else ()) + x.shape), jnp.float32), tree)


def scenario(num_heads=3, output_dim=2):
  """A stand-in scenario for building a model: its heads and output width."""
  return types.SimpleNamespace(num_heads=num_heads, output_dim=output_dim)


def init_and_apply(model, shape, batch=4):
  """The model's variables and its output on zeros, each one compiled program (eager flax runs every
  layer's ops one by one, several times slower for the ResNets)."""
  x = jnp.zeros((batch,) + shape)
  task = jnp.arange(batch, dtype=jnp.int32) % 3
  variables = jax.jit(lambda k, x, t: model.init(k, x, t, train=False))(jax.random.PRNGKey(0), x, task)
  out = jax.jit(lambda v, x, t: model.apply(v, x, t, train=False))(variables, x, task)
  return variables, out


def init_and_apply_shapes(model, shape, batch=4):
  """:func:`init_and_apply`'s variables and output as ``jax.ShapeDtypeStruct`` leaves: traced, not compiled
  (for tests of shapes and layouts only)."""
  x = jnp.zeros((batch,) + shape)
  task = jnp.arange(batch, dtype=jnp.int32) % 3
  variables = jax.eval_shape(lambda k, x, t: model.init(k, x, t, train=False), jax.random.PRNGKey(0), x, task)
  out = jax.eval_shape(lambda v, x, t: model.apply(v, x, t, train=False), variables, x, task)
  return variables, out
