"""DER, dark experience replay (Buzzega et al., NeurIPS 2020, Eq. 4; Mammoth ``models/der.py``): the
buffer keeps each example's logits from when it was stored, and the loss adds ``alpha`` times the mean
squared error between the network's logits on a replay batch and those stored logits."""

from __future__ import annotations

from lwcl.core.options import Option
from lwcl.methods.replay import AUGMENT_KEY, REPLAY_KEY, ReplayMethod, masked_mse


class DER(ReplayMethod):
  """Dark experience replay: ``loss = CE(minibatch) + alpha * MSE(logits(replay), stored logits)``, the
  stored logits those of the step that offered the example to the buffer (Mammoth stores ``outputs.data``
  of the same forward pass). ``method.der_alpha`` is kept in the method state (a sweep of it runs as
  replicas). State: :class:`~lwcl.methods.replay.ReplayState`.

  In layer-wise ``local`` / ``greedy`` training the term is local: every local block head's logits on the
  replay batch against that head's stored logits, the block fed the previous one's detached output,
  weighted as the mode's local losses (``fns.local_weights``).

  Raises (constructor):
    ConfigError: a key out of range.
  """

  OPTIONS = ReplayMethod.OPTIONS + (
      Option("method.der_alpha", 0.3, "weight of the logit-matching (MSE) term on replayed examples", minimum=0.0),)
  STATE_HYPER = {"method.der_alpha": "alpha"}
  keeps_logits = True

  def loss_term(self, method_state, params, batch_stats, batch, logits, rng):
    del logits
    replayed = self.replay(method_state, batch, rng, REPLAY_KEY)
    outputs = self.replay_outputs(params, batch_stats, replayed, rng, AUGMENT_KEY)
    stored = self.stored_logits(replayed)
    return method_state.alpha * self.fns.local_sum(
        batch, [masked_mse(out, stored[h], replayed["mask"]) for h, out in enumerate(outputs)])
