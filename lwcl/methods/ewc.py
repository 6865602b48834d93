"""EWC, elastic weight consolidation (Kirkpatrick et al., PNAS 2017, Eq. 3): an importance penalty whose
importance is the diagonal Fisher of each finished task."""

from __future__ import annotations

import jax

from lwcl.core.options import Option
from lwcl.methods import regularization as reg
from lwcl.methods.importance import EstimatedPenalty

EWC_FISHER = ("empirical", "sampled")


class EWC(EstimatedPenalty):
  """Elastic weight consolidation (Kirkpatrick et al., PNAS 2017, Eq. 3): omega is the diagonal Fisher
  (:func:`~lwcl.methods.regularization.fisher_importance`) of each finished task at its final parameters,
  accumulated over tasks, with one anchor, the latest task's end parameters (docs/design.md; as online
  EWC and most libraries do, rather than one anchor per task). ``method.ewc_fisher``: ``empirical`` (the
  true labels, the default) or ``sampled`` (labels drawn from the model's predictive distribution, the
  true Fisher's Monte-Carlo estimate). State: :class:`~lwcl.methods.importance.ImportanceState`."""

  OPTIONS = EstimatedPenalty.OPTIONS + (
      Option("method.ewc_fisher", "empirical", "empirical (true labels) | sampled (labels drawn from the "
             "model)", choices=EWC_FISHER),)

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.fisher = self.options["ewc_fisher"]

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
