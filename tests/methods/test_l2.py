"""The L2 penalty (lwcl/methods/l2.py): its gradient against a float64 NumPy reference, no penalty in the
first task, a uniform importance that does not accumulate, and an anchor that is a copy."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from lwcl.config import files as config_files
from lwcl.methods import METHODS

import helpers


def _method(strength):
  section = config_files.load(os.path.join(helpers.ROOT, "configs", "default.py")).get_config().method
  section.name, section.strength = "l2", strength
  return METHODS["l2"](section, None, None)


def _tree(seed):
  rng = np.random.default_rng(seed)
  return {"dense": {"kernel": jnp.asarray(rng.standard_normal((3, 4)), jnp.float32),
                    "bias": jnp.asarray(rng.standard_normal(4), jnp.float32)},
          "head": jnp.asarray(rng.standard_normal((2, 5)), jnp.float32)}


def _penalized(method, state, params, grads):
  tx = method.transformation()
  args = method.step_args(state, params, {}, None, None)
  return jax.jit(lambda g, p: tx.update(g, tx.init(p), p, **args)[0])(grads, params)


def test_l2_penalty_gradient_matches_float64_numpy():
  method = _method(0.7)
  start, end1, end2, params, grads = (_tree(s) for s in range(5))
  state = method.init_state(start, {})
  # Task 1: omega = 0, no penalty at all.
  jax.tree.map(np.testing.assert_array_equal, _penalized(method, state, params, grads), grads)
  for end in (end1, end2):  # after each task: omega = 1 (not accumulated), anchor = that task's end
    state = method.end_task(state, end, {}, 0, None)
    jax.tree.map(lambda o: np.testing.assert_array_equal(o, np.ones_like(o)), state.omega)
    got = _penalized(method, state, params, grads)
    # d/dtheta (strength / 2) ||theta - theta*||^2 = strength (theta - theta*), in float64.
    want = jax.tree.map(lambda g, p, a: np.float64(g) + 0.7 * (np.float64(p) - np.float64(a)), grads, params, end)
    jax.tree.map(lambda x, w: np.testing.assert_allclose(np.float64(x), w, rtol=1e-6, atol=1e-6), got, want)
    # The anchor is a copy (the train step donates the parameters), equal to them.
    jax.tree.map(lambda a, p: (np.testing.assert_array_equal(a, p),
                               _assert(a.unsafe_buffer_pointer() != p.unsafe_buffer_pointer())), state.anchor, end)


def _assert(condition):
  assert condition
