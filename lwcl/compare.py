"""``bin/compare``: runs several configs and writes one comparison table (markdown + CSV) and one plot.

    bin/compare --out=runs/lw_fmnist configs/layerwise_fmnist.py:resnet20,backprop \\
        configs/layerwise_fmnist.py:resnet20,local configs/layerwise_fmnist.py:resnet20,local+accelerated

Each ``CONFIG`` is a config file, optionally with ``:ARG`` for its ``get_config(ARG)`` (as ``--config``
of ``bin/run``). ``--set key=value`` (repeatable) overrides a key in every config (``--set
train.epochs_per_task=2``). The runs go one after another into ``OUT/<name>/`` (``name`` from the file and
argument) and resume or are reported again like ``bin/run`` (a finished workdir is not recomputed). Then
``OUT/comparison.md``, ``OUT/comparison.csv`` and ``OUT/comparison.png`` (accuracy against depth: every
block head, solid, and the linear probes, dashed) compare them: final accuracy, every local block head's
accuracy after the last task (mean over tasks) and the linear probes, for layer-wise runs.
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import os
import re
import sys

TABLE_MD, TABLE_CSV, PLOT = "comparison.md", "comparison.csv", "comparison.png"
FORGETTING_PLOT = "comparison_forgetting.png"


def load_config(spec: str, overrides=()):
  """The locked config of ``spec`` (``path[:arg]``) with ``overrides`` (``key=value`` strings) applied.

  Raises:
    ConfigError: missing file, a config that fails to load, an unknown key or a value of the wrong type.
  """
  from lwcl.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from lwcl import config_files  # pylint: disable=g-import-not-at-top
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path} not found; pass paths like configs/layerwise_fmnist.py[:ARG]")
  try:
    module = config_files.load(path)
    config = module.get_config(arg) if arg else module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"cannot load {spec} ({type(e).__name__}: {' '.join(str(e).split())}); check the "
                      "config argument") from None
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep:
      raise ConfigError(f"--set {item}: expected key=value, e.g. --set train.epochs_per_task=2")
    key = key.strip()
    try:
      old = config_files.get_key(config, key)
    except KeyError:
      raise ConfigError(f"--set {item}: no config key '{key}'; see configs/default.py") from None
    try:
      config_files.set_key(config, key, _parse(text.strip(), old))
    except (TypeError, ValueError) as e:
      raise ConfigError(f"--set {item}: {' '.join(str(e).split())}") from None
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
          "blocks": [100 * a for a in results.get("block_acc", [])],
          "probes": [100 * a for a in results.get("linear_probe_acc", [])],
          "forgetting": [float("nan") if f is None else 100 * f for f in results.get("block_forgetting", [])],
          "train_seconds": results.get("train_seconds", float("nan"))}


def tables(names, results) -> tuple[str, str]:
  """The markdown and CSV comparison tables of ``results`` (one per run, named by ``names``)."""
  rows = [describe(r) for r in results]
  md = ["| run | model | mode | strides | shallow intensity | K | final acc % | block heads % (1..K) | "
        "linear probes % (1..K) | train s | block forgetting % (1..K) |", "| --- " * 11 + "|"]
  for name, r in zip(names, rows):
    fmt = lambda v: " ".join(f"{a:.1f}" for a in v) or "-"  # noqa: E731
    md.append(f"| {name} | {r['model']} | {r['mode']} | {r['strides']} | {r['intensity']} | {r['local_blocks']} | "
              f"{r['acc']:.2f} | {fmt(r['blocks'])} | {fmt(r['probes'])} | {r['train_seconds']:.0f} | "
              f"{fmt(r['forgetting'])} |")
  k = max([len(r[key]) for r in rows for key in ("blocks", "probes", "forgetting")] + [0])
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(["run", "model", "mode", "strides", "intensity", "local_blocks", "acc", "train_seconds"]
                  + [f"block_{i + 1}" for i in range(k)] + [f"probe_{i + 1}" for i in range(k)]
                  + [f"forgetting_{i + 1}" for i in range(k)])
  for name, r in zip(names, rows):
    pad = lambda v: [f"{a:.2f}" for a in v] + [""] * (k - len(v))  # noqa: E731
    writer.writerow([name, r["model"], r["mode"], r["strides"], r["intensity"], r["local_blocks"],
                     f"{r['acc']:.2f}", f"{r['train_seconds']:.1f}"] + pad(r["blocks"]) + pad(r["probes"])
                    + pad(r["forgetting"]))
  return "\n".join(md) + "\n", out.getvalue()


def compare(specs, out_dir: str, overrides=()) -> list:
  """Runs every ``path[:arg]`` spec (in order, into ``out_dir/<name>``), then writes the table and plot.

  Returns:
    The results dicts, in the order of ``specs``.
  Raises:
    ConfigError: a spec that does not load, or two specs with the same name.
  """
  from lwcl import driver, layerwise  # pylint: disable=g-import-not-at-top
  from lwcl.errors import ConfigError  # pylint: disable=g-import-not-at-top
  names = [run_name(s) for s in specs]
  if len(set(names)) != len(names):
    raise ConfigError(f"two configs would share a workdir ({', '.join(names)}); pass each config once")
  configs = [load_config(s, overrides) for s in specs]  # all errors before the first run
  os.makedirs(out_dir, exist_ok=True)
  results = []
  for name, config in zip(names, configs):
    print(f"== {name}", flush=True)
    results.append(driver.run(config, os.path.join(out_dir, name)))
    print(f"   final accuracy {100 * results[-1]['acc']:.2f}%", flush=True)
  md, table_csv = tables(names, results)
  with open(os.path.join(out_dir, TABLE_MD), "w") as f:
    f.write(md)
  with open(os.path.join(out_dir, TABLE_CSV), "w") as f:
    f.write(table_csv)
  runs = [(n, r) for n, r in zip(names, results) if "block_acc" in r]
  if runs:
    layerwise.plot_block_accuracy(runs, os.path.join(out_dir, PLOT), "accuracy against depth")
  forgetting_runs = [(n, r) for n, r in runs if len(r["block_accuracy"]) > 1]
  if forgetting_runs:
    layerwise.plot_block_forgetting(forgetting_runs, os.path.join(out_dir, FORGETTING_PLOT))
  print(md, flush=True)
  print(f"table: {out_dir}/{TABLE_MD}, {out_dir}/{TABLE_CSV}" + (f"; plot: {out_dir}/{PLOT}" if runs else ""))
  return results


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="bin/compare", description=__doc__.splitlines()[0])
  parser.add_argument("configs", nargs="+", metavar="CONFIG[:ARG]")
  parser.add_argument("--out", required=True, help="folder for the runs, the table and the plot")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key in every run (repeatable)")
  args = parser.parse_args(argv)
  from lwcl.errors import LwclError  # pylint: disable=g-import-not-at-top
  try:
    compare(args.configs, args.out, args.set)
  except LwclError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == "__main__":
  main()
