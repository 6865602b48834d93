"""``bin/compare``: runs several configs and writes one comparison table (markdown + CSV) and one plot.

    bin/compare --out=runs/lw_fmnist configs/layerwise_fmnist.py:resnet20,backprop \\
        configs/layerwise_fmnist.py:resnet20,local configs/layerwise_fmnist.py:resnet20,local+accelerated

Each ``CONFIG`` is a config file, optionally with ``:ARG`` for its ``get_config(ARG)`` (as ``--config``
of ``bin/run``). ``--set key=value`` (repeatable) overrides a key in every config (``--set
train.epochs_per_task=2``). The runs go one after another into ``OUT/<name>/`` (``name`` from the file and
argument) and resume or are reported again like ``bin/run`` (a finished workdir is not recomputed). Then
``OUT/comparison.md``, ``OUT/comparison.csv`` and ``OUT/comparison.png`` (accuracy against depth: every
block head, solid, and the linear probes, dashed) compare them: final accuracy (and Task-IL ACC), every local
block head's accuracy after the last task (mean over tasks) and the linear probes, for layer-wise runs.

``--seeds=N`` runs every config with seeds ``seed .. seed+N-1`` as replicas of one vmapped program
(``num_seeds``, :mod:`lwcl.runs.seeds`; seeds already finished in ``OUT/<name>/seed<s>/`` are not rerun: a
larger ``N`` than a finished run's trains the missing seeds alone, :func:`run_seeds`),
and the table gives, over the seeds, the mean +- the half-width of its 95% Student-t interval
(``t_{0.975, n-1} * s / sqrt(n)``, ``s`` the sample std) and the population std of ACC (and the Task-IL
ACC of class-incremental runs), BWT, forgetting, LCA (when ``eval.lca_batches`` is set) and the train time,
then the paired difference of every two configs over their common seeds (mean of the per-seed differences
+- its 95% t-interval; also ``OUT/comparison_paired.csv``); ``OUT/comparison.png`` shows the final accuracy
of each run with the 95% interval as error bars.

Provenance (:mod:`lwcl.platform.provenance`): one line per key where the compared runs' provenance differs
is printed before the table. Seeds of one config whose provenance differs in what changes numbers (CPU
instruction set, family and model, package versions, the convolution lowering, devices, XLA flags) are not
averaged: one ``error:`` line and exit status 2, unless ``--mixed-provenance`` is given, and then a line
under the table says that the means mix platforms (as it does when different configs' runs differ so).
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import os
import re

from lwcl import platform
from lwcl.errors import Interrupted, LwclError, exit_with
from lwcl.io import safe_files
from lwcl.platform import interrupts, provenance, quiet

TABLE_MD, TABLE_CSV, PLOT = "comparison.md", "comparison.csv", "comparison.png"
PAIRED_CSV = "comparison_paired.csv"
FORGETTING_PLOT = "comparison_forgetting.png"


def load_config(spec: str, overrides=()):
  """The locked config of ``spec`` (``path[:arg]``) with ``overrides`` (``key=value`` strings) applied.

  Raises:
    ConfigError: missing file, a config that fails to load, an unknown key or a value of the wrong type.
  """
  from lwcl.config import files as config_files  # pylint: disable=g-import-not-at-top
  from lwcl.config import types as config_check  # pylint: disable=g-import-not-at-top
  from lwcl.errors import ConfigError  # pylint: disable=g-import-not-at-top
  config = config_files.load_spec(spec)
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep:
      raise ConfigError(f"--set {item} is not key=value; pass e.g. --set train.epochs_per_task=2")
    key = key.strip()
    try:
      old = config_files.get_key(config, key)
    except KeyError:
      close = config_files.close_key(config, key)
      hint = f" (did you mean {close}?)" if close and close != key else ""
      raise ConfigError(f"--set {item}: unknown config key {key}{hint}; see configs/default.py for every "
                        "key") from None
    try:
      config_files.set_key(config, key, _parse(text.strip(), old))
    except (TypeError, ValueError) as e:
      message = config_check.override_message(key, text.strip(), config_check.default_reference())
      raise ConfigError((message or f"--set {item}: {' '.join(str(e).split())}; give a value of the key's "
                         "type in configs/default.py").replace("--config.", "--set ")) from None
  config.lock()
  return config


def _parse(text: str, old):
  """``text`` as a value of ``old``'s type: strings verbatim, booleans from true/false, numbers and
  tuples as Python literals."""
  if isinstance(old, str):
    return text
  if isinstance(old, bool):
    return {"true": True, "1": True, "false": False, "0": False}.get(text.lower(), text)
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text
  if isinstance(old, float) and isinstance(value, int):
    return float(value)
  if isinstance(old, tuple) and isinstance(value, (list, int, float, str)):
    return tuple(value) if isinstance(value, list) else (value,)
  return value


def run_name(spec: str) -> str:
  """A folder name for a ``path[:arg]`` spec: the file's stem, plus the argument."""
  path, _, arg = spec.partition(":")
  name = os.path.splitext(os.path.basename(path))[0] + (f"_{arg}" if arg else "")
  return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name.replace("+", "-"))


def describe(results: dict) -> dict:
  """One table row of a run's results: mode, strides, intensity, accuracies (in %)."""
  cfg = results.get("config", {})
  model, lw = cfg.get("model", {}), cfg.get("layerwise", {})
  info = results.get("layerwise", {})
  intensity = "standard"
  if model.get("shallow_blocks"):
    intensity = (f"{model['shallow_blocks']} blocks x {model.get('shallow_convs', 2)} convs"
                 + (f" x {model['shallow_width']} ch" if model.get("shallow_width") else ""))
  return {"mode": info.get("mode", lw.get("mode", "backprop")),
          "model": f"{model.get('name', '?')}{model.get('depth', '') if model.get('name') == 'resnet' else ''}",
          "strides": str(model.get("strides", "standard")), "intensity": intensity,
          "local_blocks": info.get("local_blocks", 1), "acc": 100 * results["acc"],
          "task_il_acc": None if results.get("task_il_acc") is None else 100 * results["task_il_acc"],
          "blocks": [100 * a for a in results.get("block_acc", [])],
          "probes": [100 * a for a in results.get("linear_probe_acc", [])],
          "forgetting": [float("nan") if f is None else 100 * f for f in results.get("block_forgetting", [])],
          "train_seconds": results.get("train_seconds", float("nan"))}


def tables(names, results) -> tuple[str, str]:
  """The markdown and CSV comparison tables of ``results`` (one per run, named by ``names``), Task-IL if any."""
  rows = [describe(r) for r in results]
  task_il = any(r["task_il_acc"] is not None for r in rows)  # a column, `missing` in the runs without it
  til = lambda r, missing: [missing if r["task_il_acc"] is None else f"{r['task_il_acc']:.2f}"] * task_il  # noqa: E731
  md = ["| run | model | mode | strides | shallow intensity | K | final acc % | " + "Task-IL acc % | " * task_il
        + "block heads % (1..K) | linear probes % (1..K) | train s | block forgetting % (1..K) |",
        "| --- " * (11 + task_il) + "|"]
  for name, r in zip(names, rows):
    fmt = lambda v: " ".join(f"{a:.1f}" for a in v) or "-"  # noqa: E731
    md.append(f"| {name} | {r['model']} | {r['mode']} | {r['strides']} | {r['intensity']} | {r['local_blocks']} | "
              f"{r['acc']:.2f} | {''.join(f'{v} | ' for v in til(r, '-'))}{fmt(r['blocks'])} | {fmt(r['probes'])} | "
              f"{r['train_seconds']:.0f} | {fmt(r['forgetting'])} |")
  k = max([len(r[key]) for r in rows for key in ("blocks", "probes", "forgetting")] + [0])
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(["run", "model", "mode", "strides", "intensity", "local_blocks", "acc"] + ["task_il_acc"] * task_il
                  + ["train_seconds"] + [f"block_{i + 1}" for i in range(k)] + [f"probe_{i + 1}" for i in range(k)]
                  + [f"forgetting_{i + 1}" for i in range(k)])
  for name, r in zip(names, rows):
    pad = lambda v: [f"{a:.2f}" for a in v] + [""] * (k - len(v))  # noqa: E731
    writer.writerow([name, r["model"], r["mode"], r["strides"], r["intensity"], r["local_blocks"],
                     f"{r['acc']:.2f}"] + til(r, "") + [f"{r['train_seconds']:.1f}"]
                    + pad(r["blocks"]) + pad(r["probes"]) + pad(r["forgetting"]))
  return "\n".join(md) + "\n", out.getvalue()


SEED_SCALARS = ("acc", "bwt", "forgetting", "lca", "train_seconds")
PAIRED_SCALARS = ("acc", "bwt", "forgetting", "lca")


def run_seeds(config, workdir: str, num_seeds: int) -> list:
  """Seeds ``config.seed .. config.seed + num_seeds - 1`` of ``config`` in ``workdir``: finished ones read,
  the others trained (:func:`lwcl.runs.seed_folders.run`, which also adds seeds to a finished run)."""
  from lwcl.runs import seed_folders  # pylint: disable=g-import-not-at-top  (lazily: --help stays fast)
  return seed_folders.run(config, workdir, num_seeds)


def seed_statistics(per_seed: list, keys=SEED_SCALARS) -> dict:
  """:func:`lwcl.core.metrics.seed_statistics` over the seeds of each of ``keys`` (None where no seed has it)."""
  from lwcl.core import metrics  # pylint: disable=g-import-not-at-top
  out = {}
  for k in keys:
    values = [r[k] for r in per_seed if r.get(k) is not None]
    out[k] = metrics.seed_statistics(values) if values else None
  return out


def paired_differences(names, per_seed_lists) -> list:
  """The paired difference ``B - A`` of every two runs ``A`` before ``B`` over the seeds both ran.

  Returns:
    ``[{'a', 'b', 'seeds', 'acc': {'mean', 'n', 'sample_std', 'ci95_half_width', 'ci95'}, ...}]``
    (likewise each of :data:`PAIRED_SCALARS`; None where no common seed has it:
    :func:`lwcl.core.metrics.paired_difference`), in the order of ``names``.
  """
  from lwcl.core import metrics  # pylint: disable=g-import-not-at-top
  by_seed = [{r["config"]["seed"]: r for r in runs} for runs in per_seed_lists]
  out = []
  for i in range(len(names)):
    for j in range(i + 1, len(names)):
      seeds = sorted(set(by_seed[i]) & set(by_seed[j]))
      row = {"a": names[i], "b": names[j], "seeds": seeds}
      for k in PAIRED_SCALARS:
        both = [s for s in seeds if by_seed[i][s].get(k) is not None and by_seed[j][s].get(k) is not None]
        row[k] = metrics.paired_difference([by_seed[i][s][k] for s in both],
                                           [by_seed[j][s][k] for s in both]) if both else None
      out.append(row)
  return out


def _pct(st, scale=100) -> str:
  """``mean +- half-width`` of a statistics dict (percent), ``-`` for None, the mean alone for one value."""
  if st is None:
    return "-"
  half = st.get("ci95_half_width")
  return f"{scale * st['mean']:.2f}" + ("" if half is None else f" +- {scale * half:.2f}")


def seed_tables(names, per_seed_lists, notes=()) -> tuple[str, str]:
  """The markdown and CSV tables over seeds (in %, train time in s) of each run: mean +- the half-width of its
  95% t-interval, the population std in parentheses; the paired differences of every two runs
  (:func:`paired_differences`) below, then ``notes`` (lines); a Task-IL ACC column when a run has it."""
  task_il = any(r.get("task_il_acc") is not None for runs in per_seed_lists for r in runs)
  keys = SEED_SCALARS[:1] + ("task_il_acc",) * task_il + SEED_SCALARS[1:]
  stats = [seed_statistics(p, keys) for p in per_seed_lists]

  def cell(st, k):
    scale = 1 if k == "train_seconds" else 100
    return _pct(st[k], scale) + ("" if st[k] is None else f" ({scale * st[k]['std']:.2f})")

  md = ["| run | method | seeds | ACC % | " + "Task-IL ACC % | " * task_il + "BWT % | forgetting % | LCA % | train s |",
        "| --- " * (3 + len(keys)) + "|"]
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(["run", "method", "seeds"] + [f"{k}_{s}" for k in keys for s in ("mean", "std")]
                  + [f"{k}_ci95_half_width" for k in keys])
  for name, st, runs in zip(names, stats, per_seed_lists):
    method = runs[0].get("method", "?")
    md.append(f"| {name} | {method} | {len(runs)} | " + " | ".join(cell(st, k) for k in keys) + " |")
    writer.writerow([name, method, len(runs)] + [
        "" if st[k] is None else f"{st[k][s]:.6g}" for k in keys for s in ("mean", "std")] + [
        "" if st[k] is None or st[k]["ci95_half_width"] is None else f"{st[k]['ci95_half_width']:.6g}"
        for k in keys])
  md.append("")
  md.append("Mean over seeds +- the half-width of its 95% Student-t interval (t_{0.975,n-1} * s / sqrt(n), s with "
            "ddof=1); the population std in parentheses.")
  pairs = paired_differences(names, per_seed_lists)
  if pairs:
    md += ["", "| B - A (paired by seed) | seeds | ACC % | BWT % | forgetting % | LCA % |", "| --- " * 6 + "|"]
    md += [f"| {p['b']} - {p['a']} | {len(p['seeds'])} | " + " | ".join(_pct(p[k]) for k in PAIRED_SCALARS) + " |"
           for p in pairs]
    md.append("")
    md.append("Mean of the per-seed differences +- the half-width of its 95% t-interval (t_{0.975,n-1} * sd / "
              "sqrt(n)); an interval that excludes 0 is a difference the seeds resolve.")
  md += [""] * bool(notes) + list(notes)
  return "\n".join(md) + "\n", out.getvalue()


def paired_csv(pairs: list) -> str:
  """The CSV of :func:`paired_differences`: per pair and metric the mean difference, n and the 95% interval."""
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(["b", "a", "seeds"] + [f"{k}_{s}" for k in PAIRED_SCALARS
                                         for s in ("mean_diff", "ci95_half_width", "ci95_low", "ci95_high")])
  fmt = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
  for p in pairs:
    row = [p["b"], p["a"], len(p["seeds"])]
    for k in PAIRED_SCALARS:
      st = p[k] or {}
      ci = st.get("ci95") or (None, None)
      row += [fmt(st.get("mean")), fmt(st.get("ci95_half_width")), fmt(ci[0]), fmt(ci[1])]
    writer.writerow(row)
  return out.getvalue()


def plot_seed_accuracy(names, per_seed_lists, path: str) -> None:
  """Final accuracy (ACC, %) of each run, mean over seeds with its 95% t-interval as error bars (none for one
  seed); PNG at ``path``."""
  from lwcl.io.figures import pyplot, save_figure  # pylint: disable=g-import-not-at-top
  plt = pyplot()
  stats = [seed_statistics(p)["acc"] for p in per_seed_lists]
  fig, ax = plt.subplots(figsize=(2 + 0.5 * len(names), 3.5))
  ax.bar(range(len(names)), [100 * s["mean"] for s in stats],
         yerr=[100 * (s["ci95_half_width"] or 0.0) for s in stats], capsize=3, color="tab:blue")
  ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
  ax.set_ylabel(f"ACC (%), mean +- 95% t-interval over {len(per_seed_lists[0])} seeds", fontsize=8)
  fig.tight_layout()
  save_figure(fig, path)


def compare(specs, out_dir: str, overrides=(), seeds: int = 0, mixed_provenance: bool = False) -> list:
  """Runs every ``path[:arg]`` spec (in order, into ``out_dir/<name>``), then writes the table and plot.

  Args:
    specs: ``path[:arg]`` config specs; out_dir: the folder of the runs and tables; overrides: ``key=value``
      strings applied to every config; seeds: ``N > 0`` runs each spec with ``N`` seeds (:func:`run_seeds`);
      mixed_provenance: average seeds whose provenance differs in what changes numbers
      (:func:`lwcl.platform.provenance.notes`).
  Returns:
    The results dicts, in the order of ``specs`` (with ``seeds``: a list of per-seed results dicts each).
  Raises:
    ConfigError: a spec that does not load, a bad value in any config (every config is checked with
      ``driver.check`` before the first run), two specs with the same name, ``seeds < 0``, or (after the
      runs, before the table) seeds of one spec whose provenance differs in what changes numbers without
      ``mixed_provenance``.
  """
  from lwcl import layerwise  # pylint: disable=g-import-not-at-top
  from lwcl.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from lwcl.runs import driver  # pylint: disable=g-import-not-at-top
  from lwcl.runs.seed_folders import with_seeds  # pylint: disable=g-import-not-at-top
  names = [run_name(s) for s in specs]
  if len(set(names)) != len(names):
    raise ConfigError(f"two configs would share a workdir ({', '.join(names)}); pass each config once")
  if seeds < 0:
    raise ConfigError(f"--seeds={seeds} is negative; pass a number of seeds >= 1, or leave it out for one run")
  configs = [load_config(s, overrides) for s in specs]  # all errors before the first run
  for spec, config in zip(specs, configs):
    try:
      driver.check(with_seeds(config, seeds) if seeds else config)
    except ConfigError as e:
      raise ConfigError(f"{spec}: {e}") from None
    if seeds and (config.num_orders or config.sweep.key):
      raise ConfigError(f"{spec}: --seeds compares single streams over seeds, but the config sets "
                        "num_orders or sweep.key; run it with bin/run --config.num_seeds instead")
  safe_files.make_folder(out_dir)  # a file or an uncreatable path: one line, before any run
  if seeds:
    return _compare_seeds(names, configs, out_dir, seeds, mixed_provenance)
  results = []
  for name, config in zip(names, configs):
    print(f"== {name}", flush=True)
    results.append(driver.run(config, os.path.join(out_dir, name)))
    print(f"   final accuracy {100 * results[-1]['acc']:.2f}%", flush=True)
  lines, notes = provenance.notes(names, [[r] for r in results], seeds=False)
  if lines:
    print("\n".join(lines), flush=True)
  md, table_csv = tables(names, results)
  md += "".join(f"\n{n}\n" for n in notes)
  safe_files.write_text_atomic(os.path.join(out_dir, TABLE_MD), md)
  safe_files.write_text_atomic(os.path.join(out_dir, TABLE_CSV), table_csv)
  runs = [(n, r) for n, r in zip(names, results) if "block_acc" in r]
  if runs:
    layerwise.plot_block_accuracy(runs, os.path.join(out_dir, PLOT), "accuracy against depth")
  forgetting_runs = [(n, r) for n, r in runs if len(r["block_accuracy"]) > 1]
  if forgetting_runs:
    layerwise.plot_block_forgetting(forgetting_runs, os.path.join(out_dir, FORGETTING_PLOT))
  print(md, flush=True)
  print(f"table: {out_dir}/{TABLE_MD}, {out_dir}/{TABLE_CSV}" + (f"; plot: {out_dir}/{PLOT}" if runs else ""))
  return results


def _compare_seeds(names, configs, out_dir: str, seeds: int, mixed_provenance: bool) -> list:
  """:func:`compare` with ``seeds > 0``."""
  per_seed_lists = []
  for name, config in zip(names, configs):
    print(f"== {name} ({seeds} seeds)", flush=True)
    per_seed_lists.append(run_seeds(config, os.path.join(out_dir, name), seeds))
  lines, notes = provenance.notes(names, per_seed_lists, mixed_provenance)  # refused: before any table
  if lines:
    print("\n".join(lines), flush=True)
  md, table_csv = seed_tables(names, per_seed_lists, notes)
  safe_files.write_text_atomic(os.path.join(out_dir, TABLE_MD), md)
  safe_files.write_text_atomic(os.path.join(out_dir, TABLE_CSV), table_csv)
  paired = ""
  if len(names) > 1:
    safe_files.write_text_atomic(os.path.join(out_dir, PAIRED_CSV),
                                 paired_csv(paired_differences(names, per_seed_lists)))
    paired = f", {out_dir}/{PAIRED_CSV}"
  plot_seed_accuracy(names, per_seed_lists, os.path.join(out_dir, PLOT))
  print(md, flush=True)
  print(f"table: {out_dir}/{TABLE_MD}, {out_dir}/{TABLE_CSV}{paired}; plot: {out_dir}/{PLOT}")
  return per_seed_lists


def main(argv=None) -> None:
  interrupts.install()  # Ctrl-C raised at safe points only (lwcl.platform.interrupts)
  quiet.install()  # no echo of a failed checkpoint write around its error line (lwcl.platform.quiet)
  parser = argparse.ArgumentParser(prog="bin/compare", description=__doc__.splitlines()[0])
  parser.add_argument("configs", nargs="+", metavar="CONFIG[:ARG]")
  parser.add_argument("--out", required=True, help="folder for the runs, the table and the plot")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key in every run (repeatable)")
  parser.add_argument("--seeds", type=int, default=0, metavar="N",
                      help="run each config with N seeds (seed..seed+N-1, one vmapped program) and report "
                           "mean +- 95%% t-interval, the std, and paired differences")
  parser.add_argument("--mixed-provenance", action="store_true",
                      help="average seeds whose provenance (CPU instruction set, package versions, convolution "
                           "lowering, ...) differs; the table then says so")
  args = parser.parse_args(argv)
  try:  # the process settings first (XLA:CPU flags: a value XLA would abort on is one line; the cache)
    platform.configure()
    compare(args.configs, args.out, args.set, args.seeds, args.mixed_provenance)
  except LwclError as e:
    exit_with(e)
  except KeyboardInterrupt:
    exit_with(Interrupted(f"interrupted (Ctrl-C) in {args.out}; rerun the same command to resume: finished "
                          "runs are reported again, the others resume from their last checkpoint"))


if __name__ == "__main__":
  main()
