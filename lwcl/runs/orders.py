"""Task-order robustness: the same experiment over R seeded task orders, in one process.

``--config.num_orders=R`` runs the stream in ``R`` distinct task orders (:func:`distinct_orders`: order 0
is the stream as the config defines it, the others distinct seeded permutations, the same for every
method and seed), as replicas of one vmapped program (``orders_as_replicas``, default) or one after
another, each order's results in ``workdir/order<r>/`` (``scenario.task_order`` set to it; resumable like
any run). ``workdir/results.json`` then lists every
order (its task indices and names) with its metrics, their mean and standard deviation (ACC, BWT, FWT,
forgetting), and the spread of each task's final accuracy across orders; ``workdir/acc_per_order.png``
plots ACC per order. With ``--config.num_seeds=S`` as well, every order runs over ``S`` seeds (``R x S``
replicas of one program): ``workdir/order<r>/`` is then that order's ``num_seeds`` run (``seed<s>/`` and
the summary over its seeds), and the statistics over orders are those of each order's mean over seeds.

Source: the order-robustness protocol of Yoon et al., *Scalable and Order-robust Continual Learning with
Additive Parameter Decomposition*, ICLR 2020 (used by NAI, Kim & Lee 2021, Sec. 4).
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Callable

import numpy as np

from lwcl.core import metrics
from lwcl.data.scenarios import task_order
from lwcl.engine.build import UnequalStreams
from lwcl.engine.experiment import Experiment
from lwcl.errors import ConfigError
from lwcl.io import report
from lwcl.io.figures import pyplot, save_figure
from lwcl.io.results import RESULTS_FILE, common_data_fingerprint, fingerprint
from lwcl.platform import provenance
from lwcl.runs.axis import ReplicaAxis, finished_replicas, order_config  # noqa: F401  (order_config re-exported)
from lwcl.runs.seeds import run_one_after_another
from lwcl.runs.summaries import TASK_IL_SCALARS, column_name, has_task_il, seeds_of, write_summaries

SCALARS = ("acc", "bwt", "fwt", "forgetting")
ORDERS_SEED = 0  # seeds the draw of orders 1..R-1 (the same orders for every method and seed)
_ENUMERATE_UP_TO = 5040  # 7!: below this many orders, draw without replacement from all of them


def distinct_orders(num_tasks: int, num_orders: int, first) -> list:
  """``num_orders`` distinct task orders, the first being ``first``.

  Orders ``1..R-1`` are drawn with ``numpy.random.default_rng(ORDERS_SEED)``: without replacement from
  all ``T!`` orders when ``T! <= 5040``, else as permutations with repeats rejected.

  Args:
    num_tasks: ``T``.
    num_orders: ``R >= 1``.
    first: the stream as defined (a permutation of ``0..T-1``).
  Returns:
    ``R`` lists, each a permutation of ``0..T-1``, pairwise different.
  Raises:
    ConfigError: ``R > T!`` (there are not that many distinct orders).
  """
  total = math.factorial(num_tasks)
  if num_orders > total:
    raise ConfigError(f"num_orders={num_orders} asks for more task orders than the {total} distinct orders "
                      f"of {num_tasks} tasks; set --config.num_orders to at most {total}")
  first = tuple(int(i) for i in first)
  rng = np.random.default_rng(ORDERS_SEED)
  if total <= _ENUMERATE_UP_TO:
    rest = [p for p in itertools.permutations(range(num_tasks)) if p != first]
    picks = rng.permutation(len(rest))[:num_orders - 1]
    return [list(first)] + [list(rest[i]) for i in picks]
  orders, seen = [list(first)], {first}
  while len(orders) < num_orders:
    order = tuple(int(i) for i in rng.permutation(num_tasks))
    if order not in seen:
      seen.add(order)
      orders.append(list(order))
  return orders


def config_orders(config) -> list:
  """The ``config.num_orders`` distinct orders of ``config``'s stream (:func:`distinct_orders`)."""
  sc = config.scenario
  return distinct_orders(sc.num_tasks, config.num_orders, task_order(sc.num_tasks, sc.order_seed,
                                                                     sc.get("task_order", ())))


def summarize_orders(per_order: list) -> dict:
  """Statistics over orders.

  Args:
    per_order: the results dicts of each order's run.
  Returns:
    ``{'acc': {'mean', 'std', 'min', 'max', 'n'}, 'bwt': ..., 'fwt': ..., 'forgetting': ...,
    'task_final_accuracy': {task name: {'mean', 'std', 'min', 'max', 'n'}}}`` and, when every order has
    them (class-incremental runs), the same statistics of :data:`~lwcl.runs.summaries.TASK_IL_SCALARS`; a
    task is identified by its name (its classes or transform), whatever its position in each order.
  """
  out = {}
  for k in SCALARS + (TASK_IL_SCALARS if has_task_il(per_order) else ()):
    values = [r[k] for r in per_order if r.get(k) is not None]
    out[k] = metrics.order_statistics(values) if values else None
  finals = {}
  for r in per_order:
    for j, task in enumerate(r["tasks"]):
      finals.setdefault(task["name"], []).append(r["accuracy_matrix"][-1][j])
  out["task_final_accuracy"] = {name: metrics.order_statistics(v) for name, v in finals.items()}
  return out


def plot_acc_per_order(per_order: list, path: str, title: str) -> None:
  """Bar chart of ACC (%) for each order with the mean as a line; PNG at ``path``."""
  plt = pyplot()
  accs = [100 * r["acc"] for r in per_order]
  fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(accs), 3))
  ax.bar(range(len(accs)), accs, color="tab:blue")
  ax.axhline(np.mean(accs), color="k", linestyle="--", linewidth=1, label=f"mean {np.mean(accs):.1f}")
  ax.set_xticks(range(len(accs)), [f"order {i}" for i in range(len(accs))], rotation=45)
  ax.set_ylabel("ACC (%)")
  ax.set_ylim(max(0, min(accs) - 10), min(100, max(accs) + 5))
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  save_figure(fig, path)


def run_orders(config, workdir: str, on_step: Callable[[int], None] | None = None) -> dict:
  """Runs ``config.num_orders`` task orders (each over ``config.num_seeds`` seeds when set); returns (and
  writes) the summary results dict.

  With ``orders_as_replicas`` (default) the orders (times the seeds) are replicas of one vmapped program
  (:class:`~lwcl.runs.axis.ReplicaAxis`: each replica trains its own order's stream; the stacked state
  is checkpointed in ``workdir/checkpoints``); otherwise, or when the orders' tasks differ in size
  (:class:`~lwcl.engine.build.UnequalStreams`), one order after another, reusing the data set and the compiled
  steps (each order checkpointed in its folder). Either way order ``r``'s results are in
  ``workdir/order<r>/`` with the config of the single run of that order; with ``num_seeds`` that folder
  holds the order's ``num_seeds`` run (``seed<s>/`` per seed and their summary), and the order's row is
  the mean over its seeds. A finished order or seed is reported, not rerun; ``on_step`` is passed to the
  runs.

  Raises:
    ConfigError: an order's folder holds another experiment's results, or more orders than ``T!``.
  """
  path = os.path.join(workdir, RESULTS_FILE)
  fp = fingerprint(config.to_dict())
  all_orders = config_orders(config)
  seeds = seeds_of(config) if config.num_seeds else ()
  axis = ReplicaAxis.of_orders(config.seed, all_orders, seeds)
  per_replica = finished_replicas(config, axis, workdir)
  if any(d is None for d in per_replica):
    per_replica = _train_orders(config, workdir, axis, all_orders, per_replica, on_step)
  per_order = per_replica if not seeds else [_mean_over_seeds(summary) for summary in write_summaries(
      [(order_config(config, order), os.path.join(workdir, f"order{r}")) for r, order in enumerate(all_orders)],
      per_replica)]
  first = per_order[0]
  summary = summarize_orders(per_order)
  task_il = (*TASK_IL_SCALARS, "task_il_accuracy_matrix") if has_task_il(per_order) else ()
  results = {
      "kind": "orders", "num_orders": config.num_orders,
      **({"num_seeds": len(seeds), "seeds": list(seeds)} if seeds else {}),
      "orders": [{"order": r, "task_order": all_orders[r], "tasks": [t["name"] for t in res["tasks"]],
                  **{k: res[k] for k in SCALARS}, "accuracy_matrix": res["accuracy_matrix"],
                  **{k: res[k] for k in task_il}, **({"over_seeds": res["over_seeds"]} if seeds else {})}
                 for r, res in enumerate(per_order)],
      **summary,
      "method": first["method"], "dataset": first["dataset"], "scenario": first["scenario"],
      "train_seconds": float(sum(r["train_seconds"] for r in per_order) if not config.orders_as_replicas
                             else max(r["train_seconds"] for r in per_order)),
      "config": config.to_dict(), "fingerprint": fp, **common_data_fingerprint(per_replica),
  }
  merged = provenance.merge([res.get("provenance") for res in per_replica])
  if merged is not None:
    results["provenance"] = merged
  report.write_json_atomic(path, results)
  plot_acc_per_order(per_order, os.path.join(workdir, "acc_per_order.png"),
                     f"{first['method']} on {first['dataset']}: ACC per task order"
                     + (f" (mean over {len(seeds)} seeds)" if seeds else ""))
  return results


def _mean_over_seeds(summary: dict) -> dict:
  """One order's row from its ``num_seeds`` summary (:func:`lwcl.runs.summaries.summarize`): each metric
  and the accuracy matrix (and the Task-IL ones, when the summary has them) as the mean over the seeds, the
  statistics kept in ``over_seeds``."""
  keys = SCALARS + (TASK_IL_SCALARS if "task_il_accuracy_matrix_mean" in summary else ())
  task_il = ({"task_il_accuracy_matrix": summary["task_il_accuracy_matrix_mean"]}
             if "task_il_accuracy_matrix_mean" in summary else {})
  return dict(summary, **{k: summary[k]["mean"] if summary[k] else None for k in keys},
              accuracy_matrix=summary["accuracy_matrix_mean"], **task_il,
              over_seeds={k: summary[k] for k in keys})


def _train_orders(config, workdir: str, axis: ReplicaAxis, all_orders: list, done: list, on_step) -> list:
  """Every replica's results (order-major, seeds within an order): the unfinished ones trained as replicas
  of one program, or order after order (each order's seeds as replicas when ``num_seeds`` is set)."""
  if config.orders_as_replicas:
    try:
      exp = Experiment(config, axis)
    except UnequalStreams as e:
      print(f"lwcl: task orders: {e}; they run one after another", flush=True)
    else:
      print(f"lwcl: {axis.describe()} as replicas of one program", flush=True)
      return exp.run_replicas(workdir, on_step, done=done)
  if axis.seed_count:  # each order's seeds as replicas of one program, order after order
    seeds = seeds_of(config)
    return run_one_after_another(
        [(f"task order {r + 1}/{len(all_orders)} over {len(seeds)} seeds", order_config(config, order),
          os.path.join(workdir, f"order{r}")) for r, order in enumerate(all_orders)], seeds, done, on_step)
  exp, per_order = None, []
  for r, order in enumerate(all_orders):
    if done[r] is not None:
      per_order.append(done[r])
      continue
    if exp is None:
      exp = Experiment(order_config(config, order))
    else:
      exp.reorder(order)
    print(f"lwcl: task order {r + 1}/{len(all_orders)}: " + " | ".join(t.name for t in exp.scenario.tasks),
          flush=True)
    per_order.append(exp.run(axis.folder(workdir, r), on_step))
  return per_order


def format_summary(results: dict) -> str:
  """Readable table of per-order metrics and their mean +- std."""
  seeds = f" x {results['num_seeds']} seeds (each order's row: the mean over its seeds)" \
      if results.get("num_seeds") else ""
  keys = SCALARS + (("task_il_acc",) if "task_il_acc" in results else ())
  lines = [f"{results['method']} on {results['dataset']} over {results['num_orders']} task orders{seeds}",
           f"{'order':<8}" + "".join(f"{column_name(k):>12}" for k in keys)]

  def pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}"

  for o in results["orders"]:
    lines.append(f"{o['order']:<8}" + "".join(f"{pct(o[k]):>12}" for k in keys))
  lines.append(f"{'mean':<8}" + "".join(f"{pct(results[k]['mean'] if results[k] else None):>12}"
                                         for k in keys))
  lines.append(f"{'std':<8}" + "".join(f"{pct(results[k]['std'] if results[k] else None):>12}"
                                        for k in keys))
  return "\n".join(lines)
