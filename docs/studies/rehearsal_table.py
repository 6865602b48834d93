"""The rehearsal tables of docs/results.md from the finished runs of docs/studies/rehearsal_table.sh: one
markdown row per finished config (unfinished ones are listed below the table), in the script's order; the
class-incremental table (OUT/class_500, class_200), then the task-incremental one where OUT has its runs
(OUT/task_500, task_200: the same configs with one head per task).

    .venv/bin/python docs/studies/rehearsal_table.py OUT      # OUT: rehearsal_table.sh's folder
    .venv/bin/python docs/studies/rehearsal_table.py --wide OUT   # rows our seed rule asks more seeds of

``--wide`` prints, one per line as ``<group> <config argument>`` (``class_500 der``, ``task_200 der-200``),
the finished rows with fewer than 10 seeds whose ACC (Class-IL ACC in the class-incremental rows) spreads by
more than 3 percentage points over their seeds (largest minus smallest seed): our rule is 3 seeds at least, 10
where seeds spread by more than 3 points. The table names them too.
"""

import json
import os
import sys

from lwcl.core import metrics

# The methods with a memory (buffer, exemplars or episodic memory): rehearsal_table.sh runs them at 500 and 200.
WITH_MEMORY = ("lgd", "lgd_authors", "agem", "gem", "er", "der", "derpp", "icarl")
# Paired at each memory size: the ordering the literature states (DER++ >= DER >= ER >> LwF ~ fine-tuning)
# and every other memory method against them.
PAIRED = ("finetune", "lwf") + WITH_MEMORY
ORDER = ("finetune", "joint", "ewc", "si", "nai", "lgd", "lgd_authors", "lwf", "agem", "gem", "er", "der", "derpp",
         "icarl")
NAMES = {"finetune": "fine-tuning", "joint": "joint", "ewc": "EWC", "si": "SI", "nai": "NAI", "lgd": "LGD",
         "lgd_authors": "LGD (authors' rule)", "lwf": "LwF", "agem": "A-GEM", "gem": "GEM", "er": "ER",
         "der": "DER", "derpp": "DER++", "icarl": "iCaRL"}
PREFIX = "rehearsal_split_fashion_mnist_"
# The study's scenarios (OUT/<scenario>_500, _200) and their accuracy: class-incremental (one 10-way head, the
# config's own), task-incremental (``--set scenario.incremental=task``: one head per task).
SCENARIOS = {"class": "Class-IL ACC", "task": "ACC (task-incremental, one head per task)"}


def _pm(stat: dict) -> str:
  return f"{100 * stat['mean']:.2f} ± {100 * stat['ci95_half_width']:.2f}"


def rows(out: str, scenario: str = "class"):
  """(memory, method, results dict or None, its folder or None) for every config of the study in
  ``scenario`` (``class`` or ``task``: OUT/<scenario>_500 and _200), in table order."""
  for group, memory in ((f"{scenario}_500", 500), (f"{scenario}_200", 200)):
    folder = os.path.join(out, group)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for method in ORDER:
      name = next((n for n in names if n in (PREFIX + method, f"{PREFIX}{method}-{memory}")), None)
      path = os.path.join(folder, name or "", "results.json")
      if name is not None or memory == 500 or method in WITH_MEMORY:
        found = name and os.path.exists(path)
        yield memory, method, (json.load(open(path)) if found else None), (os.path.dirname(path) if found else None)


def commits(res: dict, folder: str) -> str:
  """The lwcl commit (7 digits) that computed a row: its seeds' own (``seed<s>/results.json``; a row whose seeds
  were added to a finished run, ``bin/compare --seeds=10``, has two), as ``'8ec34f6'`` or ``'8ec34f6 (seeds
  0-4) + c42bb28 (seeds 5-9)'``; the summary's when no seed folder is there."""
  def commit(p):
    return ((p or {}).get("lwcl") or {}).get("commit", "?")[:7]
  by_seed = {}
  for seed in res.get("seeds") or []:
    path = os.path.join(folder, f"seed{seed}", "results.json")
    if os.path.exists(path):
      with open(path) as f:
        by_seed[seed] = commit(json.load(f).get("provenance"))
  if not by_seed:
    return commit(res.get("provenance"))
  groups = {}
  for seed, c in sorted(by_seed.items()):
    groups.setdefault(c, []).append(seed)
  if len(groups) == 1:
    return next(iter(groups))
  span = lambda seeds: f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else (  # noqa: E731
      ", ".join(map(str, seeds)))
  return " + ".join(f"{c} (seeds {span(seeds)})" for c, seeds in sorted(groups.items(), key=lambda g: g[1][0]))


def _per_seed(res: dict) -> dict:
  """Seed -> ACC (%): Class-IL ACC of a class-incremental row, ACC of a task-incremental one."""
  return {run["seed"]: 100 * run["acc"] for run in res["runs"]}


def _paired(name_a: str, a: dict, name_b: str, b: dict) -> str:
  """``B - A: mean ± half-width (n seeds)`` over the seeds both ran."""
  seeds = sorted(set(a) & set(b))
  d = metrics.paired_difference([a[s] for s in seeds], [b[s] for s in seeds])
  half = "n/a" if d["ci95_half_width"] is None else f"{d['ci95_half_width']:.2f}"
  return f"{name_b} - {name_a}: {d['mean']:.2f} ± {half} ({d['n']} seeds)"


def paired_lines(found: dict, acc: str = "Class-IL ACC") -> list:
  """The per-seed and paired-difference lines for ``found``: (memory, method) -> results dict; ``acc`` names
  the accuracy (:data:`SCENARIOS`)."""
  lines = ["", f"{acc} per seed (seeds in order):"]
  for (memory, method), res in found.items():
    per_seed = _per_seed(res)
    label = f"{NAMES[method]} ({memory if method in WITH_MEMORY else '-'})"
    lines.append(f"- {label}: " + " / ".join(f"{per_seed[s]:.2f}" for s in sorted(per_seed)))
  for memory in (500, 200):
    group = [(m, found.get((memory if m in WITH_MEMORY else 500, m))) for m in ORDER if m in PAIRED]
    group = [(m, _per_seed(res)) for m, res in group if res is not None]
    lines += ["", f"Paired differences of {acc} at memory {memory} (95% t):"]
    for i, (a, seeds_a) in enumerate(group):
      lines += [f"- {_paired(NAMES[a], seeds_a, NAMES[b], seeds_b)}" for b, seeds_b in group[i + 1:]]
  lines += ["", "From memory 500 to 200, paired by seed (95% t):"]
  for method in WITH_MEMORY:
    if (500, method) in found and (200, method) in found:
      at_500, at_200 = _per_seed(found[500, method]), _per_seed(found[200, method])
      lines.append(f"- {_paired(f'{NAMES[method]} 500', at_500, f'{NAMES[method]} 200', at_200)}")
  return lines


def spread(res: dict) -> float:
  """Largest minus smallest per-seed Class-IL ACC of a row's results dict, in percentage points."""
  per_seed = _per_seed(res).values()
  return max(per_seed) - min(per_seed)


def wide_rows(out: str, points: float = 3.0, enough: int = 10) -> list:
  """``(group, config argument)`` of every finished row with fewer than ``enough`` seeds whose seeds spread by
  more than ``points`` (:func:`spread`), in table order; the argument is the row's folder name without the
  config's prefix."""
  wide = []
  for group in [f"{sc}_{m}" for sc in SCENARIOS for m in (500, 200)]:
    folder = os.path.join(out, group)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for method in ORDER:
      for name in names:
        path = os.path.join(folder, name, "results.json")
        if name.startswith(PREFIX) and name[len(PREFIX):].split("-")[0] == method and os.path.exists(path):
          with open(path) as f:
            res = json.load(f)
          if res["num_seeds"] < enough and spread(res) > points:
            wide.append((group, name[len(PREFIX):]))
  return wide


def table(out: str, scenario: str = "class") -> None:
  """Prints the table of ``scenario``'s rows (:data:`SCENARIOS`), its provenance, the rows not finished and
  those with too few seeds, then :func:`paired_lines`."""
  acc = SCENARIOS[scenario]
  task_il = scenario == "class"  # the Task-IL reading of class-incremental runs (Mammoth's mask_classes)
  print(f"| method | memory | seeds | {acc} | BWT | forgetting |" + (" Task-IL ACC |" if task_il else "")
        + " train s (all seeds) |")
  print("|---|---|---|---|---|---|" + ("---|" if task_il else "") + "---|")
  missing, provenance, by_commit, found = [], set(), {}, {}
  for memory, method, res, folder in rows(out, scenario):
    if res is None:
      missing.append(f"{NAMES[method]} ({memory})")
      continue
    keeps = method in WITH_MEMORY
    found[memory, method] = res
    p = res.get("provenance") or {}
    cpu = p.get("cpu") or {}
    commit = commits(res, folder)
    provenance.add((commit, cpu.get("model_name"), cpu.get("family"), cpu.get("model")))
    by_commit.setdefault(commit, []).append(f"{NAMES[method]} ({memory if keeps else '-'})")
    print(f"| {NAMES[method]} | {memory if keeps else '-'} | {res['num_seeds']} | {_pm(res['acc'])} | "
          f"{_pm(res['bwt'])} | {_pm(res['forgetting'])} |" + (f" {_pm(res['task_il_acc'])} |" if task_il else "")
          + f" {res['train_seconds']:.0f} |")
  print()
  print("provenance (commit, CPU model name, family, model):", sorted(provenance))
  if len(by_commit) > 1:
    print("rows by commit:", "; ".join(f"{c}: {', '.join(r)}" for c, r in sorted(by_commit.items())))
  if missing:
    print("not finished:", ", ".join(missing))
  wide = [(g, a) for g, a in wide_rows(out) if g.startswith(scenario + "_")]
  if wide:
    print("fewer than 10 seeds spreading by more than 3 points:", ", ".join(f"{a} ({g})" for g, a in wide))
  print("\n".join(paired_lines(found, acc)))


def main(out: str) -> None:
  """The class-incremental table, then the task-incremental one where OUT has its runs."""
  table(out, "class")
  if any(os.path.isdir(os.path.join(out, f"task_{m}")) for m in (500, 200)):
    print()
    table(out, "task")


if __name__ == "__main__":
  if sys.argv[1] == "--wide":
    for group, argument in wide_rows(sys.argv[2]):
      print(group, argument)
  else:
    main(sys.argv[1])
