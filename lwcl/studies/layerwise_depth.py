"""Tables and curves of a layer-wise depth study (issue 15, part 5) from its finished single runs.

    python -m lwcl.studies.layerwise_depth --out=OUT STUDY

``STUDY`` holds single-task runs in the layout ``bin/compare --seeds`` reads, ``STUDY/<run name>/seed<s>/``
(``results.json``, and ``maxrss_kib.txt`` when the run was timed by ``/usr/bin/time``), as
``docs/studies/layerwise_depth_full.sh`` writes them. Runs are grouped by run name (one config, several
seeds); a group's network is ``(model.name, model.depth)`` of its config, and the group of the same network
whose ``layerwise.mode`` is ``backprop`` is its reference. Per group, in %:

* test ACC: mean and population std (ddof 0, as ``bin/compare --seeds`` prints it) over the seeds;
* gap to backprop: backprop's ACC minus the group's, paired by seed (seeds both groups finished);
* against local: the group's ACC minus the plain ``local`` group's of the same network, paired by seed (the
  effect of a variant such as accelerated downsampling, the paper's claim 2);
* best block head: the highest test accuracy of the local auxiliary heads (chosen on the test split: where
  the useful depth ends, an optimistic figure), mean and std, and the block of each seed's best head;
* per run, the linear probes' best accuracy (block) and the last block's (``layerwise.linear_probe``);
* per run: its test accuracy after each epoch (``eval.every_epoch``), training seconds and examples per second
  (``results.json``; speed figures only where the run had the machine to itself), peak RSS.

The claims tested are Ma, Yu, Li, Wang, *Why Layer-Wise Learning is Hard to Scale-up and a Possible Solution
via Accelerated Downsampling*, arXiv 2010.08038 (2020): local training falls behind backprop as networks get
deeper, and accelerated downsampling narrows the gap. A run without ``kind`` in its results (written before
that field) counts as a single run.

Writes ``OUT/layerwise_depth.md``, ``OUT/layerwise_depth.json`` and ``OUT/layerwise_depth.png`` (mean test
accuracy after each epoch, one panel per network).
"""

from __future__ import annotations

import argparse
import glob
import os
import re

import numpy as np

from lwcl import platform
from lwcl.errors import LwclError, exit_with
from lwcl.io.figures import pyplot, save_figure
from lwcl.studies import inputs
from lwcl.studies.outputs import check_out, write_study

MOVE_OUT = "move it out of the study folder, or rerun the run to finish"


def load_runs(study: str) -> dict:
  """``{run name: {seed: results}}`` of every ``study/<name>/seed<s>/results.json``; each results dict gains
  ``maxrss_kib`` (int, or None without ``maxrss_kib.txt``).

  Raises:
    StudyInputError: no finished run under ``study``; a seed folder not named ``seed<s>``; a run that is not
      a single-task layer-wise run (no block heads, no per-epoch accuracy, or more than one task), or whose
      results lack or mistype an entry the study uses (:func:`_single_layerwise_run`); a ``maxrss_kib.txt``
      without a number. A ``ValueError``, as before.
  """
  runs: dict = {}
  for path in sorted(glob.glob(os.path.join(study, "*", "seed*", "results.json"))):
    seed_dir = os.path.dirname(path)
    if not re.fullmatch(r"seed\d+", os.path.basename(seed_dir)):
      raise inputs.StudyInputError(f"{seed_dir} is not named seed<integer> (the layout <run name>/seed<s>/); "
                                   "rename it or move it out of the study folder")
    res = _single_layerwise_run(inputs.read(path, MOVE_OUT))
    rss = os.path.join(seed_dir, "maxrss_kib.txt")
    res["maxrss_kib"] = None
    if os.path.exists(rss):
      res["maxrss_kib"] = _maxrss(rss)
    name, seed = path.split(os.sep)[-3], int(os.path.basename(seed_dir)[len("seed"):])
    runs.setdefault(name, {})[seed] = res
  if not runs:
    raise inputs.StudyInputError(f"no finished run (<name>/seed<s>/results.json) under {study}; pass the "
                                 "folder docs/studies/layerwise_depth_full.sh wrote, once a run has finished")
  return runs


def _single_layerwise_run(r: inputs.Results) -> dict:
  """The entries of a run's results the study uses, checked (:mod:`lwcl.studies.inputs`).

  Raises:
    StudyInputError: not a single-task layer-wise run with per-epoch accuracy, or an entry missing or not
      of its kind (e.g. an accuracy ``null``).
  """
  heads = r.get("block_accuracy", "numbers", None)
  if r.get("kind", "any", "single") != "single" or heads is None or heads.size == 0 or \
      not r.data.get("epoch_accuracy") or r.get("scenario.num_tasks", "any") != 1:
    raise r.error("not a single-task layer-wise run with per-epoch accuracy; move it out of the study folder, "
                  "or rerun it with one task and eval.every_epoch=True (as configs/layerwise_fmnist_depth.py)")
  return {"acc": r.get("acc", "number"), "block_accuracy": heads.tolist(),
          "epoch_accuracy": r.get("epoch_accuracy", "numbers").tolist(),
          "linear_probe_accuracy": r.get("linear_probe_accuracy", "numbers", np.zeros(0)).tolist(),
          "train_seconds": r.get("train_seconds", "number"),
          "examples_per_second": r.get("examples_per_second", "number"),
          "config": {"model": {"name": r.get("config.model.name", "str"), "depth": r.get("config.model.depth", "int")},
                     "layerwise": {"mode": r.get("config.layerwise.mode", "str")},
                     "optimizer": {"decay_every_epochs": r.get("config.optimizer.decay_every_epochs", "number", 0)}}}


def _maxrss(path: str) -> int:
  """The peak RSS in KiB that ``/usr/bin/time -a`` appended last to ``path``."""
  try:
    with open(path) as f:
      return int(f.read().split()[-1])
  except (OSError, ValueError, IndexError):  # unreadable, not UTF-8, empty, not a number
    raise inputs.StudyInputError(f"{path} holds no peak RSS in KiB (an integer, as /usr/bin/time -f %M "
                                 "writes); delete it (the column is then empty) or fix it") from None


def _network(res: dict) -> str:
  model = res["config"]["model"]
  return f"ResNet-{model['depth']}" if model["name"] == "resnet" else f"{model['name']}-{model['depth']}"


def _variant(name: str, res: dict) -> str:
  """The run name's part after the network (``..._resnet32_local-convs1`` -> ``local+convs1``)."""
  model = res["config"]["model"]
  token = f"{model['name']}{model['depth']}_"
  return name.split(token, 1)[1].replace("-", "+") if token in name else name


def _mean_std(values) -> list:
  v = np.asarray(values, np.float64)
  return [float(v.mean()), float(v.std())] if v.size else [None, None]


def _paired(group: dict, ref: dict | None, sign: float) -> dict | None:
  """``sign * (ref ACC - group ACC)`` per common seed, in %, with mean and std; None without a reference."""
  if ref is None:
    return None
  seeds = sorted(set(group) & set(ref))
  diffs = [sign * 100 * (ref[s]["acc"] - group[s]["acc"]) for s in seeds]
  return {"seeds": seeds, "per_seed": diffs, "mean_std": _mean_std(diffs)} if seeds else None


def analyse(runs: dict) -> dict:
  """The study's summary rows (one per run name) and per-run rows, from :func:`load_runs`."""
  groups, per_run = [], []
  by_key = {}
  for name, seeds in runs.items():
    first = seeds[min(seeds)]
    by_key[(_network(first), first["config"]["layerwise"]["mode"], _variant(name, first))] = name
  for name, seeds in runs.items():
    first = seeds[min(seeds)]
    net, mode, variant = _network(first), first["config"]["layerwise"]["mode"], _variant(name, first)
    backprop = next((runs[n] for (k_net, k_mode, _), n in by_key.items() if k_net == net and k_mode == "backprop"),
                    None)
    local = runs.get(by_key.get((net, "local", "local")))
    heads = {s: np.asarray(r["block_accuracy"], np.float64).reshape(-1) * 100 for s, r in seeds.items()}
    groups.append({
        "run": name, "network": net, "mode": mode, "variant": variant, "seeds": sorted(seeds),
        "acc": _mean_std([100 * seeds[s]["acc"] for s in sorted(seeds)]),
        "gap_to_backprop": None if mode == "backprop" else _paired(seeds, backprop, 1.0),
        "against_local": None if mode != "local" or variant == "local" else _paired(seeds, local, -1.0),
        "best_head": _mean_std([heads[s].max() for s in sorted(seeds)]),
        "best_head_blocks": [int(heads[s].argmax()) + 1 for s in sorted(seeds)],
        "blocks": int(heads[min(seeds)].size),
        "last_head": _mean_std([heads[s][-1] for s in sorted(seeds)]),
    })
    for s in sorted(seeds):
      r = seeds[s]
      probe = np.asarray(r.get("linear_probe_accuracy") or [], np.float64).reshape(-1) * 100
      per_run.append({"run": name, "network": net, "variant": variant, "seed": s, "acc": 100 * r["acc"],
                      "best_head": float(heads[s].max()), "best_head_block": int(heads[s].argmax()) + 1,
                      "last_head": float(heads[s][-1]),
                      "probe": [float(probe.max()), int(probe.argmax()) + 1, float(probe[-1])] if probe.size else None,
                      "epoch_accuracy": [100 * a for a in np.asarray(r["epoch_accuracy"]).reshape(-1)],
                      "decay_every_epochs": r["config"]["optimizer"].get("decay_every_epochs", 0),
                      "train_seconds": r["train_seconds"], "examples_per_second": r["examples_per_second"],
                      "maxrss_kib": r["maxrss_kib"]})
  order = lambda row: (int(row["network"].split("-")[-1]) if row["network"].split("-")[-1].isdigit() else 0,  # noqa: E731
                       row["network"], row["mode"] != "backprop", row["variant"])
  groups.sort(key=order)
  rank = {g["run"]: i for i, g in enumerate(groups)}
  per_run.sort(key=lambda row: (rank[row["run"]], row["seed"]))
  return {"groups": groups, "runs": per_run}


def _pm(ms, digits=2, n=2) -> str:
  """``mean ± std``; the mean alone for ``n = 1`` value (no spread to show)."""
  if ms is None or ms[0] is None:
    return "-"
  return f"{ms[0]:.{digits}f}" if n == 1 else f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def table(result: dict) -> str:
  """Markdown: the summary table, then one row per run with its per-epoch test accuracy."""
  lines = ["| network | variant | seeds | test ACC | gap to backprop (paired) | against local (paired) | "
           "best block head (blocks) | last head |", "|---|---|---|---|---|---|---|---|"]
  for g in result["groups"]:
    gap, vs, n = g["gap_to_backprop"], g["against_local"], len(g["seeds"])
    against = (_pm(vs["mean_std"], n=len(vs["seeds"])) + " (" + ", ".join(f"{d:+.2f}" for d in vs["per_seed"]) + ")"
               if vs else "-")
    lines.append(f"| {g['network']} | {g['variant']} | {','.join(map(str, g['seeds']))} | {_pm(g['acc'], n=n)} | "
                 f"{_pm(gap['mean_std'], n=len(gap['seeds'])) if gap else '-'} | "
                 f"{against} | "
                 f"{_pm(g['best_head'], 1, n)} ({', '.join(map(str, g['best_head_blocks']))} of {g['blocks']}) | "
                 f"{_pm(g['last_head'], 1, n)} |")
  lines += ["", "| network | variant | seed | test ACC | best head (block) | last head | linear probe: best (block) "
            "/ last | test accuracy after each epoch (\\| at each decay) | training | peak RSS (KB) |",
            "|---" * 10 + "|"]
  for r in result["runs"]:
    every = r["decay_every_epochs"] or len(r["epoch_accuracy"])
    ep = r["epoch_accuracy"]
    curve = " \\| ".join(" ".join(f"{a:.1f}" for a in ep[i:i + every]) for i in range(0, len(ep), every))
    rss = "-" if r["maxrss_kib"] is None else f"{r['maxrss_kib']:,}"
    probe = "-" if r["probe"] is None else f"{r['probe'][0]:.1f} ({r['probe'][1]}) / {r['probe'][2]:.1f}"
    lines.append(f"| {r['network']} | {r['variant']} | {r['seed']} | {r['acc']:.2f} | {r['best_head']:.1f} "
                 f"({r['best_head_block']}) | {r['last_head']:.1f} | {probe} | {curve} | {r['train_seconds']:.0f} s, "
                 f"{r['examples_per_second']:.1f} ex/s | {rss} |")
  return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> None:
  """Mean test accuracy (%) after each epoch over the seeds, one panel per network, one line per variant."""
  plt = pyplot()
  networks = list(dict.fromkeys(g["network"] for g in result["groups"]))
  fig, axes = plt.subplots(1, len(networks), figsize=(4.5 * len(networks), 3.6), squeeze=False, sharey=True)
  for ax, net in zip(axes[0], networks):
    for g in (g for g in result["groups"] if g["network"] == net):
      curves = np.asarray([r["epoch_accuracy"] for r in result["runs"] if r["run"] == g["run"]])
      ax.plot(np.arange(1, curves.shape[1] + 1), curves.mean(0), marker="o", ms=3,
              label=f"{g['variant']} ({len(curves)} seeds)")
    ax.set_title(net)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  axes[0][0].set_ylabel("test accuracy, % (mean over seeds)")
  fig.tight_layout()
  save_figure(fig, path)


def main(argv=None) -> None:
  platform.configure()  # the command line's process settings (XLA:CPU flags, compilation cache)
  parser = argparse.ArgumentParser(prog="python -m lwcl.studies.layerwise_depth", description=__doc__.splitlines()[0])
  parser.add_argument("study", help="folder of the study's runs, <run name>/seed<s>/results.json")
  parser.add_argument("--out", required=True, help="folder for layerwise_depth.{md,json,png}")
  args = parser.parse_args(argv)
  try:
    check_out(args.out)
    result = analyse(load_runs(args.study))
    write_study(args.out, "layerwise_depth", table(result), result)
    plot(result, os.path.join(args.out, "layerwise_depth.png"))
  except OSError as e:  # the figure (the table and JSON: write_study's own line)
    exit_with(LwclError(f"cannot write {args.out}/layerwise_depth.png ({e.strerror or type(e).__name__}); free "
                        "space or pass another --out"))
  except LwclError as e:
    exit_with(e)


if __name__ == "__main__":
  main()
