"""SI, synaptic intelligence (Zenke et al., ICML 2017): an importance penalty whose importance is the path
integral of the loss change along each task's trajectory."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp

from lwcl.core.options import Option
from lwcl.data.examples import Examples
from lwcl.methods import regularization as reg
from lwcl.methods.importance import AccumulatedPenalty, ImportanceState, PyTree, zeros_like


@flax.struct.dataclass
class SIState(ImportanceState):
  """State of SI: :class:`~lwcl.methods.importance.ImportanceState` plus ``path``, a float32 pytree shaped
  like the parameters, the current task's path integral ``sum_steps -g * delta_theta`` (Zenke et al. 2017,
  Eq. 4), reset to zeros at every task end; and ``xi``, float32, the damping ``method.si_xi``."""
  path: PyTree
  xi: jax.Array


class SI(AccumulatedPenalty):
  """Synaptic intelligence (Zenke et al., ICML 2017): the train step accumulates the path integral
  ``path += -g * delta_theta`` (:func:`~lwcl.methods.regularization.si_path_step`, in ``after_step``); at the task
  end ``omega += path / ((theta_end - theta_start)^2 + method.si_xi)`` and the path restarts at 0. The
  task's start parameters are the anchor (the previous task's end parameters; the initial ones for task
  1). State: :class:`SIState`."""

  STATE_HYPER = {**AccumulatedPenalty.STATE_HYPER, "method.si_xi": "xi"}
  OPTIONS = AccumulatedPenalty.OPTIONS + (
      Option("method.si_xi", 1e-3, "damping xi in omega = path / (delta^2 + xi) (Zenke et al. use 1e-3)",
             minimum=0.0, strict=True),)

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.xi = self.options["si_xi"]

  def init_state(self, params, batch_stats) -> SIState:
    base = super().init_state(params, batch_stats)
    return SIState(omega=base.omega, anchor=base.anchor, strength=base.strength, path=zeros_like(params),
                   xi=jnp.asarray(self.xi, jnp.float32))

  def after_step(self, method_state: SIState, params_before, params_after, grads, batch) -> SIState:
    return method_state.replace(path=reg.si_path_step(method_state.path, params_before, params_after, grads))

  def task_importance(self, method_state: SIState, params, batch_stats, task, data) -> PyTree:
    return reg.si_importance(method_state.path, method_state.anchor, params, method_state.xi)

  def end_task(self, method_state: SIState, params, batch_stats, task: int, data: Examples) -> SIState:
    new = super().end_task(method_state, params, batch_stats, task, data)
    return new.replace(path=jax.tree.map(jnp.zeros_like, method_state.path))
