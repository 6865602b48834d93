"""GEM, gradient episodic memory (Lopez-Paz & Ranzato, NeurIPS 2017): one constraint per old task, the dual
quadratic program solved on the device."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import optax

from lwcl.core.options import Option
from lwcl.methods import gem_report as projection_report
from lwcl.methods import projection
from lwcl.methods.episodic import EpisodicMethod, EpisodicState
from lwcl.methods.qp import default_max_iter


@flax.struct.dataclass
class GEMState(EpisodicState):
  """State of GEM: the episodic memory (:class:`~lwcl.methods.episodic.EpisodicState`) and ``margin``,
  float32, ``method.gem_margin`` (the dual's lower bound, passed to every step)."""
  margin: jax.Array


class GEM(EpisodicMethod):
  """GEM (Lopez-Paz & Ranzato, NeurIPS 2017): one constraint per old task, the dual QP solved on the
  device (``method.gem_margin`` is the reference code's ``memory_strength``). State: :class:`GEMState`;
  the solver's counters are per-task reports
  (:mod:`lwcl.methods.gem_report`)."""

  default_grouping = "network"
  report_keys = projection_report.REPORT_KEYS
  STATE_HYPER = {"method.gem_margin": "margin"}
  OPTIONS = EpisodicMethod.OPTIONS + (
      Option("method.gem_margin", 0.5, "dual v >= margin (reference memory_strength; 0 = exact projection)",
             minimum=0.0),
      Option("method.gem_max_iter", 0, "QP solver iteration bound (0 = 3K + 10, K old tasks)", minimum=0))

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.margin = self.options["gem_margin"]
    self.max_iter = self.options["gem_max_iter"] or default_max_iter(max(self.max_tasks - 1, 1))
    self.violation_tol = projection_report.default_violation_tol(jnp.float32)

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    return projection.gem(self.margin, self.grouping, num_tasks=self.max_tasks, max_iter=self.max_iter,
                          violation_tol=self.violation_tol)

  def init_state(self, params, batch_stats) -> GEMState:
    """An empty memory (:meth:`EpisodicMethod.init_state`) and the margin."""
    base = super().init_state(params, batch_stats)
    return GEMState(memory=base.memory, margin=jnp.asarray(self.margin, jnp.float32))

  def step_args(self, method_state: GEMState, params, batch_stats, batch, rng) -> dict:
    """The old tasks' reference gradients, the margin, and the task index the solver report is counted
    under."""
    return dict(super().step_args(method_state, params, batch_stats, batch, rng), task=batch["task"][0],
                margin=method_state.margin)

  def task_report(self, opt_state) -> dict:
    """The solver's per-task counters (:class:`lwcl.methods.gem_report.GemReportState`)."""
    state = projection_report.find_state(opt_state)
    return {} if state is None else state._asdict()

  def report_results(self, per_task: dict) -> dict:
    """``gem_solver``: the counters per task and in total (:func:`lwcl.methods.gem_report.summarize`)."""
    return {"gem_solver": projection_report.summarize(per_task, self.max_iter, self.violation_tol)}

  def report_warning(self, counters: dict) -> str | None:
    """A line when some step of the task did not converge or left a constraint violated."""
    return projection_report.warning(counters, self.max_iter, self.violation_tol)
