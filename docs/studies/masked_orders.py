"""Task orders under masked task-incremental heads, as replicas of one program against one after another
(docs/results.md, "The refactor of issue 28"): prints, per layer-wise mode and order, the largest
difference between the two accuracy matrices and both ACCs.

    .venv/bin/python docs/studies/masked_orders.py OUT_DIR METHOD     # e.g. agem, mas

The tests' small config (tests/helpers.py: MLP, 3 tasks of 200 Fashion-MNIST examples, 1 epoch, seed 0)
with two hidden layers, 2 task orders and ``scenario.task_heads=masked``.
"""

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import lwcl  # noqa: E402
from lwcl.runs import driver  # noqa: E402

from helpers import small_config  # noqa: E402


def main(out: str, method: str) -> None:
  lwcl.configure()
  for mode in ("local", "greedy"):
    config = small_config(**{"num_orders": 2, "method.name": method, "scenario.task_heads": "masked",
                             "layerwise.mode": mode, "model.hidden": (32, 32)})
    replicas = driver.run(config, os.path.join(out, mode, "replicas"))
    sequential = config.copy_and_resolve_references()
    sequential.orders_as_replicas = False
    one_by_one = driver.run(sequential, os.path.join(out, mode, "sequential"))
    for a, b in zip(replicas["orders"], one_by_one["orders"]):
      diff = np.max(np.abs(np.asarray(a["accuracy_matrix"]) - np.asarray(b["accuracy_matrix"])))
      print(f"{method} {mode} order {a['order']}: max difference {diff}, ACC {100 * a['acc']:.2f} "
            f"(replicas) {100 * b['acc']:.2f} (one after another)", flush=True)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
