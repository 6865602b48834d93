"""The class-incremental rehearsal table of docs/results.md from the finished runs of
docs/studies/rehearsal_table.sh: one markdown row per finished config (unfinished ones are listed below
the table), in the script's order.

    .venv/bin/python docs/studies/rehearsal_table.py OUT      # OUT: rehearsal_table.sh's folder

Each row: Class-IL ACC mean ± 95% t-interval half-width over the seeds (lwcl.runs.summaries), BWT and
forgetting (mean ± half-width), Task-IL ACC (the same runs, each task's classes only: Mammoth's
``mask_classes``), the program's training seconds for all seeds together, and the commit and CPU of the
provenance block (when the rows come from several commits, each commit's rows are named).
"""

import json
import os
import sys

# The methods with a memory (buffer, exemplars or episodic memory): rehearsal_table.sh runs them at 500 and 200.
WITH_MEMORY = ("lgd", "agem", "gem", "er", "der", "derpp", "icarl")
ORDER = ("finetune", "joint", "ewc", "si", "nai", "lgd", "lwf", "agem", "gem", "er", "der", "derpp", "icarl")
NAMES = {"finetune": "fine-tuning", "joint": "joint", "ewc": "EWC", "si": "SI", "nai": "NAI", "lgd": "LGD",
         "lwf": "LwF", "agem": "A-GEM", "gem": "GEM", "er": "ER", "der": "DER", "derpp": "DER++",
         "icarl": "iCaRL"}
PREFIX = "rehearsal_split_fashion_mnist_"


def _pm(stat: dict) -> str:
  return f"{100 * stat['mean']:.2f} ± {100 * stat['ci95_half_width']:.2f}"


def rows(out: str):
  """(memory, method, results dict or None) for every config of the study, in table order."""
  for group, memory in (("class_500", 500), ("class_200", 200)):
    folder = os.path.join(out, group)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for method in ORDER:
      name = next((n for n in names if n in (PREFIX + method, f"{PREFIX}{method}-{memory}")), None)
      path = os.path.join(folder, name or "", "results.json")
      if name is not None or group == "class_500" or method in WITH_MEMORY:
        yield memory, method, (json.load(open(path)) if name and os.path.exists(path) else None)


def main(out: str) -> None:
  print("| method | memory | seeds | Class-IL ACC | BWT | forgetting | Task-IL ACC | train s (all seeds) |")
  print("|---|---|---|---|---|---|---|---|")
  missing, provenance, by_commit = [], set(), {}
  for memory, method, res in rows(out):
    if res is None:
      missing.append(f"{NAMES[method]} ({memory})")
      continue
    keeps = method in WITH_MEMORY
    p = res.get("provenance") or {}
    cpu = p.get("cpu") or {}
    commit = p.get("lwcl", {}).get("commit", "?")[:7]
    provenance.add((commit, cpu.get("model_name"), cpu.get("family"), cpu.get("model")))
    by_commit.setdefault(commit, []).append(f"{NAMES[method]} ({memory if keeps else '-'})")
    print(f"| {NAMES[method]} | {memory if keeps else '-'} | {res['num_seeds']} | {_pm(res['acc'])} | "
          f"{_pm(res['bwt'])} | {_pm(res['forgetting'])} | {_pm(res['task_il_acc'])} | "
          f"{res['train_seconds']:.0f} |")
  print()
  print("provenance (commit, CPU model name, family, model):", sorted(provenance))
  if len(by_commit) > 1:
    print("rows by commit:", "; ".join(f"{c}: {', '.join(r)}" for c, r in sorted(by_commit.items())))
  if missing:
    print("not finished:", ", ".join(missing))


if __name__ == "__main__":
  main(sys.argv[1])
