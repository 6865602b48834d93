"""Episodic memory (lwcl.methods.memory): ring buffers, masks, union sampling, inside jit."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl.methods import memory as memory_lib

from helpers import fresh_rng


def test_create_shapes_and_errors():
  m = memory_lib.create(4, 6, (5, 5, 1))
  assert m.images.shape == (4, 6, 5, 5, 1) and m.images.dtype == jnp.uint8
  assert m.labels.shape == (4, 6) and m.labels.dtype == jnp.int32
  assert m.count.shape == (4,) and not np.any(np.asarray(m.valid()))
  with pytest.raises(ValueError):
    memory_lib.create(0, 6, (5, 5, 1))
  with pytest.raises(ValueError):
    memory_lib.create(2, 0, (5, 5, 1))


@pytest.mark.parametrize("per_task,batch", [(7, 3), (6, 3), (4, 9), (5, 5)])
def test_ring_buffer_keeps_last_m_seen(per_task, batch):
  rng, seed = fresh_rng()
  add = jax.jit(memory_lib.add)
  m = memory_lib.create(3, per_task, (2, 2, 1))
  seen = {0: [], 1: [], 2: []}
  for step in range(7):
    task = int(rng.integers(0, 3))
    labels = rng.integers(0, 1000, batch).astype(np.int32)
    images = np.broadcast_to((labels % 256).astype(np.uint8)[:, None, None, None], (batch, 2, 2, 1))
    m = add(m, jnp.asarray(images), jnp.asarray(labels), jnp.int32(task))
    seen[task].extend(labels.tolist())
    for t in range(3):
      stored = np.asarray(m.labels[t])[np.asarray(m.valid()[t])]
      expect = seen[t][-per_task:]
      assert sorted(stored.tolist()) == sorted(expect), (seed, step, t)
      assert int(m.count[t]) == len(seen[t])
  # Images travel with their labels.
  np.testing.assert_array_equal(np.asarray(m.images)[..., 0, 0, 0], np.asarray(m.labels) % 256)


def test_old_tasks_and_task_batches():
  m = memory_lib.create(4, 3, (2, 2, 1))
  m = memory_lib.add(m, jnp.zeros((2, 2, 2, 1), jnp.uint8), jnp.array([1, 2], jnp.int32), 0)
  m = memory_lib.add(m, jnp.zeros((5, 2, 2, 1), jnp.uint8), jnp.arange(5, dtype=jnp.int32), 2)
  np.testing.assert_array_equal(memory_lib.old_tasks(m, 3), [True, False, True, False])
  np.testing.assert_array_equal(memory_lib.old_tasks(m, 1, num=3), [True, False, False])
  b = memory_lib.task_batches(m, 3)
  assert b["image"].shape == (3, 3, 2, 2, 1) and b["label"].shape == (3, 3)
  np.testing.assert_array_equal(b["task"], [[0] * 3, [1] * 3, [2] * 3])
  np.testing.assert_array_equal(b["mask"], [[1, 1, 0], [0, 0, 0], [1, 1, 1]])


def test_sample_union_uniform_without_replacement_over_old_tasks():
  rng, seed = fresh_rng()
  m = memory_lib.create(4, 5, (1, 1, 1))
  ids = 0
  for task, n in [(0, 3), (1, 5), (2, 4), (3, 5)]:
    labels = jnp.arange(ids, ids + n, dtype=jnp.int32)
    ids += n
    m = memory_lib.add(m, jnp.zeros((n, 1, 1, 1), jnp.uint8), labels, task)
  # Old tasks of task 3: slots 0, 1, 2 with 3 + 5 + 4 = 12 stored examples (labels 0..11).
  keys = jax.random.split(jax.random.PRNGKey(int(rng.integers(2**31))), 3000)
  sample = jax.jit(jax.vmap(lambda k: memory_lib.sample_union(m, k, jnp.int32(3), 4)))(keys)
  labels, mask = np.asarray(sample["label"]), np.asarray(sample["mask"])
  assert mask.all()
  assert labels.max() < 12, seed
  assert all(len(set(row)) == 4 for row in labels), seed
  np.testing.assert_array_equal(np.asarray(sample["task"]), np.searchsorted([3, 8, 12], labels, "right"))
  freq = np.bincount(labels.ravel(), minlength=12) / labels.size
  np.testing.assert_allclose(freq, 1 / 12, atol=0.012, err_msg=f"seed {seed}")

  # Fewer stored old examples than the batch: all of them, the rest masked out.
  small = memory_lib.sample_union(m, keys[0], jnp.int32(1), 6)
  assert sorted(np.asarray(small["label"])[np.asarray(small["mask"]) > 0].tolist()) == [0, 1, 2]
  assert np.asarray(small["mask"]).sum() == 3
  with pytest.raises(ValueError):
    memory_lib.sample_union(m, keys[0], 1, 21)


def test_memory_serializes_for_checkpoints():
  m = memory_lib.add(memory_lib.create(2, 3, (2, 2, 1)), jnp.ones((2, 2, 2, 1), jnp.uint8),
                     jnp.array([4, 5], jnp.int32), 1)
  state = flax.serialization.to_state_dict(m)
  assert set(state) == {"images", "labels", "count"}
  back = flax.serialization.from_state_dict(memory_lib.create(2, 3, (2, 2, 1)), state)
  for a, b in zip(jax.tree_util.tree_leaves(m), jax.tree_util.tree_leaves(back)):
    np.testing.assert_array_equal(a, b)
