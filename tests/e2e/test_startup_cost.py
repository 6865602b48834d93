"""The fixed cost of a run: no TensorFlow unless TFDS is read (TensorBoard events still written and
readable), JAX's persistent compilation cache (on by default, movable, off with LWCL_COMPILATION_CACHE=0,
hit by a repeated run), the model's init compiled as one program, and exact data statistics."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import small_config
from helpers import ROOT, cli, load_results
from lwcl.platform import compilation_cache
from lwcl.io import events
from lwcl.engine import experiment
from lwcl.data.pipeline import channel_moments

# Runs lwcl.main with the arguments after the code and prints, at exit, which heavy modules it imported.
MAIN_REPORTING_MODULES = """import atexit, json, runpy, sys
atexit.register(lambda: print("MODULES " + json.dumps(
    {m: m in sys.modules for m in ("tensorflow", "tensorflow_datasets", "clu", "torch", "scipy.ndimage")})))
sys.argv = ["lwcl.main"] + sys.argv[1:]
runpy.run_module("lwcl.main", run_name="__main__")
"""


def _modules(proc) -> dict:
  line = [l for l in proc.stdout.splitlines() if l.startswith("MODULES ")]
  assert proc.returncode == 0 and line, proc.stderr[-3000:]
  return json.loads(line[-1][len("MODULES "):])


def test_idx_run_never_imports_tensorflow_and_its_events_read_back(tmp_path):
  workdir = str(tmp_path / "w")
  proc = cli(workdir, "--config.scenario.num_tasks=2", entry=["-c", MAIN_REPORTING_MODULES])
  loaded = _modules(proc)
  assert not loaded["tensorflow"] and not loaded["tensorflow_datasets"] and not loaded["clu"], loaded
  assert not loaded["scipy.ndimage"], loaded  # only rotated streams need it
  # TensorBoard's own reader finds every scalar the run wrote, at the right steps.
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  files = [f for f in os.listdir(workdir) if f.startswith(events.FILE_PREFIX)]
  assert len(files) == 1, files
  acc = event_accumulator.EventAccumulator(os.path.join(workdir, files[0]), size_guidance={"tensors": 0})
  acc.Reload()
  tags = acc.Tags()["tensors"]
  assert {"train/loss", "train/task", "eval/accuracy_task1", "eval/accuracy_task2", "acc", "bwt"} <= set(tags)
  results = load_results(workdir)
  # Accuracies after each task (2 tasks of 10 steps: global steps 10 and 20), and the final ACC.
  evals = acc.Tensors("eval/accuracy_task1")
  assert [e.step for e in evals] == [10, 20]
  np.testing.assert_allclose([e.tensor_proto.float_val[0] for e in evals],
                             np.asarray(results["accuracy_matrix"])[:, 0], rtol=1e-6)
  assert [e.step for e in acc.Tensors("acc")] == [20]
  np.testing.assert_allclose(acc.Tensors("acc")[0].tensor_proto.float_val[0], results["acc"], rtol=1e-6)
  for e in acc.Tensors("train/loss"):
    assert e.tensor_proto.dtype == 1 and np.isfinite(e.tensor_proto.float_val[0])  # DT_FLOAT


def test_metric_writer_off_the_main_process_only_logs(tmp_path):
  writer = events.MetricWriter(str(tmp_path / "w"), write_events=False)
  writer.write_scalars(3, {"a": 1.5})
  writer.flush()
  writer.close()
  assert not os.path.exists(tmp_path / "w")
  main = events.MetricWriter(str(tmp_path / "m"))
  main.write_scalars(1, {"a": 1.0})
  main.close()
  main.close()  # twice is fine
  with pytest.raises(ValueError):
    main.write_scalars(2, {"a": 2.0})
  assert os.path.getsize(main.path) > 0


CACHE_SETTING = "import {first}; import {second}, jax; print('DIR', jax.config.jax_compilation_cache_dir)"


def _cache_dir_seen(tmp_path, env: dict, first="lwcl", second="lwcl") -> str:
  full = {k: v for k, v in os.environ.items() if not k.startswith(("LWCL_CACHE", "LWCL_COMPILATION", "JAX_COMP"))}
  full.update(env)
  proc = subprocess.run([sys.executable, "-c", CACHE_SETTING.format(first=first, second=second)],
                        capture_output=True, text=True, env=full, cwd=str(tmp_path), timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout.split("DIR ")[-1].strip()


def test_compilation_cache_is_on_by_default_movable_and_can_be_turned_off(tmp_path):
  home = str(tmp_path / "home")
  assert _cache_dir_seen(tmp_path, {"HOME": home}) == os.path.join(home, ".cache", "lwcl", "jax")
  assert _cache_dir_seen(tmp_path, {"HOME": home, "XDG_CACHE_HOME": str(tmp_path / "x")}) == \
      str(tmp_path / "x" / "lwcl" / "jax")
  moved = str(tmp_path / "moved")
  assert _cache_dir_seen(tmp_path, {"LWCL_CACHE_DIR": moved}) == os.path.join(moved, "jax")
  assert _cache_dir_seen(tmp_path, {"LWCL_CACHE_DIR": moved}, first="jax") == os.path.join(moved, "jax")
  assert _cache_dir_seen(tmp_path, {"LWCL_CACHE_DIR": moved, "LWCL_COMPILATION_CACHE": "0"}) == "None"
  # A child of an lwcl process inherits lwcl's JAX setting; its own switch still turns it off.
  inherited = {"LWCL_CACHE_DIR": moved, "JAX_COMPILATION_CACHE_DIR": os.path.join(moved, "jax")}
  assert _cache_dir_seen(tmp_path, {**inherited, "LWCL_COMPILATION_CACHE": "0"}) == "None"
  # The user's own JAX setting wins.
  mine = str(tmp_path / "mine")
  assert _cache_dir_seen(tmp_path, {"LWCL_CACHE_DIR": moved, "JAX_COMPILATION_CACHE_DIR": mine}) == mine
  assert compilation_cache.cache_dir({"LWCL_CACHE_DIR": "~/c"}) == os.path.join(os.path.expanduser("~"), "c", "jax")


def test_a_repeated_run_loads_every_program_from_the_cache_with_the_same_results(tmp_path):
  # lwcl's own setting in a folder of its own (not the suite's, which this process passes on as JAX's).
  env_run = {"LWCL_CACHE_DIR": str(tmp_path / "cache"), "LWCL_COMPILATION_CACHE": "1",
             "JAX_COMPILATION_CACHE_DIR": None, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": None}
  folder = tmp_path / "cache" / "jax"
  first = cli(str(tmp_path / "a"), "--config.scenario.num_tasks=2", env=env_run)
  assert first.returncode == 0, first.stderr[-2000:]
  programs = {f for f in os.listdir(folder) if f.endswith("-cache")}
  assert len(programs) >= 5  # init, train step, eval step, ...
  second = cli(str(tmp_path / "b"), "--config.scenario.num_tasks=2", env=env_run)
  assert second.returncode == 0, second.stderr[-2000:]
  assert {f for f in os.listdir(folder) if f.endswith("-cache")} == programs  # nothing compiled anew
  a, b = load_results(str(tmp_path / "a")), load_results(str(tmp_path / "b"))
  assert a["accuracy_matrix"] == b["accuracy_matrix"] and a["final_train_loss"] == b["final_train_loss"]


def test_init_is_one_compiled_program_equal_to_the_traced_function():
  import jax  # pylint: disable=g-import-not-at-top
  for overrides in ({}, {"model.name": "convnet", "layerwise.mode": "local"}):
    exp = experiment.Experiment(small_config(**overrides))
    key, shape = jax.random.PRNGKey(3), exp.scenario.image_shape
    compiled, traced = exp.fns.init(key, shape), exp.fns.init_variables(key, shape)
    assert jax.tree.structure(compiled) == jax.tree.structure(traced)
    for a, b in zip(jax.tree.leaves(compiled), jax.tree.leaves(traced)):
      np.testing.assert_array_equal(a, b)
    exp.fns.init(jax.random.PRNGKey(4), list(shape))
    assert exp.fns._compiled_init._cache_size() == 1  # pylint: disable=protected-access


def test_channel_moments_are_numpys_mean_and_std():
  rng = np.random.default_rng(0)
  for images in (rng.integers(0, 256, (50, 9, 7, 3), dtype=np.uint8), np.zeros((4, 2, 2, 1), np.uint8),
                 rng.integers(0, 256, (30, 5, 5, 1)).astype(np.float32)):
    mean, std = channel_moments(images)
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-12, atol=1e-15)
