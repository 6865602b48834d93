"""lwcl.core.model_fns: init is one compiled program equal to the traced function."""


import numpy as np

from lwcl.engine import experiment

from helpers import small_config


def test_init_is_one_compiled_program_equal_to_the_traced_function():
  import jax  # pylint: disable=g-import-not-at-top
  for overrides in ({}, {"model.name": "convnet", "layerwise.mode": "local"}):
    exp = experiment.Experiment(small_config(**overrides))
    key, shape = jax.random.PRNGKey(3), exp.scenario.image_shape
    compiled, traced = exp.fns.init(key, shape), exp.fns.init_variables(key, shape)
    assert jax.tree.structure(compiled) == jax.tree.structure(traced)
    for a, b in zip(jax.tree.leaves(compiled), jax.tree.leaves(traced)):
      np.testing.assert_array_equal(a, b)
    exp.fns.init(jax.random.PRNGKey(4), list(shape))
    assert exp.fns._compiled_init._cache_size() == 1  # pylint: disable=protected-access
