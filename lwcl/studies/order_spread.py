"""Task-order robustness of several methods: the spread of ACC and of each task's final accuracy across
task orders, with bootstrap confidence intervals.

    python -m lwcl.studies.order_spread --out=runs/orders_table runs/orders_finetune runs/orders_nai ...

Each argument is the workdir of a finished ``num_orders`` run (:mod:`lwcl.runs.orders`; every method run on the
same orders). For each method it reports, over the ``R`` orders:

* ACC: mean and standard deviation (population) across orders;
* OPD (order-normalized performance disparity, Yoon et al., *Scalable and Order-robust Continual Learning
  with Additive Parameter Decomposition*, ICLR 2020, Sec. 4.1, the metric NAI reports): for each task, the
  maximum minus the minimum of its final accuracy ``R_{T,j}`` across orders; ``AOPD`` is its mean over the
  tasks, ``MOPD`` its maximum;
* 95% percentile bootstrap intervals for std(ACC), AOPD and MOPD: orders resampled with replacement
  (``--resamples``, seeded by ``--seed``); the same resampled orders for every method, so the intervals of
  a difference between two methods come from paired resamples (reported against the first workdir).

Writes ``OUT/order_spread.md`` and ``OUT/order_spread.json``. Percentages throughout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from lwcl import platform
from lwcl.studies.outputs import write_study

STATISTICS = ("acc_std", "aopd", "mopd")


def final_accuracies(results: dict) -> tuple[np.ndarray, list]:
  """``(F, names)``: ``F[r, j]`` the final accuracy (fraction) of task ``names[j]`` in order ``r``, tasks
  identified by name wherever they sit in each order, float64 ``[R, T]``.

  Raises:
    ValueError: the orders do not all hold the same tasks.
  """
  names = sorted(results["orders"][0]["tasks"])
  rows = []
  for o in results["orders"]:
    if sorted(o["tasks"]) != names:
      raise ValueError(f"order {o.get('order')} holds tasks {o['tasks']}, not {names}")
    last = o["accuracy_matrix"][-1]
    rows.append([last[o["tasks"].index(n)] for n in names])
  return np.asarray(rows, np.float64), names


def statistics(acc: np.ndarray, finals: np.ndarray) -> dict:
  """``acc_std`` (population std of ``acc [R]``), ``aopd`` and ``mopd`` (of ``finals [R, T]``), in %."""
  opd = finals.max(0) - finals.min(0)
  return {"acc_std": 100 * float(np.std(acc)), "aopd": 100 * float(opd.mean()), "mopd": 100 * float(opd.max())}


def bootstrap(acc: np.ndarray, finals: np.ndarray, resamples: np.ndarray) -> dict:
  """The statistics of :func:`statistics` for each row of ``resamples`` (int ``[B, R]`` order indices),
  as float64 arrays ``[B]``."""
  values = [statistics(acc[idx], finals[idx]) for idx in resamples]
  return {k: np.asarray([v[k] for v in values]) for k in STATISTICS}


def analyse(workdirs, num_resamples: int = 10000, seed: int = 0) -> dict:
  """Per method (workdir): ACC mean/std and the statistics with 95% bootstrap intervals, and for every
  method after the first the paired-bootstrap interval of its difference to the first.

  Raises:
    ValueError: a workdir without finished order results, or methods run on different numbers of orders.
  """
  loaded = []
  for d in workdirs:
    path = os.path.join(d, "results.json")
    if not os.path.exists(path):
      raise ValueError(f"{path} not found; run the orders first (--config.num_orders=R)")
    with open(path) as f:
      res = json.load(f)
    if "orders" not in res:
      raise ValueError(f"{path} is not a num_orders run")
    loaded.append(res)
  num_orders = {len(r["orders"]) for r in loaded}
  if len(num_orders) != 1:
    raise ValueError(f"the workdirs hold different numbers of orders ({sorted(num_orders)})")
  R = num_orders.pop()
  resamples = np.random.default_rng(seed).integers(0, R, size=(num_resamples, R))
  out, boots = [], []
  for d, res in zip(workdirs, loaded):
    acc = np.asarray([o["acc"] for o in res["orders"]], np.float64)
    finals, _ = final_accuracies(res)
    boot = bootstrap(acc, finals, resamples)
    row = {"workdir": d, "method": res["method"], "strength": res["config"]["method"].get("strength"),
           "orders": R, "acc_mean": 100 * float(acc.mean()), **statistics(acc, finals)}
    for k in STATISTICS:
      row[f"{k}_ci"] = [float(np.percentile(boot[k], 2.5)), float(np.percentile(boot[k], 97.5))]
      if boots:
        diff = boot[k] - boots[0][k]
        row[f"{k}_minus_first_ci"] = [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))]
    boots.append(boot)
    out.append(row)
  return {"rows": out, "resamples": num_resamples, "seed": seed}


def table(result: dict) -> str:
  """Markdown table of :func:`analyse`'s rows."""
  first = result["rows"][0]["method"]
  md = [f"| method | strength | ACC mean % | ACC std % [95% CI] | AOPD % [95% CI] | MOPD % [95% CI] | "
        f"AOPD - {first} [95% CI] |", "| --- " * 7 + "|"]
  ci = lambda v: f"[{v[0]:.2f}, {v[1]:.2f}]"  # noqa: E731
  for r in result["rows"]:
    diff = ci(r["aopd_minus_first_ci"]) if "aopd_minus_first_ci" in r else "-"
    md.append(f"| {r['method']} | {r['strength']} | {r['acc_mean']:.2f} | {r['acc_std']:.2f} {ci(r['acc_std_ci'])} | "
              f"{r['aopd']:.2f} {ci(r['aopd_ci'])} | {r['mopd']:.2f} {ci(r['mopd_ci'])} | {diff} |")
  return "\n".join(md) + "\n"


def main(argv=None) -> None:
  platform.configure()  # the command line's process settings (XLA:CPU flags, compilation cache)
  parser = argparse.ArgumentParser(prog="python -m lwcl.studies.order_spread",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+", help="finished num_orders workdirs, the reference method first")
  parser.add_argument("--out", required=True)
  parser.add_argument("--resamples", type=int, default=10000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  try:
    result = analyse(args.workdirs, args.resamples, args.seed)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  write_study(args.out, "order_spread", table(result), result)


if __name__ == "__main__":
  main()
