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
from typing import Callable

from lwcl import config_files, config_values, report
from lwcl.errors import ConfigError
from lwcl.experiment import Experiment
from lwcl.results import RESULTS_FILE, fingerprint, finished_results

HIGHER_IS_BETTER = {"acc": True, "bwt": True, "forgetting": False}


def candidate_config(config, value, split: str):
  """``config`` with the swept key set to ``value``, ``eval.split = split`` and the sweep cleared.

  Raises:
    ConfigError: if ``sweep.key`` is not a key of the config.
  """
  c = config.copy_and_resolve_references()
  key = config.sweep.key
  with c.unlocked():
    try:
      config_files.set_key(c, key, type(config_files.get_key(c, key))(value))
    except (KeyError, TypeError, ValueError):
      raise ConfigError(f"sweep.key '{config.sweep.key}' is not a numeric config key; use a dotted key "
                        "of configs/default.py such as method.strength") from None
    c.eval.split = split
    c.sweep.key, c.sweep.candidates = "", ()
  c.lock()
  return c


def validate(config) -> None:
  """Checks a sweep's settings before anything runs: held-out data, candidates, a known metric, a
  numeric ``sweep.key``.

  Raises:
    ConfigError: no validation data, no candidates, an unknown metric or key, a candidate value out of
      its key's range (one line naming the fix).
  """
  if config.scenario.validation_fraction <= 0:
    raise ConfigError("a sweep selects on held-out data; set --config.scenario.validation_fraction "
                      "(e.g. 0.1)")
  if not config.sweep.candidates:
    raise ConfigError("sweep.key is set but sweep.candidates is empty; give candidates, e.g. "
                      "--config.sweep.candidates='(1.,10.,100.)'")
  if config.sweep.metric not in HIGHER_IS_BETTER:
    raise ConfigError(f"unknown sweep.metric '{config.sweep.metric}'; use acc, bwt or forgetting")
  for value in config.sweep.candidates:  # each candidate's config must be valid too (e.g. a learning rate)
    config_values.check_values(candidate_config(config, value, "valid"))


def _run(config, workdir: str, on_step) -> dict:
  """One candidate's run: its finished results, or the experiment run (resumed) in ``workdir``."""
  done = finished_results(config, workdir)
  return done if done is not None else Experiment(config).run(workdir, on_step)


def run_sweep(config, workdir: str, on_step: Callable[[int], None] | None = None) -> dict:
  """Runs every candidate on validation data, then the selected one on test data.

  ``on_step`` is passed to every run (:meth:`lwcl.experiment.Experiment.run`).

  Returns:
    The final run's results dict with ``sweep`` and ``selected`` added (also written to
    ``workdir/results.json``).
  Raises:
    ConfigError: the errors of :func:`validate`.
  """
  validate(config)
  path = os.path.join(workdir, RESULTS_FILE)
  fp = fingerprint(config.to_dict())
  rows = []
  for value in config.sweep.candidates:
    cfg = candidate_config(config, value, "valid")
    print(f"lwcl: sweep {config.sweep.key}={value} (validation split)", flush=True)
    res = _run(cfg, os.path.join(workdir, "sweep", f"{value:g}"), on_step)
    rows.append({"value": value, **{k: res[k] for k in ("acc", "bwt", "fwt", "forgetting")}})
  metric, sign = config.sweep.metric, 1 if HIGHER_IS_BETTER[config.sweep.metric] else -1
  best = max(rows, key=lambda r: sign * (r[metric] if r[metric] is not None else -sign * float("inf")))
  print(f"lwcl: selected {config.sweep.key}={best['value']} (validation {metric} "
        f"{best[metric]:.4f}); final run on the test split", flush=True)
  final = _run(candidate_config(config, best["value"], "test"), os.path.join(workdir, "final"), on_step)
  results = dict(final, kind="sweep", sweep={"key": config.sweep.key, "metric": metric, "candidates": rows},
                 selected=best["value"], config=config.to_dict(), fingerprint=fp)
  report.write_json_atomic(path, results)
  return results
