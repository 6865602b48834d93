"""Hyper-parameter selection on the validation split (never on test data).

With ``--config.sweep.key=method.strength --config.sweep.candidates=(1.,10.,100.)`` and
``scenario.validation_fraction > 0``, each candidate runs the whole stream evaluated on every task's
held-out validation split (``eval.split = 'valid'``) in ``workdir/sweep/<value>/`` (``<value>`` as ``%g``
writes it, or its ``repr`` where ``%g`` would round it: :func:`lwcl.runs.axis.candidate_name`); the candidate
with the best ``sweep.metric`` (highest ACC or BWT, lowest forgetting) is selected, and one final run with it is
evaluated on the test split in ``workdir/final/``. ``workdir/results.json`` holds the final run's results
plus ``sweep`` (every candidate's validation metrics, the Task-IL ones too when class-incremental) and
``selected``.

This is the protocol of GEM/A-GEM's hyper-parameter search (Chaudhry et al. 2019, Sec. 5, on held-out
data) with the validation split taken from each task's training data.
"""

from __future__ import annotations

import os
from typing import Callable

from lwcl.config import files as config_files
from lwcl.config import options as config_options
from lwcl.config import sections as config_sections
from lwcl.config import values as config_values
from lwcl.engine.experiment import Experiment
from lwcl.io import report
from lwcl.io.results import RESULTS_FILE, fingerprint, finished_results
from lwcl.methods import METHODS
from lwcl.platform import provenance
from lwcl.runs import axis
from lwcl.runs import seeds as replicas
from lwcl.runs import summaries as replica_results
from lwcl.runs.summaries import SCALARS, TASK_IL_SCALARS, seeds_of, write_summaries

HIGHER_IS_BETTER = {"acc": True, "bwt": True, "forgetting": False}
OPTIONS = config_sections.SWEEP  # declared in lwcl.config.sections (the validator cannot import lwcl.runs)
# The swept key whose candidates are per-replica learning rates (an argument of every step).
LEARNING_RATE = "optimizer.learning_rate"
# Swept keys whose candidates can be replicas besides the learning rate: the float hyper-parameters a method
# keeps in its state (Method.STATE_HYPER).
REPLICABLE_PREFIX = "method."


def validate(config) -> None:
  """Checks a sweep before anything runs: the config's values (:func:`lwcl.config.values.check_values`:
  held-out data, candidates, a known metric, no ``num_orders``), then each candidate's config (a numeric
  ``sweep.key``, a value within its key's range).

  Raises:
    ConfigError: one line naming the fix.
  """
  config_values.check_values(config)
  for value in config.sweep.candidates:  # each candidate's config must be valid too (e.g. a learning rate)
    config_values.check_values(axis.candidate_config(config, config.sweep.key, value, "valid"))


def _run(config, workdir: str, on_step) -> dict:
  """One run of a single value: its finished results, or the experiment run (resumed) in ``workdir``; a
  ``num_seeds`` run (:func:`lwcl.runs.seeds.run_replicas`, its summary) when ``config.num_seeds`` is set."""
  if config.num_seeds:
    return replicas.run_replicas(config, workdir, on_step)
  done = finished_results(config, workdir, config_options.defaults())
  return done if done is not None else Experiment(config).run(workdir, on_step)


def run_sweep(config, workdir: str, on_step: Callable[[int], None] | None = None) -> dict:
  """Runs every candidate on validation data, then the selected one on test data.

  Candidates of the learning rate (``optimizer.learning_rate``) and of the methods' float hyper-parameters
  (``method.*``) change values, not shapes: they train as replicas of one vmapped program
  (:class:`~lwcl.runs.axis.ReplicaAxis`, checkpointed in ``workdir/sweep/checkpoints``). Other keys
  (sizes, counts, other sections), or a method whose steps cannot take the value as data, run one after
  another (a line says so). Each candidate's results are in ``workdir/sweep/<value>/``; an already
  finished candidate is reported, not rerun. ``on_step`` is passed to every run.

  With ``num_seeds = S`` every candidate runs over the ``S`` seeds (``C x S`` replicas of one program, or
  each candidate's seeds as replicas when the candidates run one after another): ``workdir/sweep/<value>/``
  is then the candidate's ``num_seeds`` run (``seed<s>/`` and the summary), the selection is on the mean
  over the seeds, and the final run on the test split is a ``num_seeds`` run of the selected value in
  ``workdir/final/``.

  Returns:
    The final run's results dict with ``sweep`` and ``selected`` added (also written to
    ``workdir/results.json``).
  Raises:
    ConfigError: the errors of :func:`validate`.
  """
  validate(config)
  path = os.path.join(workdir, RESULTS_FILE)
  fp = fingerprint(config.to_dict())
  values, seeds = list(config.sweep.candidates), _seeds(config)
  sweep_dir = os.path.join(workdir, "sweep")
  per_replica = axis.finished_replicas(_program(config), _axis(config), sweep_dir)
  if any(d is None for d in per_replica):
    per_replica = _train_candidates(config, workdir, per_replica, on_step)
  rows = [{"value": v, **{k: res[k] for k in _scalars(res)}} for v, res in zip(values, per_replica)]
  if seeds:  # each candidate's row: the mean over its seeds, with their statistics
    summaries = write_summaries([(axis.candidate_config(config, config.sweep.key, v, "valid"),
                                  candidate_folder(workdir, v)) for v in values], per_replica)
    rows = [{"value": v, **{k: sm[k]["mean"] if sm[k] else None for k in _scalars(sm)},
             "over_seeds": {k: sm[k] for k in _scalars(sm)}} for v, sm in zip(values, summaries)]
  metric, sign = config.sweep.metric, 1 if HIGHER_IS_BETTER[config.sweep.metric] else -1
  best = max(rows, key=lambda r: sign * (r[metric] if r[metric] is not None else -sign * float("inf")))
  over = f" mean over {len(seeds)} seeds" if seeds else ""
  print(f"lwcl: selected {config.sweep.key}={axis.candidate_name(best['value'])} (validation {metric}{over} "
        f"{best[metric]:.4f}); final run on the test split", flush=True)
  final = _run(axis.candidate_config(config, config.sweep.key, best["value"], "test"),
               os.path.join(workdir, "final"), on_step)
  results = dict(final, kind="sweep", sweep={"key": config.sweep.key, "metric": metric, "candidates": rows},
                 selected=best["value"], config=config.to_dict(), fingerprint=fp)
  merged = provenance.merge([final.get("provenance")] + [res.get("provenance") for res in per_replica])
  if merged is not None:  # the final run's, with the keys where the candidates' differ
    results["provenance"] = merged
  report.write_json_atomic(path, results)
  return results


def candidate_folder(workdir: str, value) -> str:
  """The folder of candidate ``value``'s run: ``workdir/sweep/<value>`` (:func:`lwcl.runs.axis.candidate_name`:
  distinct values, distinct folders; the replica axis's :meth:`~lwcl.runs.axis.ReplicaAxis.folder` agrees)."""
  return os.path.join(workdir, "sweep", axis.candidate_name(value))


def _train_candidates(config, workdir: str, done: list, on_step) -> list:
  """Every replica's validation results (candidate-major, seeds within a candidate): as replicas of one
  program when the key allows it (:func:`replicable`), else candidate after candidate (each candidate's
  seeds as replicas when ``num_seeds`` is set)."""
  key, values, seeds = config.sweep.key, list(config.sweep.candidates), _seeds(config)
  why = replicable(config)
  if why is None:
    exp = Experiment(_program(config), _axis(config))
    print(f"lwcl: sweep {exp.setup.replicas.describe()} as replicas of one program (validation split)", flush=True)
    return exp.run_replicas(os.path.join(workdir, "sweep"), on_step, done=done)
  print(f"lwcl: sweep {key}: the candidates run one after another ({why})", flush=True)
  return replicas.run_one_after_another(
      [(f"sweep {key}={value} (validation split)", axis.candidate_config(config, key, value, "valid"),
        candidate_folder(workdir, value)) for value in values], seeds, done, on_step)


def _scalars(results: dict) -> tuple:
  """The metrics of a candidate's row: ACC, BWT, FWT, forgetting, and the Task-IL ones when its results (a
  run's, or the summary over its seeds) have them (class-incremental)."""
  return SCALARS + (TASK_IL_SCALARS if "task_il_acc" in results else ())


def _seeds(config) -> list:
  """The seeds every candidate runs over (``num_seeds``), or empty."""
  return seeds_of(config) if config.num_seeds else []


def _program(config):
  """The config of the candidates' program: the sweep's, evaluated on the validation split."""
  program = config.copy_and_resolve_references()
  with program.unlocked():
    program.eval.split = "valid"
  program.lock()
  return program


def _axis(config) -> axis.ReplicaAxis:
  """The sweep's candidates (times the seeds, with ``num_seeds``) as a replica axis (their folders
  ``<value>`` or ``<value>/seed<s>``, their configs :func:`lwcl.runs.axis.candidate_config` on the
  validation split)."""
  return axis.ReplicaAxis.of_candidates(config.seed, config.sweep.key, config.sweep.candidates,
                                                _seeds(config))


def replicable(config) -> str | None:
  """None when ``sweep.key``'s candidates can be replicas of one program, else the reason in words: the key
  is not the learning rate or a float ``method.*`` key, or the method does not keep it in its state
  (``Method.STATE_HYPER``): it does not read it, or it needs it on the host (``Method.HOST_OPTIONS``, e.g.
  LGD's margin chooses what is compiled)."""
  key = config.sweep.key
  if key != LEARNING_RATE and not key.startswith(REPLICABLE_PREFIX):
    return f"{key} is not the learning rate or a method.* hyper-parameter"
  if not isinstance(config_files.get_key(config, key), float):
    return f"{key} is not a float (it may change shapes)"
  method = METHODS[config.method.name]
  if key.startswith(REPLICABLE_PREFIX) and key not in method.STATE_HYPER:
    if key not in {o.key for o in method.OPTIONS}:
      return f"{method.__name__} does not read {key}"
    return f"{method.__name__} needs {key} on the host (it chooses what is compiled)"
  return None


def format_summary(results: dict) -> str:
  """The candidates' validation metrics and the selected value, then the final run's summary (a single
  run's accuracy matrix, or the table over seeds for ``num_seeds``)."""
  sweep, metric = results["sweep"], results["sweep"]["metric"]
  over = f" (mean over {results['num_seeds']} seeds)" if results.get("num_seeds") else ""
  lines = [f"sweep of {sweep['key']} on the validation split{over}: {metric.upper()} per candidate"]
  for row in sweep["candidates"]:
    v = row[metric]
    mark = "  <- selected" if row["value"] == results["selected"] else ""
    lines.append(f"  {axis.candidate_name(row['value']):<10} {'n/a' if v is None else f'{100 * v:.2f}'}{mark}")
  final = replica_results.format_summary(results) if "runs" in results else report.format_summary(results)
  return "\n".join(lines) + "\nfinal run on the test split:\n" + final
