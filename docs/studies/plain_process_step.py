"""The default experiment's training step, built by ``lwcl.Experiment`` in a plain Python process, against
``bin/bench vs-torch``'s PyTorch eager loop for the same ConvNet, in the same process.

No ``bin/`` wrapper: no tcmalloc preload, no ``lwcl.configure()`` (so no XLA:CPU flag and no compilation
cache: ``import lwcl`` sets nothing), the public API only; the oneDNN convolutions are used when ``bin/setup``
built them, as ``results.json``'s ``conv_impl`` and the output here say. The lwcl side trains on task 0's
Fashion-MNIST batches of ``configs/default.py``, the PyTorch side on the benchmark's random batches of the
same shape (the step's cost does not depend on the values). Both take turns in interleaved rounds; medians
reported.

    .venv/bin/python docs/studies/plain_process_step.py [--rounds=7] [--steps=20]

Needs PyTorch in the environment (``bin/bench vs-torch`` installs it).
"""

import argparse
import statistics
import time

import jax
import numpy as np

import lwcl
from lwcl.benchmarks.torch_side import TorchStep


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()
  config = lwcl.load_config("configs/default.py")
  config.train.progress = False
  exp = lwcl.Experiment(config)
  data, bs = exp.setup.train_data[0], config.train.batch_size
  batches = [{"image": data.images[i * bs:(i + 1) * bs], "label": data.labels[i * bs:(i + 1) * bs].astype(np.int32),
              "task": np.zeros(bs, np.int32)} for i in range(8)]
  lr = exp.setup.learning_rates_of_task(exp.setup.steps_per_epoch[0])[..., 0]
  state = [exp.initial_state()]

  def lwcl_step(n: int) -> float:
    jax.block_until_ready(state[0])
    tic = time.perf_counter()
    for i in range(n):
      state[0] = exp.train_step(state[0], batches[i % len(batches)], lr)[0]
    jax.block_until_ready(state[0])
    return (time.perf_counter() - tic) / n

  torch_side = TorchStep("convnet", "finetune")
  lwcl_step(5)
  torch_side.run(5)
  times = {"lwcl": [], "torch": []}
  for _ in range(args.rounds):
    times["lwcl"].append(lwcl_step(args.steps))
    times["torch"].append(torch_side.run(args.steps))
  rate = {k: bs / statistics.median(v) for k, v in times.items()}
  print(f"convolutions: {exp.fns.model.conv_impl}; lwcl {rate['lwcl']:,.0f} ex/s, PyTorch {rate['torch']:,.0f} "
        f"ex/s, lwcl / PyTorch {rate['lwcl'] / rate['torch']:.2f}x (median of {args.rounds} rounds of "
        f"{args.steps} steps)")


if __name__ == "__main__":
  main()
