"""Markdown tables from finished lwcl runs (their ``results.json``), for docs/studies/all.sh and by hand.

    python docs/studies/run_tables.py runs [LABEL=]RUN ...      one row per run: ACC, BWT, FWT, forgetting, time
    python docs/studies/run_tables.py seeds [LABEL=]GROUP ...   over seeds: bin/compare --seeds's table
    python docs/studies/run_tables.py sweep WORKDIR ...         a validation sweep's candidates and selection

``RUN``: a folder holding ``results.json``; or a folder of such folders (``bin/compare``'s ``--out``: one row
each, in the order of its ``comparison.csv``); or a glob of run folders (quoted, one row each).

``GROUP``: a folder whose ``seed<s>/results.json`` are one config's seeds (``bin/compare --seeds``'s layout);
or a folder of such folders (``bin/compare --seeds``'s ``--out``, one group each, in its ``comparison.csv``
order); or a glob of run folders, one seed each (quoted; e.g. rehearsal_small.py's ``'OUT/er_seed*'``).

``seeds`` prints ``bin/compare --seeds``'s own tables (:func:`lwcl.cli.compare.seed_tables`: mean +- the
95% t-interval's half-width, the population std, the paired differences of every two groups over common
seeds) from the runs found, then each group's per-seed ACC (``--old-tasks``: and the mean final accuracy
on the tasks before the last). Nothing is run: unfinished seeds are simply not there.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import sys

import numpy as np


def _read(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def split_label(arg: str) -> tuple:
  """``(label or None, path)`` of ``LABEL=PATH`` (a label holds no ``/``) or ``PATH``."""
  label, sep, path = arg.partition("=")
  if sep and label and "/" not in label:
    return label, path
  return None, arg


def _ordered_children(folder: str, keep) -> list:
  """The sub-folders of ``folder`` for which ``keep(path)`` holds, in the order of ``folder/comparison.csv``
  (bin/compare's run order) when there is one, else by name."""
  children = sorted(d for d in os.listdir(folder) if keep(os.path.join(folder, d)))
  order = os.path.join(folder, "comparison.csv")
  if os.path.exists(order):
    with open(order, newline="") as f:
      named = [row[0] for row in list(csv.reader(f))[1:] if row]
    children = [d for d in named if d in children] + [d for d in children if d not in named]
  return [os.path.join(folder, d) for d in children]


def _has_results(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "results.json"))


def _seed_folders(path: str) -> list:
  """``path/seed<s>`` folders with a results.json, by seed."""
  found = [d for d in glob.glob(os.path.join(path, "seed*")) if _has_results(d) and d.rsplit("seed", 1)[1].isdigit()]
  return sorted(found, key=lambda d: int(d.rsplit("seed", 1)[1]))


def _run_name(path: str) -> str:
  """A run folder's name; a seed folder's with its config's (``name/seed3``)."""
  parent, name = os.path.split(os.path.normpath(path))
  return f"{os.path.basename(parent)}/{name}" if re.fullmatch(r"seed\d+", name) else name


def find_runs(args) -> list:
  """``[(label, results dict)]`` of the ``runs`` arguments (see the module's docstring).

  Raises:
    ValueError: an argument that names no finished run.
  """
  out = []
  for arg in args:
    label, path = split_label(arg)
    if _has_results(path):
      out.append((label or _run_name(path), _read(os.path.join(path, "results.json"))))
      continue
    folders = _ordered_children(path, _has_results) if os.path.isdir(path) else \
        [p for p in sorted(glob.glob(path)) if _has_results(p)]
    if not folders:
      raise ValueError(f"{arg}: no results.json there (not finished, or not a run folder)")
    for p in folders:
      name = _run_name(p)
      out.append((f"{label} {name}" if label else name, _read(os.path.join(p, "results.json"))))
  return out


def find_groups(args) -> list:
  """``[(label, [per-seed results dicts])]`` of the ``seeds`` arguments (see the module's docstring).

  Raises:
    ValueError: an argument that names no finished seed.
  """
  out = []
  for arg in args:
    label, path = split_label(arg)
    name = lambda p: label or os.path.basename(os.path.normpath(p))  # noqa: E731
    if os.path.isdir(path) and _seed_folders(path):
      out.append((name(path), [_read(os.path.join(d, "results.json")) for d in _seed_folders(path)]))
      continue
    if os.path.isdir(path):
      groups = _ordered_children(path, lambda p: bool(_seed_folders(p)))
      if groups:
        out += [(os.path.basename(g), [_read(os.path.join(d, "results.json")) for d in _seed_folders(g)])
                for g in groups]
        continue
    runs = [p for p in sorted(glob.glob(path)) if _has_results(p)]
    if not runs:
      raise ValueError(f"{arg}: no finished seed there (no seed<s>/results.json, no run folder)")
    results = sorted((_read(os.path.join(p, "results.json")) for p in runs), key=lambda r: r["config"]["seed"])
    out.append((label or _glob_name(path), results))
  return out


def _glob_name(pattern: str) -> str:
  """A group's name from its glob: the last part up to its first wildcard, without a trailing ``_seed``."""
  base = re.split(r"[*?[]", os.path.basename(pattern))[0].rstrip("_-")
  return base.removesuffix("_seed").removesuffix("seed").rstrip("_-") or pattern


def _pct(value) -> str:
  """A fraction as a percentage; a statistics dict (a summary's) as mean +- half-width; ``-`` for None."""
  if value is None:
    return "-"
  if isinstance(value, dict):
    half = value.get("ci95_half_width")
    return f"{100 * value['mean']:.2f}" + ("" if half is None else f" ± {100 * half:.2f}")
  return f"{100 * value:.2f}"


def runs_table(named) -> str:
  """One row per ``(label, results)``: method, ACC, BWT, FWT, forgetting (Task-IL ACC when any run has it), train
  seconds, examples/s, convolutions; then GEM's solver report of the runs that have one."""
  task_il = any(r.get("task_il_acc") is not None for _, r in named)
  lines = ["| run | method | ACC % | BWT % | FWT % | forgetting % | " + "Task-IL ACC % | " * task_il
           + "train s | examples/s | convolutions |", "|---" * (9 + task_il) + "|"]
  for label, r in named:
    rate = r.get("examples_per_second")
    lines.append(f"| {label} | {r.get('method', '?')} | {_pct(r.get('acc'))} | {_pct(r.get('bwt'))} | "
                 f"{_pct(r.get('fwt'))} | {_pct(r.get('forgetting'))} | "
                 + f"{_pct(r.get('task_il_acc'))} | " * task_il
                 + f"{r.get('train_seconds', float('nan')):.1f} | {'-' if rate is None else f'{rate:,.0f}'} | "
                 f"{r.get('conv_impl') or '-'} |")
  solver = [(label, r["gem_solver"]) for label, r in named if isinstance(r.get("gem_solver"), dict)]
  if solver:
    lines += ["", "GEM's QP solver (`gem_solver` of results.json):", "",
              "| run | steps | projected | unconverged | violating | max iterations (bound) | max violation | ok |",
              "|---" * 8 + "|"]
    lines += [f"| {label} | {g['steps']} | {g['projected_steps']} | {g['unconverged_steps']} | "
              f"{g['violating_steps']} | {g['max_iterations']} ({g['max_iter']}) | {g['max_violation']:.1e} | "
              f"{str(g['ok']).lower()} |" for label, g in solver]
  return "\n".join(lines) + "\n"


def seeds_table(groups, old_tasks: bool = False) -> str:
  """bin/compare --seeds's tables of ``groups`` (``[(label, per-seed results)]``), its provenance notes (seeds
  of other platforms averaged, and said so), then each group's per-seed ACC."""
  from lwcl.cli import compare  # pylint: disable=g-import-not-at-top
  from lwcl.platform import provenance  # pylint: disable=g-import-not-at-top
  names, lists = [g[0] for g in groups], [g[1] for g in groups]
  lines, notes = provenance.notes(names, lists, mixed_provenance=True)
  md, _ = compare.seed_tables(names, lists, notes)
  per_seed = ["", "| run | seeds | ACC % per seed" + " | old tasks' final accuracy % per seed" * old_tasks + " |",
              "|---" * (3 + old_tasks) + "|"]
  for name, runs in groups:
    seeds = ", ".join(str(r["config"]["seed"]) for r in runs)
    accs = " / ".join(f"{100 * r['acc']:.2f}" for r in runs)
    old = " / ".join(f"{100 * np.mean(np.asarray(r['accuracy_matrix'])[-1, :-1]):.2f}" for r in runs)
    per_seed.append(f"| {name} | {seeds} | {accs} |" + f" {old} |" * old_tasks)
  return md + "\n".join(per_seed) + "\n" + "".join(f"\n{line}\n" for line in lines)


def sweep_text(workdirs) -> str:
  """Each sweep's own summary (:func:`lwcl.runs.sweep.format_summary`: the candidates' validation metric, the
  selected value, the final run on the test split) under its folder's name, as code blocks.

  Raises:
    ValueError: a folder without a finished sweep's results.json.
  """
  from lwcl.runs import sweep  # pylint: disable=g-import-not-at-top  (imports JAX)
  out = []
  for d in workdirs:
    path = os.path.join(d, "results.json")
    results = _read(path) if os.path.exists(path) else {}
    if results.get("kind") != "sweep":
      raise ValueError(f"{d}: no finished sweep (results.json with kind 'sweep')")
    out.append(f"`{os.path.basename(os.path.normpath(d))}`:\n\n```\n{sweep.format_summary(results)}\n```\n")
  return "\n".join(out)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="what", required=True)
  sub.add_parser("runs").add_argument("runs", nargs="+", metavar="[LABEL=]RUN")
  seeds = sub.add_parser("seeds")
  seeds.add_argument("groups", nargs="+", metavar="[LABEL=]GROUP")
  seeds.add_argument("--old-tasks", action="store_true", help="also each seed's mean final accuracy on old tasks")
  sub.add_parser("sweep").add_argument("workdirs", nargs="+", metavar="WORKDIR")
  args = parser.parse_args(argv)
  try:
    if args.what == "runs":
      print(runs_table(find_runs(args.runs)), end="")
    elif args.what == "seeds":
      print(seeds_table(find_groups(args.groups), args.old_tasks), end="")
    else:
      print(sweep_text(args.workdirs), end="")
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
