"""GEM's per-step solver report and its per-task counters, kept in the optimizer state.

:func:`lwcl.methods.projection.project_gem` (``with_report=True``) returns a :class:`GemReport` for one step: the QP
solver's iterations and convergence (:class:`lwcl.methods.qp.QPInfo`) and the largest constraint violation of the
projected gradient, recomputed from it. The optax transformation :func:`lwcl.methods.projection.gem` folds each
step's report into a :class:`GemReportState` of per-task counters (its optimizer state), which the runner
copies into the run's record at the end of every task (``Method.task_report``) and writes to
``results.json`` (:func:`summarize`), so a projection that did not converge or left a constraint violated
is counted, never passed on silently.

This module is pure (JAX and NumPy) and imports nothing of the runner.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class GemReport(NamedTuple):
  """How one GEM projection ended; scalars.

  Attributes:
    projected: bool, some group had a violated constraint, so its QP was solved.
    iterations: int32, the most solver iterations any group used.
    converged: bool, every group's solver converged before ``max_iter``.
    violation: float, the largest constraint violation after projection,
      ``max_k max(0, -<g_k, g~>) / (|g_k| |g'|)`` over groups and real old tasks (``g'`` the gradient the
      QP projects, ``g + margin sum_k g_k``): 0 when every ``<g_k, g~> >= 0``; a cosine, so comparable
      across steps, tasks and precisions.
    grad_norm: float, ``|g|``, the gradient before projection.
    update_norm: float, ``|g~|``, the gradient after projection (``g`` when nothing was violated); with a
      margin it grows with the number of old tasks (``g' = g + margin sum_k g_k``).
  """
  projected: jax.Array
  iterations: jax.Array
  converged: jax.Array
  violation: jax.Array
  grad_norm: jax.Array
  update_norm: jax.Array


class GemReportState(NamedTuple):
  """GEM's optimizer state: per-task counters of its projections, each ``[num_tasks]`` (task ``t`` is the
  ``task`` extra argument of the steps that trained it).

  Attributes:
    gem_steps: int32, steps (calls of the projection).
    gem_projected: int32, steps where some constraint was violated and the QP was solved.
    gem_unconverged: int32, steps where the solver stopped at ``max_iter`` without converging.
    gem_violating: int32, steps whose result violates a constraint by more than the tolerance
      (``GemReport.violation > violation_tol``).
    gem_max_iterations: int32, the most solver iterations of a step.
    gem_max_violation: float32, the largest ``GemReport.violation`` of a step.
    gem_max_update_norm: float32, the largest ``|g~|`` of a step.
    gem_max_update_ratio: float32, the largest ``|g~| / |g|`` of a step (1 when nothing was projected).
  """
  gem_steps: jax.Array
  gem_projected: jax.Array
  gem_unconverged: jax.Array
  gem_violating: jax.Array
  gem_max_iterations: jax.Array
  gem_max_violation: jax.Array
  gem_max_update_norm: jax.Array
  gem_max_update_ratio: jax.Array


REPORT_KEYS = GemReportState._fields
_COUNTS = ("gem_steps", "gem_projected", "gem_unconverged", "gem_violating", "gem_max_iterations")
_MAXIMA = ("gem_max_iterations", "gem_max_violation", "gem_max_update_norm", "gem_max_update_ratio")


def default_violation_tol(dtype) -> float:
  """The violation a step may show without counting as violating: ``sqrt(eps)`` of the gradients' dtype
  (3.5e-4 in float32, 1.5e-8 in float64), far above the rounding of ``<g_k, g~>`` after a converged solve
  (about ``16 K eps`` from the solver's stopping test plus the rounding of ``g~``) and far below a violation
  that changes the update (the margin's push is ``0.5`` times the old gradients)."""
  return float(np.sqrt(np.finfo(dtype).eps))


def init_state(num_tasks: int) -> GemReportState:
  """Zero counters for ``num_tasks`` tasks (one buffer each: the train step donates its state)."""
  return GemReportState(*(jnp.zeros((num_tasks,), jnp.int32) for _ in range(5)),
                        *(jnp.zeros((num_tasks,), jnp.float32) for _ in range(3)))


def accumulate(state: GemReportState, report: GemReport, task: Any, violation_tol: float) -> GemReportState:
  """``state`` with one step's ``report`` counted for task ``task`` (int32 scalar, may be traced)."""
  one = lambda flag: jnp.asarray(flag, jnp.int32)  # noqa: E731
  return GemReportState(
      gem_steps=state.gem_steps.at[task].add(1),
      gem_projected=state.gem_projected.at[task].add(one(report.projected)),
      gem_unconverged=state.gem_unconverged.at[task].add(one(~report.converged)),
      gem_violating=state.gem_violating.at[task].add(one(report.violation > violation_tol)),
      gem_max_iterations=state.gem_max_iterations.at[task].max(report.iterations.astype(jnp.int32)),
      gem_max_violation=state.gem_max_violation.at[task].max(report.violation.astype(jnp.float32)),
      gem_max_update_norm=state.gem_max_update_norm.at[task].max(report.update_norm.astype(jnp.float32)),
      gem_max_update_ratio=state.gem_max_update_ratio.at[task].max(
          (report.update_norm / jnp.maximum(report.grad_norm, jnp.finfo(report.grad_norm.dtype).tiny))
          .astype(jnp.float32)))


def find_state(opt_state: Any) -> GemReportState | None:
  """The :class:`GemReportState` inside a chained optimizer state (leaves may carry leading replica axes),
  or None."""
  found = [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, GemReportState))
           if isinstance(s, GemReportState)]
  return found[0] if found else None


def summarize(per_task: dict, max_iter: int, violation_tol: float) -> dict:
  """The ``gem_solver`` entry of ``results.json`` from one run's per-task counters.

  Args:
    per_task: ``{key: float array [T]}`` for every key of :data:`REPORT_KEYS` (the run's record).
    max_iter: the solver's iteration bound; violation_tol: the tolerance of ``gem_violating``.
  Returns:
    ``{'per_task': {name: list [T]}, 'unconverged_steps', 'violating_steps', 'projected_steps', 'steps',
    'max_iterations', 'max_violation', 'max_update_norm', 'max_update_ratio', 'max_iter', 'violation_tol',
    'ok'}``; names without the ``gem_``
    prefix; ``ok`` is False when any step did not converge or violated a constraint.
  """
  table = {k[4:]: (np.asarray(v).astype(np.int64).tolist() if k in _COUNTS
                   else np.asarray(v, np.float64).tolist()) for k, v in per_task.items()}
  total = {k: (max(v) if f"gem_{k}" in _MAXIMA else int(sum(v))) if v else 0 for k, v in table.items()}
  return {"per_task": table, "steps": total["steps"], "projected_steps": total["projected"],
          "unconverged_steps": total["unconverged"], "violating_steps": total["violating"],
          "max_iterations": total["max_iterations"], "max_violation": total["max_violation"],
          "max_update_norm": total["max_update_norm"], "max_update_ratio": total["max_update_ratio"],
          "max_iter": int(max_iter), "violation_tol": float(violation_tol),
          "ok": total["unconverged"] == 0 and total["violating"] == 0}


def warning(counters: dict, max_iter: int, violation_tol: float) -> str | None:
  """A warning about one task's counters (``{key: array}``, leading replica axes kept) when some step did
  not converge or violated a constraint, else None."""
  as_list = lambda k: np.asarray(counters[k]).astype(np.int64).tolist()  # noqa: E731
  if not any(np.any(np.asarray(counters[k]) > 0) for k in ("gem_unconverged", "gem_violating")):
    return None
  return (f"GEM's QP solver stopped at max_iter={max_iter} on {as_list('gem_unconverged')} and left a "
          f"constraint violated by more than {violation_tol:.1e} on {as_list('gem_violating')} of "
          f"{as_list('gem_projected')} projected steps (results.json gem_solver)")
