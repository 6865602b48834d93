"""Hyper-parameter selection on the validation split (never on test data).

With ``--config.sweep.key=method.strength --config.sweep.candidates=(1.,10.,100.)`` and
``scenario.validation_fraction > 0``, each candidate runs the whole stream evaluated on every task's
held-out validation split (``eval.split = 'valid'``) in ``workdir/sweep/<value>/``; the candidate with the
best ``sweep.metric`` (highest ACC or BWT, lowest forgetting) is selected, and one final run with it is
evaluated on the test split in ``workdir/final/``. ``workdir/results.json`` holds the final run's results
plus ``sweep`` (every candidate's validation metrics) and ``selected``.

This is the protocol of GEM/A-GEM's hyper-parameter search (Chaudhry et al. 2019, Sec. 5, on held-out
data) with the validation split taken from each task's training data.
"""

from __future__ import annotations

import os

from lwcl import report
from lwcl.errors import ConfigError

HIGHER_IS_BETTER = {"acc": True, "bwt": True, "forgetting": False}


def candidate_config(config, value, split: str):
  """``config`` with the swept key set to ``value``, ``eval.split = split`` and the sweep cleared.

  Raises:
    ConfigError: if ``sweep.key`` is not a key of the config.
  """
  c = config.copy_and_resolve_references()
  *parents, leaf = config.sweep.key.split(".")
  with c.unlocked():
    node = c
    try:
      for p in parents:
        node = node[p]
      if leaf not in node:
        raise KeyError(leaf)
      node[leaf] = type(node[leaf])(value)
    except (KeyError, TypeError, ValueError):
      raise ConfigError(f"sweep.key '{config.sweep.key}' is not a numeric config key; use a dotted key "
                        "of configs/default.py such as method.strength") from None
    c.eval.split = split
    c.sweep.key, c.sweep.candidates = "", ()
  c.lock()
  return c


def run_sweep(config, workdir: str) -> dict:
  """Runs every candidate on validation data, then the selected one on test data.

  Returns:
    The final run's results dict with ``sweep`` and ``selected`` added (also written to
    ``workdir/results.json``).
  Raises:
    ConfigError: no validation data, no values, an unknown key or metric.
  """
  from lwcl import experiment  # pylint: disable=g-import-not-at-top  (experiment imports this module)

  if config.scenario.validation_fraction <= 0:
    raise ConfigError("a sweep selects on held-out data; set --config.scenario.validation_fraction "
                      "(e.g. 0.1)")
  if not config.sweep.candidates:
    raise ConfigError("sweep.key is set but sweep.candidates is empty; give candidates, e.g. "
                      "--config.sweep.candidates='(1.,10.,100.)'")
  if config.sweep.metric not in HIGHER_IS_BETTER:
    raise ConfigError(f"unknown sweep.metric '{config.sweep.metric}'; use acc, bwt or forgetting")
  path = os.path.join(workdir, experiment.RESULTS_FILE)
  fp = experiment.fingerprint(config.to_dict())
  rows = []
  for value in config.sweep.candidates:
    cfg = candidate_config(config, value, "valid")
    print(f"lwcl: sweep {config.sweep.key}={value} (validation split)", flush=True)
    res = experiment.run(cfg, os.path.join(workdir, "sweep", f"{value:g}"))
    rows.append({"value": value, **{k: res[k] for k in ("acc", "bwt", "fwt", "forgetting")}})
  metric, sign = config.sweep.metric, 1 if HIGHER_IS_BETTER[config.sweep.metric] else -1
  best = max(rows, key=lambda r: sign * (r[metric] if r[metric] is not None else -sign * float("inf")))
  print(f"lwcl: selected {config.sweep.key}={best['value']} (validation {metric} "
        f"{best[metric]:.4f}); final run on the test split", flush=True)
  final = experiment.run(candidate_config(config, best["value"], "test"), os.path.join(workdir, "final"))
  results = dict(final, sweep={"key": config.sweep.key, "metric": metric, "candidates": rows},
                 selected=best["value"], config=config.to_dict(), fingerprint=fp)
  report.write_json_atomic(path, results)
  return results
