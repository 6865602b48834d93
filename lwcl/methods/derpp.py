"""DER++ (Buzzega et al., NeurIPS 2020, Eq. 6; Mammoth ``models/derpp.py``): DER's logit matching plus
``beta`` times the cross-entropy on a second, independently drawn replay batch with its stored labels."""

from __future__ import annotations

import jax

from lwcl.core.model_fns import cross_entropy
from lwcl.core.options import Option
from lwcl.methods.der import DER
from lwcl.methods.replay import SECOND_REPLAY_KEY


class DERPP(DER):
  """DER++: ``loss = CE(minibatch) + alpha * MSE(logits(replay 1), stored logits) + beta * CE(replay 2,
  stored labels)``, the two replay batches drawn independently (Mammoth calls ``get_data`` twice).
  ``method.der_alpha`` and ``method.der_beta`` are kept in the method state. State:
  :class:`~lwcl.methods.replay.ReplayState`."""

  OPTIONS = DER.OPTIONS + (
      Option("method.der_beta", 0.5, "DER++: weight of the cross-entropy on a second replay batch", minimum=0.0),)
  STATE_HYPER = {**DER.STATE_HYPER, "method.der_beta": "beta"}

  def loss_term(self, method_state, params, batch_stats, batch, logits, rng):
    """DER's term plus ``beta`` times the cross-entropy on the second replay batch (in local training each
    local block head's, weighted as the local losses)."""
    matching = super().loss_term(method_state, params, batch_stats, batch, logits, rng)
    second = self.replay(method_state, batch, rng, SECOND_REPLAY_KEY)
    outputs = self.replay_outputs(params, batch_stats, second, jax.random.fold_in(rng, 2), SECOND_REPLAY_KEY)
    return matching + method_state.beta * self.fns.local_sum(
        batch, [cross_entropy(out, second["label"], second["mask"]) for out in outputs])
