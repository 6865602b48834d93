"""MAS, memory aware synapses (Aljundi et al., ECCV 2018): an importance penalty whose importance is the
sensitivity of the model's outputs."""

from __future__ import annotations

import jax.numpy as jnp

from lwcl.core.model_fns import task_masks
from lwcl.methods import regularization as reg
from lwcl.methods.importance import EstimatedPenalty


class MAS(EstimatedPenalty):
  """Memory aware synapses (Aljundi et al., ECCV 2018): omega is
  :func:`~lwcl.methods.regularization.mas_importance` of the task's outputs (the logits of the outputs its label
  mask allows; the paper's unsupervised l2 of the output). State:
  :class:`~lwcl.methods.importance.ImportanceState`.

  In layer-wise ``local`` and ``greedy`` modes the output is every local block head's outputs, each block
  fed the previous one's detached output (``LayerwiseFns.block_logits(detach=True)``): each block and its
  auxiliary head get importance from the head they are trained through, as EWC's Fisher comes from the
  sum of local losses (docs/design.md, "Continual methods in layer-wise modes").
  """

  def estimate(self, params, batch_stats, examples, mask, rng):
    del rng

    def output(p, ex):
      one = self._one(ex)
      if self.fns.is_local:
        logits = jnp.concatenate(self.fns.block_logits(p, batch_stats, one, detach=True), axis=-1)
        allowed = jnp.tile(task_masks(self.fns.label_masks, ex["task"]), self.fns.num_blocks)
      else:
        logits = self.fns.logits(p, batch_stats, one, train=False)[0]
        allowed = task_masks(self.fns.label_masks, ex["task"])
      return jnp.where(allowed, logits[0], 0.0)

    return reg.mas_importance(output, params, examples, mask, batch_size=self.batch_size)
