"""LwF (lwcl.methods.lwf): the distillation against a float64 NumPy transcription of Mammoth's ``smooth`` and
``modified_kl_div``, its edge cases, the end-of-task copy, Li & Hoiem's per-head distillation with
task-incremental heads, and the local distillation of every block head in layer-wise training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl.engine.build import Setup
from lwcl.methods import lwf

from helpers import small_config


def _mammoth(old_logits, new_logits, past, temperature):
  """Mammoth ``models/lwf.py`` in float64 NumPy: ``modified_kl_div(smooth(soft(old[:, P]), T, 1),
  smooth(soft(new[:, P]), T, 1))`` with ``P`` the past outputs."""
  def soft(z):
    z = z[:, past] - z[:, past].max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)

  def smooth(p):
    p = p ** (1.0 / temperature)
    return p / p.sum(1, keepdims=True)

  return -np.mean(np.sum(smooth(soft(old_logits)) * np.log(smooth(soft(new_logits))), 1))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0])
def test_distillation_is_mammoths(temperature):
  rng = np.random.default_rng(3)
  old, new = rng.normal(size=(6, 10)) * 3, rng.normal(size=(6, 10)) * 3
  past = np.zeros(10, bool)
  past[[0, 1, 4, 5]] = True
  got = lwf.distillation(jnp.asarray(old, jnp.float32), jnp.asarray(new, jnp.float32),
                         jnp.asarray(past, jnp.float32), temperature)
  np.testing.assert_allclose(float(got), _mammoth(old, new, past, temperature), rtol=1e-5)


def test_no_past_output_gives_zero_and_finite_gradients():
  """During the first task nothing is distilled: the term and its gradient are exactly 0 (no nan from a
  softmax over no output)."""
  new = jnp.asarray(np.random.default_rng(0).normal(size=(4, 10)), jnp.float32)
  term = lambda z: lwf.distillation(jnp.zeros_like(z), z, jnp.zeros(10), 2.0)  # noqa: E731
  assert float(term(new)) == 0.0
  np.testing.assert_array_equal(jax.grad(term)(new), np.zeros((4, 10)))
  # With some outputs past, the others get no gradient and the past ones a finite one.
  past = jnp.asarray([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], jnp.float32)
  g = jax.grad(lambda z: lwf.distillation(z * 0.5, z, past, 2.0))(new)
  assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[:, 2:] == 0) and np.any(np.asarray(g)[:, :2] != 0)


def test_end_task_keeps_a_copy_and_marks_the_task_classes_past():
  config = small_config(**{"method.name": "lwf", "scenario.incremental": "class", "scenario.num_tasks": 2})
  setup = Setup.build(config)
  state = setup.initial_state()
  ms = setup.method.end_task(state.method_state, state.params, state.batch_stats, 0, setup.train_data[0])
  classes = sorted(set(np.asarray(setup.train_data[0].labels).tolist()))
  np.testing.assert_array_equal(np.flatnonzero(np.asarray(ms.past)), classes)
  for old, new in zip(jax.tree.leaves(ms.old_params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(old, new)
    assert old.unsafe_buffer_pointer() != new.unsafe_buffer_pointer()  # a copy: the step donates params


def _moved(config, past_tasks=(0,)):
  """A built setup, the method state after task 0 (the old network: the initial one) with ``past_tasks``
  marked finished, the new network (the initial one moved), its batch statistics and a batch of the last
  task: the setting in which the distillation is not 0."""
  setup = Setup.build(config)
  state = setup.initial_state()
  ms = setup.method.end_task(state.method_state, state.params, state.batch_stats, 0, setup.train_data[0])
  if setup.method.per_task:
    ms = ms.replace(past=jnp.zeros_like(ms.past).at[jnp.asarray(past_tasks)].set(1.0))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: x + 0.3 * rng.standard_normal(x.shape).astype(x.dtype), state.params)
  data = setup.train_data[-1]
  batch = {"image": data.images[:8], "label": data.labels[:8], "task": data.tasks[:8]}
  return setup, ms, params, state.batch_stats, batch


@pytest.mark.parametrize("heads", ["multi", "masked"])
def test_task_incremental_heads_distill_each_finished_task_head(heads):
  """Li & Hoiem's multi-head LwF: for each finished task t, the old network's head t against the new one's on
  the current inputs, over the outputs task t may predict, summed over the finished tasks (Mammoth's KD per
  head, in float64 NumPy, on the heads' logits); the current and future tasks' heads are not distilled."""
  config = small_config(**{"method.name": "lwf", "scenario.task_heads": heads, "scenario.num_tasks": 3})
  setup, ms, params, stats, batch = _moved(config, past_tasks=(0, 1))
  key = jax.random.PRNGKey(5)
  got = float(setup.method.loss_term(ms, params, stats, batch, None, key))
  fns, masks = setup.fns, np.asarray(setup.fns.label_masks, bool)
  want = want_all = 0.0
  for t in (0, 1):
    on_t = {**batch, "task": np.full_like(batch["task"], t)}
    old = np.asarray(fns.logits(ms.old_params, ms.old_batch_stats, on_t, train=False)[0], np.float64)
    new = np.asarray(fns.logits(params, stats, on_t, train=True, rng=key)[0], np.float64)
    want += _mammoth(old, new, masks[t], 2.0)
    want_all += _mammoth(old, new, np.ones_like(masks[t]), 2.0) if heads == "multi" else 0.0
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert got > 0.01
  if heads == "masked":  # each task's own classes: a masked head's other outputs are not distilled
    assert not masks[0].all() and (masks[0] != masks[1]).any()


@pytest.mark.parametrize("mode", ["local", "greedy"])
def test_layerwise_training_distills_each_block_head_into_its_own_block(mode):
  """In local training every block head is distilled with the block fed the previous one's detached output
  (block k's term reaches block k and its head only); in greedy training the active block's alone."""
  config = small_config(**{"method.name": "lwf", "scenario.incremental": "class", "model.hidden": (16, 16),
                           "layerwise.mode": mode})
  setup, ms, params, stats, batch = _moved(config)
  fns, key, past = setup.fns, jax.random.PRNGKey(7), np.asarray(ms.past) > 0
  assert fns.local_blocks == 2 and past.any()
  if mode == "greedy":
    batch = {**batch, "phase": np.ones_like(batch["task"])}  # block 1 trains
  olds = fns.block_logits(ms.old_params, ms.old_batch_stats, batch)
  news = fns.block_logits(params, stats, batch, detach=True, train=True, rng=key)
  per_block = [_mammoth(np.asarray(o, np.float64), np.asarray(n, np.float64), past, 2.0) for o, n in zip(olds, news)]
  term = lambda p: setup.method.loss_term(ms, p, stats, batch, None, key)  # noqa: E731
  want = sum(per_block) if mode == "local" else per_block[1]
  np.testing.assert_allclose(float(term(params)), want, rtol=1e-5)
  grads = jax.grad(term)(params)
  block0 = lambda p: lwf.distillation(olds[0], fns.block_logits(p, stats, batch, detach=True, train=True,  # noqa: E731
                                                                  rng=key)[0], ms.past, 2.0)
  only0 = jax.grad(block0)(params)
  for name in fns.names(0):  # block 0's parameters: its own term's gradient (local) or none (greedy, block 1)
    for g, g0 in zip(jax.tree.leaves(grads[name]), jax.tree.leaves(only0[name])):
      np.testing.assert_allclose(g, g0 if mode == "local" else np.zeros_like(g0), rtol=1e-4, atol=1e-7)
  assert any(np.any(np.asarray(g) != 0) for n in fns.names(1) for g in jax.tree.leaves(grads[n]))
