"""LwF (lwcl.methods.lwf): the distillation against a float64 NumPy transcription of Mammoth's ``smooth`` and
``modified_kl_div``, its edge cases, the end-of-task copy, and the one-line refusal of one head per task."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl.engine.build import Setup
from lwcl.errors import ConfigError
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


@pytest.mark.parametrize("heads", ["multi", "masked"])
def test_task_incremental_heads_are_refused_with_one_line(heads):
  with pytest.raises(ConfigError, match=f"task_heads={heads}") as e:
    Setup.build(small_config(**{"method.name": "lwf", "scenario.task_heads": heads}))
  assert "\n" not in str(e.value) and "--config." in str(e.value)
