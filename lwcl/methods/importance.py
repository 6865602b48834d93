"""The importance-penalty family (EWC, MAS, SI, NAI, L2; docs/design.md, "Importance penalties"): its state
and the shared method base.

Task ``t`` minimizes ``L_t(theta) + (strength / 2) * sum_i omega_i (theta_i - anchor_i)^2``; the penalty's
gradient is added by :func:`lwcl.methods.regularization.importance_penalty` in front of the base optimizer. The
state (:class:`ImportanceState`) carries ``omega``, ``anchor`` and ``strength`` to every step as extra
arguments, so one compilation serves the whole stream and a different strength needs no recompilation.
The methods differ only in the importance ``omega`` after a task (:meth:`PenaltyMethod.next_omega`): L2
(:mod:`lwcl.methods.l2`) a uniform one; :class:`AccumulatedPenalty` one task's importance accumulated
over tasks, SI (:mod:`lwcl.methods.si`) from its path integral; :class:`EstimatedPenalty` one task's
importance estimated on its examples, EWC, MAS and NAI (:mod:`lwcl.methods.ewc`, :mod:`lwcl.methods.mas`,
:mod:`lwcl.methods.nai`; pure maths in :mod:`lwcl.methods.regularization`).

Layer-wise training: the penalty is per parameter, so in ``local`` mode each block's penalty acts on that
block's own parameters. EWC differentiates ``fns.loss`` (whatever loss the train step uses, e.g. the sum of
local losses), SI uses the train step's own gradients, NAI the activations; MAS differentiates the final
output ``fns.logits``.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lwcl.core.options import Option
from lwcl.data.examples import Examples
from lwcl.errors import ConfigError
from lwcl.methods import regularization as reg
from lwcl.methods.base import Method

PyTree = Any


@flax.struct.dataclass
class ImportanceState:
  """State of the importance penalties; fixed shapes over the stream.

  Attributes:
    omega: float32 pytree shaped like the parameters: the importances of the finished tasks (accumulated,
      or L2's ones); zeros before the first task ends.
    anchor: pytree like the parameters (same dtypes): the parameters at the end of the last finished task
      (the initial parameters before that); never aliases the donated parameters.
    strength: float32 scalar, the penalty strength (lambda of EWC, c of SI), from ``method.strength``.
  """
  omega: PyTree
  anchor: PyTree
  strength: jax.Array


@jax.jit
def copy_tree(tree: PyTree) -> PyTree:
  """Fresh device buffers (an anchor must not alias the donated parameters); one compiled program (a
  ``copy`` per leaf, never the input buffers forwarded)."""
  return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


_accumulate = jax.jit(reg.accumulate, static_argnums=2)  # one program, not one per leaf shape


@jax.jit
def zeros_like(params: PyTree) -> PyTree:
  """float32 zeros shaped like ``params``, one compiled program."""
  return jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)


class PenaltyMethod(Method):
  """Base of the importance penalties: the penalty, its state and the end-of-task update (``omega`` from
  :meth:`next_omega`, the anchor a copy of the task's end parameters).

  ``strength`` is state, not a compile-time constant: a sweep may change it between runs without
  recompiling the train step.

  Raises:
    ConfigError: an invalid ``config.method`` value (one line naming the key and the fix).
  """

  penalty = True
  STATE_HYPER = {"method.strength": "strength"}
  OPTIONS = (Option("method.strength", 1.0, "penalty strength lambda in strength/2 sum omega (theta - "
                    "anchor)^2 (SI c and MAS lambda are strength / 2)", minimum=0.0),)

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.strength = self.options["strength"]

  def init_state(self, params, batch_stats) -> ImportanceState:
    del batch_stats
    return ImportanceState(omega=zeros_like(params), anchor=copy_tree(params),
                           strength=jnp.asarray(self.strength, jnp.float32))

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    return reg.importance_penalty(self.strength)

  def step_args(self, method_state: ImportanceState, params, batch_stats, batch, rng) -> dict:
    return {"omega": method_state.omega, "anchor": method_state.anchor, "strength": method_state.strength}

  def end_task(self, method_state: ImportanceState, params, batch_stats, task: int, data: Examples):
    omega = self.next_omega(method_state, params, batch_stats, task, data)
    return method_state.replace(omega=omega, anchor=copy_tree(params))

  def next_omega(self, method_state, params, batch_stats, task: int, data: Examples) -> PyTree:
    """``omega`` after task ``task`` (float32 pytree shaped like ``params``; host, under ``jax.vmap`` for
    replicas)."""
    raise NotImplementedError


class AccumulatedPenalty(PenaltyMethod):
  """A penalty whose ``omega`` accumulates one importance per finished task (:meth:`task_importance`) by
  ``method.accumulate`` (sum or element-wise max)."""

  OPTIONS = PenaltyMethod.OPTIONS + (
      Option("method.accumulate", "sum", "combine the tasks' importances", choices=reg.ACCUMULATE),)

  def next_omega(self, method_state, params, batch_stats, task, data) -> PyTree:
    omega_t = self.task_importance(method_state, params, batch_stats, task, data)
    return _accumulate(method_state.omega, omega_t, self.options["accumulate"])

  def task_importance(self, method_state, params, batch_stats, task: int, data: Examples) -> PyTree:
    """The importance of task ``task`` (float32 pytree shaped like ``params``)."""
    raise NotImplementedError


class EstimatedPenalty(AccumulatedPenalty):
  """A penalty whose task importance is estimated (:meth:`estimate`, jitted) on up to
  ``method.importance_samples`` of the task's examples (EWC, MAS, NAI)."""

  OPTIONS = AccumulatedPenalty.OPTIONS + (
      Option("method.importance_samples", 1000, "examples per task the importance is estimated on; 0 = all",
             minimum=0),
      Option("method.importance_batch_size", 64, "examples per vmapped chunk (memory bound)", minimum=1))

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.samples = self.options["importance_samples"]
    self.batch_size = self.options["importance_batch_size"]
    self._jitted = None

  def task_importance(self, method_state, params, batch_stats, task: int, data: Examples) -> PyTree:
    """The importance of task ``task`` from up to ``importance_samples`` of its examples (a seeded subset;
    0 = all)."""
    del method_state
    examples, mask = self.importance_examples(data, task)
    if self._jitted is None:
      self._jitted = jax.jit(self.estimate)
    return self._jitted(params, batch_stats, examples, mask, jax.random.PRNGKey(task))

  def importance_examples(self, data: Examples, task: int) -> tuple[dict, np.ndarray]:
    """Host arrays ``({'image', 'label', 'task'}, mask)``, padded to a multiple of the chunk size.

    Raises:
      ConfigError: the task has no examples.
    """
    n = len(data)
    if n == 0:
      raise ConfigError(f"task {task + 1} has no training examples to estimate importances from; check "
                        "scenario.samples_per_task and scenario.validation_fraction")
    idx = np.arange(n)
    if self.samples and self.samples < n:
      idx = np.sort(np.random.default_rng([task, n]).permutation(n)[: self.samples])
    m = len(idx)
    padded = -(-m // self.batch_size) * self.batch_size
    take = np.concatenate([idx, np.full(padded - m, idx[0])])
    mask = np.zeros(padded, np.float32)
    mask[:m] = 1.0
    return {"image": data.images[take], "label": data.labels[take], "task": data.tasks[take]}, mask

  def estimate(self, params, batch_stats, examples: dict, mask, rng) -> PyTree:
    """One task's importance from ``examples`` (leading axis ``N``, ``mask`` float32 ``[N]``), traced
    under ``jax.jit``; a float32 pytree shaped like ``params``."""
    raise NotImplementedError

  def _one(self, example: dict) -> dict:
    return {k: example[k][None] for k in ("image", "label", "task")}
