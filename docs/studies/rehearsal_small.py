"""The small class-incremental stream of tests/e2e/test_rehearsal.py, every rehearsal method and fine-tuning:
prints each one's ACC, its mean final accuracy on the old tasks and its accuracy matrix.

    .venv/bin/python docs/studies/rehearsal_small.py OUT_DIR [SEED]

3 tasks of 2 Fashion-MNIST classes with one 10-way head, 300 examples per task, MLP 32, 2 epochs of batch 10,
SGD 0.03 without momentum (Mammoth's seq-mnist optimizer), buffer 100, replay batch 10.
"""

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import lwcl  # noqa: E402
from lwcl.runs import driver  # noqa: E402

from helpers import small_config  # noqa: E402

STREAM = {"scenario.incremental": "class", "scenario.samples_per_task": 300, "train.batch_size": 10,
          "train.epochs_per_task": 2, "optimizer.momentum": 0.0, "optimizer.learning_rate": 0.03,
          "method.buffer_size": 100, "method.replay_batch": 10}
METHODS = {"finetune": {}, "lwf": {}, "er": {}, "der": {"method.der_alpha": 0.3},
           "derpp": {"method.der_alpha": 0.3, "method.der_beta": 0.5}}


def main(out: str, seed: int) -> None:
  lwcl.configure()
  for name, extra in METHODS.items():
    res = driver.run(small_config(**{**STREAM, "seed": seed, "method.name": name, **extra}),
                     os.path.join(out, f"{name}_seed{seed}"))
    R = np.asarray(res["accuracy_matrix"])
    print(f"{name:8s} seed {seed}: ACC {100 * res['acc']:.2f}, old tasks {100 * R[-1, :-1].mean():.2f}, "
          f"matrix {np.round(100 * R, 1).tolist()}", flush=True)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
