"""Where each seed of a ``num_seeds`` run (:mod:`lwcl.runs.seeds`) writes its results, and the summary over
seeds (what it may be combined with: :mod:`lwcl.runs.kinds`).

``workdir/seed<s>/results.json`` holds seed ``s``'s results in a single run's schema, with the config of a
single run of that seed (:func:`seed_config`: ``seed = s``, ``num_seeds = 0``); ``workdir/results.json``
holds the summary (:func:`summarize`): every seed's ACC, BWT, FWT and forgetting, their statistics
(:func:`lwcl.core.metrics.seed_statistics`: mean, population std, min, max, n, and the sample std and 95%
Student-t interval of the mean), the spread of each task's final accuracy, the mean and std of the accuracy
matrix, and the seeds' provenance (:func:`lwcl.platform.provenance.merge`).
"""

from __future__ import annotations

import os

import numpy as np

from lwcl.core import metrics
from lwcl.io import report
from lwcl.io.results import RESULTS_FILE, common_data_fingerprint, fingerprint
from lwcl.platform import provenance
from lwcl.runs.axis import seed_config  # noqa: F401  (re-exported)

SCALARS = ("acc", "bwt", "fwt", "forgetting")
TASK_IL_SCALARS = metrics.TASK_IL_SCALARS  # class-incremental runs' Task-IL ACC, BWT and forgetting
METHOD_REPORTS = ("gem_solver",)  # a method's report in a seed's results.json, copied into its summary run


def seeds_of(config) -> list:
  """The replicas' seeds, ``[seed, ..., seed + num_seeds - 1]``."""
  return [config.seed + r for r in range(config.num_seeds)]


def seed_dir(workdir: str, seed: int) -> str:
  """The folder of one seed's results, ``workdir/seed<seed>``."""
  return os.path.join(workdir, f"seed{seed}")


def summarize(config, per_seed: list) -> dict:
  """The summary of a replica run.

  Args:
    config: the replica run's config; per_seed: each seed's results dict, in seed order.
  Returns:
    ``{'num_seeds', 'seeds', 'runs': [{'seed', 'acc', 'bwt', 'fwt', 'forgetting', 'accuracy_matrix',
    'final_train_loss'} and the method's report (:data:`METHOD_REPORTS`, e.g. GEM's ``gem_solver``)],
    'acc': {'mean', 'std', 'min', 'max', 'n', 'sample_std', 'ci95_half_width', 'ci95'} (likewise 'bwt',
    'fwt', 'forgetting'; None where undefined for every seed; ``std`` the population std, ``ci95`` the 95%
    Student-t interval of the mean, None for one seed: :func:`lwcl.core.metrics.seed_statistics`),
    'task_final_accuracy': {task name: statistics}, 'accuracy_matrix_mean', 'accuracy_matrix_std' ([T, T]),
    and, when every seed's results have them (class-incremental runs), each run's Task-IL metrics and
    matrix, the statistics of :data:`TASK_IL_SCALARS` and 'task_il_accuracy_matrix_mean' / '_std',
    'method', 'dataset', 'scenario', 'tasks', 'train_seconds', 'config', 'fingerprint', 'data_fingerprint'
    (when every seed's results record the same), 'provenance' (the first seed's, with the keys where the
    seeds' differ: :func:`lwcl.platform.provenance.merge`; absent when no seed records one)}``.
  """
  seeds = seeds_of(config)
  task_il = has_task_il(per_seed)
  out = {"kind": "seeds", "num_seeds": len(seeds), "seeds": seeds,
         "runs": [{"seed": s, **{k: res.get(k) for k in SCALARS}, "accuracy_matrix": res["accuracy_matrix"],
                   "final_train_loss": res["final_train_loss"],
                   **({k: res.get(k) for k in (*TASK_IL_SCALARS, "task_il_accuracy_matrix")} if task_il else {}),
                   **{k: res[k] for k in METHOD_REPORTS if k in res}} for s, res in zip(seeds, per_seed)]}
  for k in SCALARS + (TASK_IL_SCALARS if task_il else ()):
    values = [res[k] for res in per_seed if res.get(k) is not None]
    out[k] = metrics.seed_statistics(values) if values else None
  mats = np.asarray([res["accuracy_matrix"] for res in per_seed], np.float64)
  first = per_seed[0]
  out["task_final_accuracy"] = {task["name"]: metrics.seed_statistics(mats[:, -1, j])
                                for j, task in enumerate(first["tasks"])}
  if task_il:
    task_il_mats = np.asarray([res["task_il_accuracy_matrix"] for res in per_seed], np.float64)
    out.update({"task_il_accuracy_matrix_mean": task_il_mats.mean(0).tolist(),
                "task_il_accuracy_matrix_std": task_il_mats.std(0).tolist()})
  out.update({"accuracy_matrix_mean": mats.mean(0).tolist(), "accuracy_matrix_std": mats.std(0).tolist(),
              "method": first["method"], "dataset": first["dataset"], "scenario": first["scenario"],
              "tasks": first["tasks"], "train_seconds": program_seconds(per_seed),
              "config": config.to_dict(), "fingerprint": fingerprint(config.to_dict()),
              **common_data_fingerprint(per_seed)})
  merged = provenance.merge([res.get("provenance") for res in per_seed])
  if merged is not None:
    out["provenance"] = merged
  return out


def program_seconds(per_seed: list) -> float:
  """The training time of the programs that trained ``per_seed`` (each seed's results dict): a replica's
  ``train_seconds`` is its program's, so the longest of each program's replicas (grouped by the program's
  workdir, ``replica.workdir``), summed over the programs (more than one where ``bin/compare`` trained seeds
  added to a finished run in a program of their own, :func:`lwcl.cli.compare.more_seeds`). A seed trained
  alone (no ``replica`` record) is its own program."""
  longest = {}
  for i, res in enumerate(per_seed):
    program = (res.get("replica") or {}).get("workdir", i)
    longest[program] = max(longest.get(program, 0.0), float(res["train_seconds"]))
  return float(sum(longest.values()))


def has_task_il(per_run: list) -> bool:
  """Whether every results dict of ``per_run`` has the Task-IL metrics (class-incremental runs; a run
  finished by an lwcl that did not record them has none, and then no statistic over the runs has them)."""
  return all("task_il_accuracy_matrix" in res for res in per_run)


def write_summary(config, workdir: str, per_seed: list) -> dict:
  """Writes :func:`summarize` to ``workdir/results.json`` and the mean accuracy matrix's heatmap."""
  results = summarize(config, per_seed)
  report.write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
  report.plot_accuracy_matrix(np.asarray(results["accuracy_matrix_mean"]), os.path.join(workdir, report.HEATMAP_FILE),
                              f"{results['method']} on {results['dataset']}, mean over {len(per_seed)} seeds")
  return results


def write_summaries(runs: list, per_replica: list) -> list:
  """The summaries of several ``num_seeds`` runs trained as one product (task orders or sweep candidates x
  seeds): :func:`write_summary` of each ``(config, folder)`` of ``runs`` with its slice of ``per_replica``
  (outer-major: run ``i``'s seeds are ``per_replica[i * S:(i + 1) * S]``, ``S = len(per_replica) //
  len(runs)``)."""
  S = len(per_replica) // len(runs)
  return [write_summary(config, folder, per_replica[i * S:(i + 1) * S]) for i, (config, folder) in enumerate(runs)]


def format_summary(results: dict) -> str:
  """Readable table of every seed's metrics, their mean, the half-width of its 95% t-interval and their
  (population) standard deviation (percent)."""
  keys = SCALARS + (("task_il_acc",) if "task_il_acc" in results else ())
  lines = [f"{results['method']} on {results['dataset']} over {results['num_seeds']} seeds (one vmapped "
           "program)", f"{'seed':<8}" + "".join(f"{column_name(k):>12}" for k in keys)]

  def pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}"

  for run in results["runs"]:
    lines.append(f"{run['seed']:<8}" + "".join(f"{pct(run[k]):>12}" for k in keys))
  for stat, label in (("mean", "mean"), ("ci95_half_width", "+-95%"), ("std", "std")):
    lines.append(f"{label:<8}" + "".join(f"{pct(results[k].get(stat) if results[k] else None):>12}"
                                         for k in keys))
  return "\n".join(lines)


def column_name(key: str) -> str:
  """A metric's column header: ``ACC``, ..., ``TASK-IL ACC`` for ``task_il_acc``."""
  return key.upper().replace("TASK_IL_", "TASK-IL ")
