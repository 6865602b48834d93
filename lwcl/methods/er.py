"""ER, experience replay (Chaudhry et al., *On Tiny Episodic Memories in Continual Learning*, 2019; Mammoth
``models/er.py``): each minibatch joined by a replay batch from a reservoir buffer, one loss over both."""

from __future__ import annotations

import jax.numpy as jnp

from lwcl.methods.replay import REPLAY_KEY, ReplayMethod


class ER(ReplayMethod):
  """Experience replay: the step's loss is the mean cross-entropy over the minibatch and a replay batch of
  ``method.replay_batch`` examples drawn from the buffer (Mammoth's ``torch.cat((inputs, buf_inputs))``;
  while the buffer is empty the replay rows are padding, so the loss is the minibatch's, as Mammoth skips
  the buffer then). State: :class:`~lwcl.methods.replay.ReplayState`."""

  def train_batch(self, method_state, batch, rng):
    replayed = self.replay(method_state, batch, rng, REPLAY_KEY)
    k, B = replayed["label"].shape[0], batch["label"].shape[0]
    joined = {}
    for key, value in batch.items():  # every key of the minibatch; those a replay batch lacks (greedy
      extra = replayed.get(key)       # training's phase) repeat the minibatch's first row
      if extra is None:
        extra = jnp.broadcast_to(value[:1], (k,) + value.shape[1:])
      joined[key] = jnp.concatenate([value, extra.astype(value.dtype)])
    joined["mask"] = jnp.concatenate([batch.get("mask", jnp.ones((B,), jnp.float32)), replayed["mask"]])
    return joined
