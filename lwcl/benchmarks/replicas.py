"""``bin/bench replicas``: wall time of R seeds as replicas of one vmapped program against one seed.

Runs a config (default: the GEM-protocol MLP stream, ``configs/gem_permuted_fashion_mnist.py``: MLP
2x100, batch 10, 256 memories per task, 20 tasks) through the driver, as a single run
(``num_seeds=0``), as one replica (``num_seeds=1``) and as ``--seeds`` replicas (``num_seeds=R``), each
in a fresh temporary workdir, and prints each one's wall time (the whole ``driver.run``: data, compilation,
training, evaluation, checkpoints, results) and training time (``train_seconds``, the train steps only),
and the ratios R replicas / one replica and R replicas / single run, after an untimed one-task warm-up run.
The target of issue 9: R = 8 within 2x the wall time of one seed. Replicas pay off where a step is
dispatch-bound (small batches, small models, accelerators); on a CPU whose cores are busy with the step's
arithmetic (GEM's memory gradients: R x (T - 1) x 256 examples per step) R replicas cost about R times one.

Usage: ``bin/bench replicas [--config=FILE[:ARG]] [--tasks=N] [--seeds=8] [--steps-per-dispatch=K]
[--set key=value ...] [--json=FILE] [--no-warmup]``; ``--tasks`` shortens the stream (``scenario.num_tasks``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from lwcl.config import files as config_files
from lwcl.runs import driver

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "gem_permuted_fashion_mnist.py")


def _config(spec: str, tasks: int, num_seeds: int, steps_per_dispatch: int, sets: list):
  path, _, arg = spec.partition(":")
  module = config_files.load(path)
  c = module.get_config(arg) if arg else module.get_config()
  if tasks:
    c.scenario.num_tasks = tasks
  c.num_seeds = num_seeds
  c.train.progress = False
  c.train.steps_per_dispatch = steps_per_dispatch
  for item in sets:
    key, _, text = item.partition("=")
    old = config_files.get_key(c, key)
    config_files.set_key(c, key, type(old)(text) if not isinstance(old, bool) else text == "True")
  c.lock()
  return c


def time_run(config) -> dict:
  """``{'wall_seconds', 'train_seconds', 'acc'}`` of one ``driver.run`` of ``config`` in a fresh temporary
  workdir (deleted afterwards)."""
  with tempfile.TemporaryDirectory(prefix="lwcl-bench-replicas-") as workdir:
    tic = time.perf_counter()
    results = driver.run(config, workdir)
    wall = time.perf_counter() - tic
  acc = results["acc"]["mean"] if isinstance(results["acc"], dict) else results["acc"]
  return {"wall_seconds": wall, "train_seconds": results["train_seconds"], "acc": acc}


def main(argv: list) -> None:
  """Parses ``argv`` (the arguments after ``replicas``), runs the three timings and prints them."""
  parser = argparse.ArgumentParser(prog="bin/bench replicas", description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default=DEFAULT_CONFIG, help="config file, optionally FILE:ARG")
  parser.add_argument("--tasks", type=int, default=0, help="scenario.num_tasks (0 = the config's)")
  parser.add_argument("--seeds", type=int, default=8, help="replicas R")
  parser.add_argument("--steps-per-dispatch", type=int, default=1, help="train.steps_per_dispatch")
  parser.add_argument("--set", action="append", default=[], help="key=value override (repeatable)")
  parser.add_argument("--json", default="", help="also write the numbers to this file")
  parser.add_argument("--no-warmup", action="store_true", help="skip the untimed one-task warm-up run")
  args = parser.parse_args(argv)
  if not args.no_warmup:  # imports (TensorFlow for the event writer), data files into the page cache
    time_run(_config(args.config, 1, 0, args.steps_per_dispatch, args.set))
  rows = {}
  for label, r in (("single run (num_seeds=0)", 0), ("1 replica (num_seeds=1)", 1),
                   (f"{args.seeds} replicas (num_seeds={args.seeds})", args.seeds)):
    rows[label] = time_run(_config(args.config, args.tasks, r, args.steps_per_dispatch, args.set))
    row = rows[label]
    print(f"{label:<28} wall {row['wall_seconds']:8.1f} s   train {row['train_seconds']:8.1f} s   "
          f"ACC {100 * row['acc']:.2f}", flush=True)
  single, one, many = rows.values()
  out = {"config": args.config, "tasks": args.tasks, "seeds": args.seeds,
         "steps_per_dispatch": args.steps_per_dispatch, "runs": rows,
         "wall_ratio_vs_one_replica": many["wall_seconds"] / one["wall_seconds"],
         "wall_ratio_vs_single_run": many["wall_seconds"] / single["wall_seconds"],
         "train_ratio_vs_single_run": many["train_seconds"] / single["train_seconds"]}
  print(f"ratio {args.seeds} replicas / 1 replica (wall): {out['wall_ratio_vs_one_replica']:.2f}x; "
        f"/ single run: wall {out['wall_ratio_vs_single_run']:.2f}x, "
        f"train {out['train_ratio_vs_single_run']:.2f}x "
        f"(target <= 2x for 8 seeds)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
