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
import os

import numpy as np

from lwcl import platform
from lwcl.errors import LwclError, exit_with
from lwcl.studies import inputs
from lwcl.studies.outputs import check_out, write_study

STATISTICS = ("acc_std", "aopd", "mopd")


def final_accuracies(results: dict) -> tuple[np.ndarray, list]:
  """``(F, names)``: ``F[r, j]`` the final accuracy (fraction) of task ``names[j]`` in order ``r``, tasks
  identified by name wherever they sit in each order, float64 ``[R, T]``.

  Raises:
    StudyInputError: the orders do not all hold the same tasks.
  """
  names = sorted(results["orders"][0]["tasks"])
  rows = []
  for o in results["orders"]:
    if sorted(o["tasks"]) != names:
      raise inputs.StudyInputError(f"order {o.get('order')} holds tasks {o['tasks']}, not {names}; pass the "
                                   "workdir of one num_orders run (every order the same tasks)")
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


def load_orders(workdir: str) -> dict:
  """The parts of ``workdir/results.json`` (a finished ``num_orders`` run) the study uses, checked:
  ``{'method', 'config': {'method': {'strength'}}, 'orders': [{'order', 'tasks', 'acc', 'accuracy_matrix'}]}``
  with at least one order, each a finite ACC and a ``[T, T]`` matrix of finite accuracies over its tasks.

  Raises:
    StudyInputError: the file is missing, not a results object, not a ``num_orders`` run, or lacks or
      mistypes one of those entries (:mod:`lwcl.studies.inputs`).
  """
  fix = "pass the workdir of a finished num_orders run (--config.num_orders=R), or rerun it to finish"
  r = inputs.read(os.path.join(workdir, "results.json"), fix)
  if "orders" not in r.data:
    raise r.error(f"not a num_orders run (no 'orders'; its kind is {r.data.get('kind', 'single')!r})")
  orders = []
  for i in range(len(r.get("orders", "list"))):
    tasks = r.get(f"orders.{i}.tasks", "strs")
    matrix = r.get(f"orders.{i}.accuracy_matrix", "numbers")
    if not tasks or matrix.shape != (len(tasks), len(tasks)):
      raise r.error(f"orders.{i}.accuracy_matrix has shape {list(matrix.shape)}, not [T, T] for its "
                    f"{len(tasks)} tasks")
    orders.append({"order": r.get(f"orders.{i}.order", "any", i), "tasks": tasks,
                   "acc": r.get(f"orders.{i}.acc", "number"), "accuracy_matrix": matrix.tolist()})
  return {"method": r.get("method", "str"), "orders": orders,
          "config": {"method": {"strength": r.get("config.method.strength", "any", None)}}}


def analyse(workdirs, num_resamples: int = 10000, seed: int = 0) -> dict:
  """Per method (workdir): ACC mean/std and the statistics with 95% bootstrap intervals, and for every
  method after the first the paired-bootstrap interval of its difference to the first.

  Raises:
    StudyInputError: a workdir without finished order results (:func:`load_orders`), methods run on
      different numbers of orders, ``num_resamples < 1`` or ``seed < 0``. A ``ValueError``, as before.
  """
  inputs.at_least("resamples", num_resamples, 1)
  inputs.at_least("seed", seed, 0)
  loaded = [load_orders(d) for d in workdirs]
  num_orders = {len(r["orders"]) for r in loaded}
  if len(num_orders) != 1:
    raise inputs.StudyInputError(f"the workdirs hold different numbers of orders ({sorted(num_orders)}); pass "
                                 "workdirs of runs with the same --config.num_orders")
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
    check_out(args.out)  # before the bootstrap: an --out that is a file is refused first
    result = analyse(args.workdirs, args.resamples, args.seed)
    write_study(args.out, "order_spread", table(result), result)
  except LwclError as e:
    exit_with(e)


if __name__ == "__main__":
  main()
