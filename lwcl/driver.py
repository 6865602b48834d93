"""What one invocation of ``python -m lwcl.main`` runs for a config.

``run`` checks every config value's type (:mod:`lwcl.config_check`), takes the workdir's lock for the
whole run (:mod:`lwcl.workdir_lock`: a second run on the same workdir is refused), reports a finished
workdir again (or refuses one holding another experiment's results), then runs a validation sweep
(``sweep.key``, :mod:`lwcl.sweep`), a task-order study (``num_orders``, :mod:`lwcl.orders`), seeds as
replicas of one vmapped program (``num_seeds``, :mod:`lwcl.replicas`) or a single
:class:`~lwcl.experiment.Experiment`. The flow is one-way: ``main -> driver -> sweep / orders / replicas ->
experiment``; nothing below imports the driver.
"""

from __future__ import annotations

import contextlib
from typing import Callable

from lwcl import config_check, orders, replica_results, replicas, report, sweep, workdir_lock
from lwcl.experiment import Experiment
from lwcl.results import finished_results


def run(config, workdir: str, on_step: Callable[[int], None] | None = None) -> dict:
  """Runs the experiment ``config`` describes in ``workdir``; returns its results dict.

  Args:
    config: a locked config (``configs/default.py`` and overrides).
    workdir: the run's folder (resumed when it holds checkpoints).
    on_step: called with the global step after every train step (tests inject faults with it).
  Raises:
    ConfigError: a value whose type differs from ``configs/default.py``'s (checked before the workdir
      is created), ``workdir`` holds another experiment's results (nothing is overwritten), or a bad
      config value; other :class:`~lwcl.errors.LwclError` subclasses from the run.
    WorkdirLockedError: another run holds ``workdir`` (its files are left alone). Multi-host runs
      (``devices.multihost``) take no lock: all their processes share the workdir.
  """
  config_check.check_config(config, config_check.default_reference())
  replica_results.validate(config)
  lock = contextlib.nullcontext() if config.devices.multihost else workdir_lock.hold(workdir)
  with lock:
    return _run_locked(config, workdir, on_step)


def _run_locked(config, workdir: str, on_step) -> dict:
  existing = finished_results(config, workdir)
  if existing is not None:
    return existing
  if config.num_seeds:
    return replicas.run_replicas(config, workdir, on_step)
  if config.sweep.key:
    return sweep.run_sweep(config, workdir, on_step)
  if config.num_orders:
    return orders.run_orders(config, workdir, on_step)
  return Experiment(config).run(workdir, on_step)


def format_summary(results: dict) -> str:
  """The terminal summary of a results dict: per-order table for order studies, else the accuracy matrix
  with metrics and speed."""
  if "orders" in results:
    return orders.format_summary(results)
  if "seeds" in results:
    return replica_results.format_summary(results)
  return report.format_summary(results)
