"""lwcl.models.heads: task heads select each example's head."""


import jax
import jax.numpy as jnp
import numpy as np

from lwcl.models.heads import TaskHeads

from helpers import normal


def test_task_heads_select_each_examples_head():
  heads = TaskHeads(num_heads=3, output_dim=4)
  x = normal(1, (6, 5))
  task = jnp.array([0, 1, 2, 2, 1, 0])
  params = heads.init(jax.random.PRNGKey(0), x, task)
  out = heads.apply(params, x, task)
  k, b = params["params"]["kernel"], params["params"]["bias"]
  want = np.stack([np.asarray(x[i] @ k[t] + b[t]) for i, t in enumerate(task)])
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
