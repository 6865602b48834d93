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

  Raises (constructor):
    ConfigError: a key out of range, or layer-wise ``local`` / ``greedy`` training
      (:attr:`~lwcl.methods.base.Method.layerwise_local` is False).
  """

  OPTIONS = ReplayMethod.OPTIONS + (
      Option("method.der_alpha", 0.3, "weight of the logit-matching (MSE) term on replayed examples", minimum=0.0),)
  STATE_HYPER = {"method.der_alpha": "alpha"}
  keeps_logits = True
  # The matched logits are the network's output: in layer-wise local / greedy training their gradient would
  # reach every local block (a local version would match every block head's; not built yet).
  layerwise_local = False

  def loss_term(self, method_state, params, batch_stats, batch, logits, rng):
    del logits
    replayed = self.replay(method_state, batch, rng, REPLAY_KEY)
    outputs = self.replay_logits(params, batch_stats, replayed, rng, AUGMENT_KEY)
    return method_state.alpha * masked_mse(outputs, replayed["logits"], replayed["mask"])
