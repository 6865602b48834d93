"""Base optimizers and per-task learning-rate schedules (lwcl/engine/optim.py)."""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lwcl.engine import optim
from lwcl.errors import ConfigError

from helpers import small_config


def opt_config(**kw):
  c = small_config().optimizer.to_dict()
  c.update(kw)
  return types.SimpleNamespace(**c)


PLAIN = types.SimpleNamespace(is_greedy=False)  # any non-greedy model functions


@pytest.mark.parametrize("steps_per_epoch", [5, 20])
def test_cosine_and_step_schedules_are_sized_from_each_task(steps_per_epoch):
  epochs, lr = 2, 0.1
  n = steps_per_epoch * epochs
  u = np.arange(n, dtype=np.float64)
  cos = optim.LearningRates(PLAIN, opt_config(schedule="cosine", learning_rate=lr), epochs)
  np.testing.assert_allclose(cos.for_task(steps_per_epoch), lr * 0.5 * (1 + np.cos(np.pi * u / n)), rtol=1e-5,
                             atol=1e-7)
  step = optim.LearningRates(PLAIN, opt_config(schedule="step", learning_rate=lr, decay_every_epochs=1,
                                               decay_factor=0.2), epochs)
  np.testing.assert_allclose(step.for_task(steps_per_epoch), lr * 0.2 ** (u // steps_per_epoch), rtol=1e-6)
  const = optim.LearningRates(PLAIN, opt_config(learning_rate=lr), epochs).for_task(steps_per_epoch)
  chex.assert_shape(const, (n,))
  np.testing.assert_array_equal(const, np.float32(lr))
  with pytest.raises(ConfigError, match="optimizer.schedule"):
    optim.LearningRates(PLAIN, opt_config(schedule="linear"), epochs)


def test_greedy_schedule_restarts_at_every_local_block():
  from lwcl.layerwise.fns import LayerwiseFns  # pylint: disable=g-import-not-at-top
  fns = LayerwiseFns(None, None, None, mode="greedy", starts=(0, 1, 2), greedy_epochs_per_block=1)
  rates = optim.LearningRates(fns, opt_config(schedule="cosine", learning_rate=1.0), 3).for_task(4)
  one_block = 0.5 * (1 + np.cos(np.pi * np.arange(4) / 4))
  np.testing.assert_allclose(rates, np.tile(one_block, 3), rtol=1e-5)


@pytest.mark.parametrize("name,reference", [
    ("sgd", lambda c: optax.chain(optax.add_decayed_weights(c.weight_decay),
                                  optax.sgd(0.05, momentum=c.momentum, nesterov=True))),
    ("adam", lambda c: optax.chain(optax.add_decayed_weights(c.weight_decay), optax.adam(0.05))),
    ("adamw", lambda c: optax.adamw(0.05, weight_decay=c.weight_decay)),
])
def test_base_optimizers_match_optax_with_the_learning_rate_given_per_step(name, reference):
  cfg = opt_config(name=name, learning_rate=0.05, weight_decay=1e-3, momentum=0.9, nesterov=True)
  ours, ref = optim.base_optimizer(cfg), reference(cfg)
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.zeros(4, jnp.float32)}
  s_ours, s_ref, p_ours, p_ref = ours.init(params), ref.init(params), params, params
  for _ in range(4):
    g = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    u_ours, s_ours = ours.update(g, s_ours, p_ours, learning_rate=jnp.float32(0.05))
    u_ref, s_ref = ref.update(g, s_ref, p_ref)
    p_ours, p_ref = optax.apply_updates(p_ours, u_ours), optax.apply_updates(p_ref, u_ref)
  chex.assert_trees_all_close(p_ours, p_ref, rtol=1e-6, atol=1e-7)
  # The extra argument is the learning rate: zero leaves the parameters where they are.
  u_zero, _ = ours.update(g, s_ours, p_ours, learning_rate=jnp.float32(0.0))
  chex.assert_trees_all_equal(u_zero, jax.tree.map(jnp.zeros_like, u_zero))


def test_clipping_by_value_is_pytorchs_clip_grad_value_before_the_step():
  # PyTorch: clip_grad_value_(params, v) then SGD's step (weight decay added to the clipped gradient, then
  # momentum), in float64 NumPy; elements above and below the bound, and inside it.
  cfg = opt_config(name="sgd", learning_rate=0.1, weight_decay=1e-2, momentum=0.9, grad_clip_value=0.5)
  ours = optim.base_optimizer(cfg)
  rng = np.random.default_rng(1)
  p = rng.normal(size=(5, 3))
  params, buf, want = {"w": jnp.asarray(p, jnp.float32)}, np.zeros_like(p), p.copy()
  state = ours.init(params)
  for _ in range(3):
    g = rng.normal(size=p.shape) * 2  # about half of the elements beyond 0.5
    d = np.clip(g, -0.5, 0.5) + 1e-2 * want
    buf = 0.9 * buf + d
    want = want - 0.1 * buf
    u, state = ours.update({"w": jnp.asarray(g, jnp.float32)}, state, params, learning_rate=jnp.float32(0.1))
    params = optax.apply_updates(params, u)
  np.testing.assert_allclose(np.asarray(params["w"]), want, rtol=1e-5, atol=1e-6)
  # a gradient of 3 moves a parameter by lr * 1 with the bound 1, by lr * 3 without
  big = {"w": jnp.full((2,), 3.0)}
  for clip, step in ((1.0, -0.1), (0.0, -0.3)):
    tx = optim.base_optimizer(opt_config(name="sgd", learning_rate=0.1, momentum=0.0, grad_clip_value=clip))
    assert float(tx.update(big, tx.init(big), big)[0]["w"][0]) == pytest.approx(step)
