"""The fixed cost of a run: no TensorFlow unless TFDS is read (TensorBoard events still written and
readable), and a repeated run loads every program from JAX's persistent compilation cache."""

import json
import os

import numpy as np

from lwcl.io import events

from helpers import cli, load_results

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


def test_a_repeated_run_loads_every_program_from_the_cache_with_the_same_results(tmp_path):
  # lwcl's own setting in a folder of its own (not the suite's, which this process passes on as JAX's).
  env_run = {"LWCL_CACHE_DIR": str(tmp_path / "cache"), "LWCL_COMPILATION_CACHE": "1",
             "JAX_COMPILATION_CACHE_DIR": None, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": None,
             "JAX_COMPILATION_CACHE_MAX_SIZE": None}
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
