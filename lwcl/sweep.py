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

import jax
import numpy as np

from lwcl import config_files, config_values, replica_axis, report
from lwcl.errors import ConfigError
from lwcl.experiment import Experiment
from lwcl.results import RESULTS_FILE, fingerprint, finished_results
from lwcl.setup import LEARNING_RATE, REPLICABLE_PREFIX

HIGHER_IS_BETTER = {"acc": True, "bwt": True, "forgetting": False}


def candidate_config(config, value, split: str):
  """``config`` with the swept key set to ``value``, ``eval.split = split`` and the sweep cleared
  (:func:`lwcl.replica_axis.candidate_config`).

  Raises:
    ConfigError: if ``sweep.key`` is not a numeric key of the config.
  """
  return replica_axis.candidate_config(config, config.sweep.key, value, split)


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

  Candidates of the learning rate (``optimizer.learning_rate``) and of the methods' float hyper-parameters
  (``method.*``) change values, not shapes: they train as replicas of one vmapped program
  (:class:`~lwcl.replica_axis.ReplicaAxis`, checkpointed in ``workdir/sweep/checkpoints``). Other keys
  (sizes, counts, other sections), or a method whose steps cannot take the value as data, run one after
  another (a line says so). Each candidate's results are in ``workdir/sweep/<value>/``; an already
  finished candidate is reported, not rerun. ``on_step`` is passed to every run.

  Returns:
    The final run's results dict with ``sweep`` and ``selected`` added (also written to
    ``workdir/results.json``).
  Raises:
    ConfigError: the errors of :func:`validate`.
  """
  validate(config)
  path = os.path.join(workdir, RESULTS_FILE)
  fp = fingerprint(config.to_dict())
  values = list(config.sweep.candidates)
  per_candidate = replica_axis.finished_replicas(_program(config), _axis(config), os.path.join(workdir, "sweep"))
  if any(d is None for d in per_candidate):
    per_candidate = _train_candidates(config, workdir, per_candidate, on_step)
  rows = [{"value": v, **{k: res[k] for k in ("acc", "bwt", "fwt", "forgetting")}}
          for v, res in zip(values, per_candidate)]
  metric, sign = config.sweep.metric, 1 if HIGHER_IS_BETTER[config.sweep.metric] else -1
  best = max(rows, key=lambda r: sign * (r[metric] if r[metric] is not None else -sign * float("inf")))
  print(f"lwcl: selected {config.sweep.key}={best['value']} (validation {metric} "
        f"{best[metric]:.4f}); final run on the test split", flush=True)
  final = _run(candidate_config(config, best["value"], "test"), os.path.join(workdir, "final"), on_step)
  results = dict(final, kind="sweep", sweep={"key": config.sweep.key, "metric": metric, "candidates": rows},
                 selected=best["value"], config=config.to_dict(), fingerprint=fp)
  report.write_json_atomic(path, results)
  return results


def _train_candidates(config, workdir: str, done: list, on_step) -> list:
  """Every candidate's validation results: as replicas of one program when the key allows it
  (:func:`replicable`), else one after another."""
  key, values = config.sweep.key, list(config.sweep.candidates)
  why = replicable(config)
  if why is None:
    exp = Experiment(_program(config), _axis(config))
    why = _untraceable(exp.setup)
    if why is None:
      print(f"lwcl: sweep {key} over {len(values)} candidates as replicas of one program (validation split)",
            flush=True)
      return exp.run(os.path.join(workdir, "sweep"), on_step, done=done)
  print(f"lwcl: sweep {key}: the candidates run one after another ({why})", flush=True)
  out = []
  for value, res in zip(values, done):
    if res is None:
      print(f"lwcl: sweep {key}={value} (validation split)", flush=True)
      res = _run(candidate_config(config, value, "valid"), os.path.join(workdir, "sweep", f"{value:g}"), on_step)
    out.append(res)
  return out


def _program(config):
  """The config of the candidates' program: the sweep's, evaluated on the validation split."""
  program = config.copy_and_resolve_references()
  with program.unlocked():
    program.eval.split = "valid"
  program.lock()
  return program


def _axis(config) -> replica_axis.ReplicaAxis:
  """The sweep's candidates as a replica axis (their folders ``<value>``, their configs
  :func:`candidate_config` on the validation split)."""
  return replica_axis.ReplicaAxis.of_candidates(config.seed, config.sweep.key, config.sweep.candidates)


def replicable(config) -> str | None:
  """None when ``sweep.key``'s candidates can be replicas of one program, else the reason in words."""
  key = config.sweep.key
  if key != LEARNING_RATE and not key.startswith(REPLICABLE_PREFIX):
    return f"{key} is not the learning rate or a method.* hyper-parameter"
  if not isinstance(config_files.get_key(config, key), float):
    return f"{key} is not a float (it may change shapes)"
  return None


def _untraceable(setup) -> str | None:
  """None when one step of every replica traces with its candidate as data, else the error in words (a
  method that needs the value on the host, e.g. in a Python condition)."""
  try:
    state = jax.eval_shape(setup.initial_state)
    data, R = setup.train_data[0], setup.axis.size
    B = setup.config.train.batch_size
    batch = {"image": jax.ShapeDtypeStruct((R, B) + data.images.shape[1:], data.images.dtype),
             "label": jax.ShapeDtypeStruct((R, B), np.int32), "task": jax.ShapeDtypeStruct((R, B), np.int32)}
    if setup.fns.is_greedy:
      batch["phase"] = jax.ShapeDtypeStruct((R, B), np.int32)
    lr = setup.learning_rates_of_task(setup.steps_per_epoch[0])[..., 0]
    jax.eval_shape(setup.steps.train_step, state, batch, lr)
  except Exception as e:  # pylint: disable=broad-except  (the sequential runs report a genuine error)
    return f"the step cannot take the value as data: {type(e).__name__}"
  return None
