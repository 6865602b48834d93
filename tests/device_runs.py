"""Runs every continual method on 1 and on N devices of this process; prints the results as JSON.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/device_runs.py WORKDIR 8 [M1,M2,...]

(the methods named, default every method).

A separate process, because the number of forced CPU devices is fixed when JAX starts.
"""

import json
import os
import sys

# Started as a script: this checkout's lwcl, not whichever an editable install in the venv points at.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lwcl.runs import driver  # noqa: E402

from helpers import METHODS, TINY, method_overrides, small_config

# helpers.TINY with every batch a multiple of 8 devices, at the default learning rate.
DEVICE_TINY = {**{k: v for k, v in TINY.items() if k != "optimizer.learning_rate"},
               "scenario.samples_per_task": 128, "train.batch_size": 16, "method.memory_per_task": 16,
               "method.agem_ref_batch": 16, "method.importance_samples": 48, "method.importance_batch_size": 16}


def main(workdir: str, devices: int, methods=METHODS) -> None:
  out = {}
  for method in methods:
    for n in (1, devices):
      cfg = small_config(**{**DEVICE_TINY, "method.name": method, "devices.num_devices": n,
                            **method_overrides(method)})
      res = driver.run(cfg, os.path.join(workdir, f"{method}_{n}"))
      out[f"{method}/{n}"] = {k: res[k] for k in ("accuracy_matrix", "final_train_loss", "devices")}
  print(json.dumps(out))


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), *([sys.argv[3].split(",")] if len(sys.argv) > 3 else []))
