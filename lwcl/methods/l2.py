"""L2, the plain quadratic penalty: the L2 baseline of Kirkpatrick et al. (PNAS 2017, Fig. 2A).

Task ``t`` minimizes ``L_t(theta) + (strength / 2) * ||theta - theta*||^2``, ``theta*`` the parameters at the
end of the previous task (no penalty during the first task): the importance penalty
(:class:`~lwcl.methods.importance.PenaltyMethod`) with a uniform importance ``omega = 1`` that does not
accumulate over tasks. Option: ``method.strength`` only. State:
:class:`~lwcl.methods.importance.ImportanceState` (``omega`` float32 zeros, then ones).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lwcl.methods.importance import PenaltyMethod


@jax.jit
def _ones_like(omega):
  """float32 ones shaped like ``omega`` (fresh buffers, one compiled program)."""
  return jax.tree.map(jnp.ones_like, omega)


class L2(PenaltyMethod):
  """The L2 penalty towards the previous task's end parameters, uniform importance (Kirkpatrick et al.
  2017's L2 baseline). Raises ConfigError for a bad ``method.strength`` (:class:`PenaltyMethod`)."""

  def next_omega(self, method_state, params, batch_stats, task, data):
    """Ones (float32, shaped like ``params``): every parameter equally important, after every task."""
    del params, batch_stats, task, data
    return _ones_like(method_state.omega)
