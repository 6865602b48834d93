"""lwcl.models.convnet: the 2x2 max pool."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import normal


def test_max_pool_2x2_matches_flax_max_pool_values_and_gradients():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  from lwcl.models.convnet import max_pool_2x2  # pylint: disable=g-import-not-at-top
  ref = lambda v: nn.max_pool(v, (2, 2), strides=(2, 2))  # noqa: E731
  continuous = normal(0, (3, 28, 28, 4), (2, 7, 9, 3))
  # integers in -2..2 and a ReLU'd map: most windows hold tied maxima (the first one in row-major order
  # takes the gradient, as in XLA's select_and_scatter); odd sizes: VALID drops the last row / column
  tied = [jnp.asarray(np.random.default_rng(2).integers(-2, 3, (3, 7, 9, 4)), jnp.float32),
          jax.nn.relu(continuous[0])]
  for x in continuous + tied:
    np.testing.assert_array_equal(max_pool_2x2(x), ref(x))
    w = normal(1, ref(x).shape)
    grads = [jax.jit(jax.grad(lambda v, f=f: jnp.sum(f(v) * w)))(x) for f in (max_pool_2x2, ref)]
    np.testing.assert_array_equal(grads[0], grads[1])
    chex.assert_trees_all_close(jnp.sum(grads[0]), jnp.sum(w), rtol=1e-5)  # each window passes g on once


@pytest.mark.parametrize("platforms,native", [(("cuda",), True), (("tpu",), True), (("cpu", "cuda"), True),
                                              (("cpu",), False), (None, False)])  # None: this CPU backend
def test_max_pool_2x2_keeps_the_native_pool_off_the_cpu(monkeypatch, platforms, native):
  # the CPU form only in programs built for the CPU alone (lwcl.platform.targets); GPU/TPU: reduce_window
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  from lwcl.models import convnet  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(convnet.nn, "max_pool", lambda *a, **k: calls.append(k) or nn.pooling.max_pool(*a, **k))
  x = normal(0, (1, 4, 4, 2))
  np.testing.assert_array_equal(convnet.max_pool_2x2(x, platforms), nn.pooling.max_pool(x, (2, 2), strides=(2, 2)))
  assert calls == ([{"strides": (2, 2)}] if native else [])
  stage = convnet.convnet_blocks(((2,),), (), False, "native", platforms)[0]
  variables = jax.eval_shape(stage.init, jax.random.PRNGKey(0), x)
  assert ("reduce_window" in str(jax.make_jaxpr(stage.apply)(variables, x))) == native
