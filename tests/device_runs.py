"""Runs every continual method on 1 and on N devices of this process; prints the results as JSON.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/device_runs.py WORKDIR 8 [M1,M2,...]

(the methods named, default every method). With ``replicas`` (or ``replicas:METHOD``, default fine-tuning;
GEM and LGD with ``method.memory_grad_chunk=1``, their loop over the old tasks' slots) instead of the
methods, runs seeds as replicas split over the N devices (:func:`replica_runs`) and their single runs on
one device.

A separate process, because the number of forced CPU devices is fixed when JAX starts.
"""

import json
import os
import sys

# Started as a script: this checkout's lwcl, not whichever an editable install in the venv points at.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from lwcl.engine.experiment import Experiment  # noqa: E402
from lwcl.errors import Interrupted  # noqa: E402
from lwcl.runs import driver  # noqa: E402
from lwcl.runs.axis import ReplicaAxis, seed_config  # noqa: E402

from helpers import METHODS, TINY, method_overrides, small_config

# helpers.TINY with every batch a multiple of 8 devices, at the default learning rate.
DEVICE_TINY = {**{k: v for k, v in TINY.items() if k != "optimizer.learning_rate"},
               "scenario.samples_per_task": 128, "train.batch_size": 16, "method.memory_per_task": 16,
               "method.agem_ref_batch": 16, "method.importance_samples": 48, "method.importance_batch_size": 16}

# Seeds as replicas on N devices (replica_runs): (name, num_seeds, overrides). 'split': one replica per device
# (N x 1); 'split_data': N/2 replicas, each replica's batch over 2 devices (N/2 x 2), K steps per dispatch.
REPLICA_RUNS = (("split", 1, {}), ("split_data", 2, {"devices.data_shards": 2, "train.steps_per_dispatch": 4}))


def main(workdir: str, devices: int, methods=METHODS) -> None:
  out = {}
  for method in methods:
    for n in (1, devices):
      cfg = small_config(**{**DEVICE_TINY, "method.name": method, "devices.num_devices": n,
                            **method_overrides(method)})
      res = driver.run(cfg, os.path.join(workdir, f"{method}_{n}"))
      out[f"{method}/{n}"] = {k: res[k] for k in ("accuracy_matrix", "final_train_loss", "devices")}
  print(json.dumps(out))


def _save_state(path: str, state) -> None:
  """The state's leaves as host arrays in an ``.npz`` (keyed by their paths)."""
  np.savez(path, **{jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(state)})


def _stop_after(step: int):
  def stop(s):
    if s == step:
      raise KeyboardInterrupt
  return stop


def replica_runs(workdir: str, devices: int, method: str = "finetune") -> None:
  """Each :data:`REPLICA_RUNS` entry (``devices // divisor`` seeds on the ``devices`` devices) and the single
  run of every seed on one device; writes each run's final state to ``WORKDIR/<name>.npz`` (replica runs:
  leaves ``[R, ...]``; single runs ``single<seed>.npz``) and prints ``{name: {mesh, results per replica}}``."""
  base = {**DEVICE_TINY, "method.name": method, **method_overrides(method),
          **({"method.memory_grad_chunk": 1} if method in ("gem", "lgd") else {})}
  keep = ("accuracy_matrix", "final_train_loss", "devices")
  out = {}
  for name, divisor, extra in REPLICA_RUNS:
    config = small_config(**{**base, **extra, "num_seeds": devices // divisor})
    exp = Experiment(config, ReplicaAxis.of_seeds(range(devices // divisor)))
    results = exp.run_replicas(os.path.join(workdir, name))
    _save_state(os.path.join(workdir, f"{name}.npz"), exp.final_state)
    out[name] = {"mesh": dict(exp.setup.parallel.mesh.shape), "results": [{k: r[k] for k in keep} for r in results]}
  # The N x 1 split stopped after its checkpoint at step 4 (task 1), then resumed on one device.
  config = small_config(**{**base, "num_seeds": devices, "checkpoint.every_steps": 4})
  folder = os.path.join(workdir, "resumed")
  try:
    Experiment(config, ReplicaAxis.of_seeds(range(devices))).run_replicas(folder, on_step=_stop_after(6))
  except Interrupted:
    pass
  with config.unlocked():
    config.devices.num_devices = 1
  exp = Experiment(config, ReplicaAxis.of_seeds(range(devices)))
  results = exp.run_replicas(folder)
  _save_state(os.path.join(workdir, "resumed.npz"), exp.final_state)
  out["resumed"] = {"mesh": dict(exp.setup.parallel.mesh.shape), "results": [{k: r[k] for k in keep} for r in results]}
  for seed in range(devices):
    exp = Experiment(seed_config(small_config(**{**base, "devices.num_devices": 1}), seed))
    result = exp.run(os.path.join(workdir, f"single{seed}"))
    _save_state(os.path.join(workdir, f"single{seed}.npz"), exp.final_state)
    out[f"single{seed}"] = {"mesh": dict(exp.setup.parallel.mesh.shape), "results": [{k: result[k] for k in keep}]}
  print(json.dumps(out))


if __name__ == "__main__":
  if sys.argv[3:4] and sys.argv[3].partition(":")[0] == "replicas":
    replica_runs(sys.argv[1], int(sys.argv[2]), sys.argv[3].partition(":")[2] or "finetune")
  else:
    main(sys.argv[1], int(sys.argv[2]), *([sys.argv[3].split(",")] if len(sys.argv) > 3 else []))
