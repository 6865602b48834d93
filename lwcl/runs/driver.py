"""What one invocation of ``python -m lwcl.main`` runs for a config.

``run`` checks every config value's type (:mod:`lwcl.config.types`), takes the workdir's lock for the
whole run (:mod:`lwcl.io.lock`: a second run on the same workdir is refused), refuses a workdir holding a
symbolic link (:mod:`lwcl.io.safe_files`: lwcl never writes through one), reports a finished
workdir again (or refuses one holding another experiment's results), then runs a validation sweep
(``sweep.key``, :mod:`lwcl.runs.sweep`), a task-order study (``num_orders``, :mod:`lwcl.runs.orders`), seeds as
replicas of one vmapped program (``num_seeds``, :mod:`lwcl.runs.seeds`) or a single
:class:`~lwcl.engine.experiment.Experiment`. The flow is one-way: ``main -> driver -> sweep / orders / replicas ->
experiment``; nothing below imports the driver.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Callable

from lwcl.config import options as config_options
from lwcl.config import types as config_check
from lwcl.config import values as config_values
from lwcl.engine.experiment import Experiment
from lwcl.errors import LwclError
from lwcl.io import lock as workdir_lock
from lwcl.io import report, safe_files
from lwcl.io.results import finished_results
from lwcl.platform import devices, interrupts, liveness, processes, targets
from lwcl.runs import kinds as run_kind
from lwcl.runs import orders, sweep
from lwcl.runs import seeds as replicas
from lwcl.runs import summaries as replica_results


def run(config, workdir: str, on_step: Callable[[int], None] | None = None) -> dict:
  """Runs the experiment ``config`` describes in ``workdir``; returns its results dict.

  Args:
    config: a locked config (``configs/default.py`` and overrides).
    workdir: the run's folder (resumed when it holds checkpoints).
    on_step: called with the global step after every train step (tests inject faults with it).
  Raises:
    ConfigError: a bad config value (:func:`check`, before the workdir is created), or ``workdir`` holds
      another experiment's results (nothing is overwritten); other :class:`~lwcl.errors.LwclError`
      subclasses from the run.
    LwclError: the disk of ``workdir`` is full (the last complete checkpoint is kept).
    WorkdirLockedError: another run holds ``workdir`` (its files are left alone). Multi-host runs
      (``devices.multihost``) take no lock: all their processes share the workdir.
    LwclError: a symbolic link below ``workdir`` (:func:`lwcl.io.safe_files.check_tree`) or at its lock
      file: lwcl writes through none; the message names it, and nothing is written.
  """
  check(config)
  interrupts.check()  # a safe point (lwcl.platform.interrupts): before the workdir is touched
  lock = contextlib.nullcontext() if config.devices.multihost else workdir_lock.hold(workdir)
  with lock:
    safe_files.check_tree(workdir)  # no symbolic link below the workdir: lwcl never writes through one
    try:
      return _run_locked(config, workdir, on_step)
    except Exception as e:  # pylint: disable=broad-except
      if not _no_space(e):
        raise
      raise LwclError(f"no space left on the device of {workdir} ({_first_line(e)}); free space or pass "
                      "a --workdir on a larger disk, then rerun the same command to resume from the "
                      "last complete checkpoint (files written before are kept)") from None


def check(config) -> None:
  """Every check of a config that needs no data: value types against ``configs/default.py``
  (:mod:`lwcl.config.types`), value ranges, names and combinations (:mod:`lwcl.config.values`), and a
  sweep's candidates (:func:`lwcl.runs.sweep.validate`). :func:`run` calls it before the workdir is touched;
  ``bin/compare`` calls it on every config before the first run.

  Raises:
    ConfigError: the first bad value, as one line.
    LwclError: no JAX backend starts (:func:`lwcl.platform.targets.default_platform`; not checked for a
      multi-host run, whose backend starts after ``jax.distributed.initialize``).
  """
  config_check.check_config(config, config_check.default_reference())
  if config.sweep.key:
    sweep.validate(config)  # the config's values, then each candidate's
  else:
    config_values.check_values(config)
  if not config.devices.multihost:
    targets.default_platform()  # e.g. JAX_PLATFORMS=cuda without a CUDA jaxlib: one line, nothing written


def _no_space(e: BaseException) -> bool:
  """Whether ``e`` (or an exception it wraps) is a full disk or quota: an ``OSError`` ENOSPC / EDQUOT,
  or orbax's / TensorStore's ``ValueError`` carrying the OS message."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if any(text in str(e) for text in (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))):
      return True
    e = e.__cause__ or e.__context__
  return False


def _first_line(e: BaseException) -> str:
  text = " ".join(str(e).split())
  return f"{type(e).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


def _run_locked(config, workdir: str, on_step) -> dict:
  devices.initialize_distributed(config.devices)  # multi-host: before anything starts JAX's backends
  processes.check_agreement(config, workdir)  # multi-host: every process runs the same config and workdir
  try:
    existing = finished_results(config, workdir, config_options.defaults())
    results = existing if existing is not None else RUNS[run_kind.kind_of(config)](config, workdir, on_step)
  except BaseException as e:
    lost = liveness.lost_partner(e)  # multi-host: a collective whose partner is gone, as one line
    liveness.end(lost or e)  # multi-host: the others learn that this process stopped, and stop too
    if lost is not None:
      raise lost from None
    raise
  liveness.end(None)
  return results


def _single(config, workdir: str, on_step) -> dict:
  return Experiment(config).run(workdir, on_step)


# Each kind of run (lwcl.runs.kinds) and its runner / its terminal summary.
RUNS = {"single": _single, "seeds": replicas.run_replicas, "orders": orders.run_orders, "sweep": sweep.run_sweep}
SUMMARIES = {"single": report.format_summary, "seeds": replica_results.format_summary,
             "orders": orders.format_summary, "sweep": sweep.format_summary}


def format_summary(results: dict) -> str:
  """The terminal summary of a results dict, by its kind (:func:`lwcl.runs.kinds.kind_of_results`): a table
  over seeds or orders, else the accuracy matrix with metrics and speed."""
  return SUMMARIES[run_kind.kind_of_results(results)](results)
