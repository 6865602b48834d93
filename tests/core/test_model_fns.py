"""lwcl.core.model_fns: init is one compiled program equal to the traced function; the Task-IL scores keep
each example's task's classes, from one table or, under the replicas' vmap, each replica's own."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl.core.model_fns import REPLICA_AXIS, task_il_scores
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


def test_task_il_scores_keep_the_tasks_classes_and_read_each_replicas_table():
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(2, 6, 8)).astype(np.float32)  # [R, B, O]
  task = np.asarray([0, 1, 2, 0, 1, 2], np.int32)
  classes = [[(0, 1), (2, 3), (4, 5)], [(6, 7), (0, 1), (2, 3)]]  # each replica's task order
  tables = np.zeros((2, 3, 8), bool)
  for r, per_task in enumerate(classes):
    for t, cs in enumerate(per_task):
      tables[r, t, list(cs)] = True
  one = task_il_scores(jnp.asarray(scores[0]), tables[0], jnp.asarray(task))
  chex.assert_shape(one, (6, 8))
  np.testing.assert_array_equal(np.isfinite(np.asarray(one)), tables[0][task])
  np.testing.assert_array_equal(np.asarray(one)[tables[0][task]], scores[0][tables[0][task]])
  both = jax.vmap(lambda s: task_il_scores(s, tables, jnp.asarray(task)), axis_name=REPLICA_AXIS)(jnp.asarray(scores))
  for r in range(2):
    want = np.where(tables[r][task], scores[r], -np.inf)
    np.testing.assert_array_equal(np.asarray(both[r]), want)
    predicted = np.argmax(np.asarray(both[r]), -1)
    assert all(predicted[i] in classes[r][task[i]] for i in range(6))
  with pytest.raises(NameError):  # a table per replica, read outside the replicas' program
    task_il_scores(jnp.asarray(scores[0]), tables, jnp.asarray(task))
