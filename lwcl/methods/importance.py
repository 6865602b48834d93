"""Importance penalties as continual-learning methods: EWC, MAS, SI and NAI (docs/design.md,
"Importance penalties").

Task ``t`` minimizes ``L_t(theta) + (strength / 2) * sum_i omega_i (theta_i - anchor_i)^2``; the penalty's
gradient is added by :func:`lwcl.methods.regularization.importance_penalty` in front of the base optimizer. The
state (:class:`ImportanceState`) carries ``omega``, ``anchor`` and ``strength`` to every step as extra
arguments, so one compilation serves the whole stream and a different strength needs no recompilation.
Each method here differs only in how it estimates one task's importance (:meth:`estimate`, pure maths in
:mod:`lwcl.methods.regularization`).

Config keys (``config.method``, defaults and comments in ``configs/default.py``): ``strength``,
``accumulate``, ``importance_samples``, ``importance_batch_size``, ``ewc_fisher``, ``si_xi``,
``nai_normalize``, ``nai_weight_rule``, ``nai_include_heads``.

**Adding an importance penalty**: subclass :class:`ImportancePenaltyMethod` here, implement
:meth:`~ImportancePenaltyMethod.estimate` (traced under ``jax.jit``; return a float32 pytree shaped like
the parameters), add its name to ``METHODS`` in ``lwcl/methods/__init__.py`` and its keys (if any) to
``configs/default.py``.

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

from lwcl.core.model_fns import MASKED_LOGIT
from lwcl.data.examples import Examples
from lwcl.errors import ConfigError
from lwcl.methods import regularization as reg
from lwcl.methods.base import Method
from lwcl.methods.options import choice, number, option

EWC_FISHER = ("empirical", "sampled")
PyTree = Any


@flax.struct.dataclass
class ImportanceState:
  """State of EWC, MAS and NAI; fixed shapes over the stream.

  Attributes:
    omega: float32 pytree shaped like the parameters: the importances of the finished tasks, accumulated
      (``method.accumulate``: sum or element-wise max); zeros before the first task ends.
    anchor: pytree like the parameters (same dtypes): the parameters at the end of the last finished task
      (the initial parameters before that); never aliases the donated parameters.
    strength: float32 scalar, the penalty strength (lambda of EWC, c of SI), from ``method.strength``.
  """
  omega: PyTree
  anchor: PyTree
  strength: jax.Array


@flax.struct.dataclass
class SIState(ImportanceState):
  """State of SI: :class:`ImportanceState` plus ``path``, a float32 pytree shaped like the parameters,
  the current task's path integral ``sum_steps -g * delta_theta`` (Zenke et al. 2017, Eq. 4), reset to
  zeros at every task end."""
  path: PyTree


@jax.jit
def _copy(tree: PyTree) -> PyTree:
  """Fresh device buffers (the anchor must not alias the donated parameters); one compiled program (a
  ``copy`` per leaf, never the input buffers forwarded)."""
  return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


_accumulate = jax.jit(reg.accumulate, static_argnums=2)  # one program, not one per leaf shape


@jax.jit
def _zeros_like(params: PyTree) -> PyTree:
  """float32 zeros shaped like ``params``, one compiled program."""
  return jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)


class ImportancePenaltyMethod(Method):
  """Base of EWC, MAS, SI and NAI: the penalty, its state and the end-of-task update.

  ``strength`` is state, not a compile-time constant: a sweep may change it between runs without
  recompiling the train step.

  Raises:
    ConfigError: an invalid ``config.method`` value (one line naming the key and the fix).
  """

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.strength = number(method_config, "strength", float, 0.0)
    self.accumulate = choice(method_config, "accumulate", reg.ACCUMULATE)
    self.samples = number(method_config, "importance_samples", int, 0)
    self.batch_size = number(method_config, "importance_batch_size", int, 1)
    self._jitted = None

  # hooks

  def init_state(self, params, batch_stats) -> ImportanceState:
    del batch_stats
    return ImportanceState(omega=_zeros_like(params), anchor=_copy(params),
                           strength=jnp.asarray(self.strength, jnp.float32))

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    return reg.importance_penalty(self.strength)

  def step_args(self, method_state: ImportanceState, params, batch_stats, batch, rng) -> dict:
    return {"omega": method_state.omega, "anchor": method_state.anchor, "strength": method_state.strength}

  def end_task(self, method_state: ImportanceState, params, batch_stats, task: int, data: Examples):
    omega_t = self.task_importance(method_state, params, batch_stats, task, data)
    return method_state.replace(omega=_accumulate(method_state.omega, omega_t, self.accumulate),
                                anchor=_copy(params))

  # importance of one task

  def task_importance(self, method_state, params, batch_stats, task: int, data: Examples) -> PyTree:
    """The importance of task ``task`` (float32 pytree shaped like ``params``), from up to
    ``importance_samples`` of its examples (a seeded subset; 0 = all)."""
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
    under ``jax.jit``; a float32 pytree shaped like ``params``. SI overrides ``task_importance``
    instead."""
    raise NotImplementedError

  def _one(self, example: dict) -> dict:
    return {k: example[k][None] for k in ("image", "label", "task")}


class EWC(ImportancePenaltyMethod):
  """Elastic weight consolidation (Kirkpatrick et al., PNAS 2017, Eq. 3): omega is the diagonal Fisher
  (:func:`~lwcl.methods.regularization.fisher_importance`) of each finished task at its final parameters,
  accumulated over tasks, with one anchor, the latest task's end parameters (docs/design.md; as online
  EWC and most libraries do, rather than one anchor per task). ``method.ewc_fisher``: ``empirical`` (the
  true labels, the default) or ``sampled`` (labels drawn from the model's predictive distribution, the
  true Fisher's Monte-Carlo estimate)."""

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.fisher = choice(method_config, "ewc_fisher", EWC_FISHER)

  def estimate(self, params, batch_stats, examples, mask, rng):
    keys = jax.random.split(rng, mask.shape[0])

    def nll(p, ex):
      one = self._one(ex)
      if self.fisher == "sampled":
        logits, _ = self.fns.logits(p, batch_stats, one, train=False)
        one["label"] = jax.random.categorical(ex["key"], jax.lax.stop_gradient(logits))
      loss, _ = self.fns.loss(p, batch_stats, one, None, False)  # of one example: -log p(label | x)
      return loss

    return reg.fisher_importance(nll, params, dict(examples, key=keys), mask, batch_size=self.batch_size)


class MAS(ImportancePenaltyMethod):
  """Memory aware synapses (Aljundi et al., ECCV 2018): omega is
  :func:`~lwcl.methods.regularization.mas_importance` of the task's outputs (the logits of the outputs its label
  mask allows; the paper's unsupervised l2 of the output).

  In layer-wise ``local`` and ``greedy`` modes the output is every local block head's outputs, each block
  fed the previous one's detached output (``LayerwiseFns.block_logits(detach=True)``): each block and its
  auxiliary head get importance from the head they are trained through, as EWC's Fisher comes from the
  sum of local losses (docs/design.md, "Continual methods in layer-wise modes").
  """

  def estimate(self, params, batch_stats, examples, mask, rng):
    del rng
    label_masks = jnp.asarray(self.fns.label_masks)

    def output(p, ex):
      one = self._one(ex)
      if self.fns.is_local:
        logits = jnp.concatenate(self.fns.block_logits(p, batch_stats, one, detach=True), axis=-1)
        allowed = jnp.tile(label_masks[ex["task"]], self.fns.num_blocks)
      else:
        logits, allowed = self.fns.logits(p, batch_stats, one, train=False)[0], label_masks[ex["task"]]
      return jnp.where(allowed, logits[0], 0.0)

    return reg.mas_importance(output, params, examples, mask, batch_size=self.batch_size)


class SI(ImportancePenaltyMethod):
  """Synaptic intelligence (Zenke et al., ICML 2017): the train step accumulates the path integral
  ``path += -g * delta_theta`` (:func:`~lwcl.methods.regularization.si_path_step`, in ``after_step``); at the task
  end ``omega += path / ((theta_end - theta_start)^2 + method.si_xi)`` and the path restarts at 0. The
  task's start parameters are the anchor (the previous task's end parameters; the initial ones for task
  1). State: :class:`SIState`."""

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.xi = number(method_config, "si_xi", float, 0.0, strict=True)

  def init_state(self, params, batch_stats) -> SIState:
    base = super().init_state(params, batch_stats)
    return SIState(omega=base.omega, anchor=base.anchor, strength=base.strength, path=_zeros_like(params))

  def after_step(self, method_state: SIState, params_before, params_after, grads, batch) -> SIState:
    return method_state.replace(path=reg.si_path_step(method_state.path, params_before, params_after, grads))

  def task_importance(self, method_state: SIState, params, batch_stats, task, data) -> PyTree:
    return reg.si_importance(method_state.path, method_state.anchor, params, self.xi)

  def end_task(self, method_state: SIState, params, batch_stats, task: int, data: Examples) -> SIState:
    new = super().end_task(method_state, params, batch_stats, task, data)
    return new.replace(path=jax.tree.map(jnp.zeros_like, method_state.path))


class NAI(ImportancePenaltyMethod):
  """Neuron activation importance (Kim & Lee 2021, arXiv 2107.12657): omega is
  :func:`~lwcl.methods.regularization.nai_importance` of each finished task, with ``method.nai_normalize``,
  ``method.nai_weight_rule`` and ``method.nai_include_heads``; accumulated by ``method.accumulate``.
  In layer-wise training the auxiliary heads are heads: like the task heads they get importance only with
  ``method.nai_include_heads`` (from their own softmax outputs); the blocks' neurons get theirs from
  their activations in every mode.

  Raises:
    ConfigError: also ``nai_weight_rule='max'`` with a residual network (its inputs are not the previous
      layer's neurons).
  """

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.normalize = choice(method_config, "nai_normalize", reg.NAI_NORMALIZE)
    self.weight_rule = choice(method_config, "nai_weight_rule", reg.NAI_WEIGHT_RULES)
    self.include_heads = bool(option(method_config, "nai_include_heads"))
    if self.weight_rule == "max":
      from lwcl.models.convnet import ConvStage  # pylint: disable=g-import-not-at-top
      from lwcl.models.mlp import DenseBlock  # pylint: disable=g-import-not-at-top
      blocks = getattr(fns.model, "blocks", ())
      if any(not isinstance(b, (ConvStage, DenseBlock)) for b in blocks):
        raise ConfigError("method.nai_weight_rule='max' needs a sequential model (mlp or convnet); use "
                          "--config.method.nai_weight_rule=output with residual networks")

  def estimate(self, params, batch_stats, examples, mask, rng):
    del rng
    fns = self.fns
    label_masks = jnp.asarray(fns.label_masks)

    def forward(p, batch):
      x = fns.preprocess(batch["image"], None)
      logits, state = fns.model.apply({"params": p, "batch_stats": batch_stats}, x, batch["task"],
                                      train=False, mutable=["intermediates"])
      logits = jnp.where(label_masks[batch["task"]], logits, MASKED_LOGIT)
      if self.include_heads and fns.is_layerwise:  # layer-wise: auxiliary heads are heads too
        blocks = fns.block_logits(p, batch_stats, batch)
        logits = {**{fns.head_name(k): l for k, l in enumerate(blocks[:-1])}, "head": logits}
      return logits, state["intermediates"]

    return reg.nai_importance(forward, params, examples, mask, batch_size=self.batch_size,
                              normalize=self.normalize, weight_rule=self.weight_rule,
                              include_heads=self.include_heads)
