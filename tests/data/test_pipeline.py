"""lwcl.data.pipeline: epoch order, evaluation batches, preprocessing, channel moments and the steps of
one dispatch."""



import chex
import jax
import numpy as np
import pytest

from lwcl.data import pipeline
from lwcl.data.pipeline import channel_moments, dispatch_lengths, epoch_order, step_indices, train_batches
from lwcl.errors import DataError


def test_epoch_order_is_deterministic_and_resumable():
  data = pipeline.Examples(np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1), np.arange(50, dtype=np.int32),
                           np.zeros(50, np.int32))
  full = [b["label"] for b in pipeline.train_batches(data, 8, seed=1, task=0, epoch=2)]
  assert len(full) == 6  # last partial batch dropped
  resumed = [b["label"] for b in pipeline.train_batches(data, 8, seed=1, task=0, epoch=2, start=4)]
  np.testing.assert_array_equal(np.stack(full[4:]), np.stack(resumed))
  other = [b["label"] for b in pipeline.train_batches(data, 8, seed=1, task=0, epoch=3)]
  assert not np.array_equal(np.stack(full), np.stack(other))
  with pytest.raises(DataError, match="batch_size"):
    pipeline.steps_per_epoch(5, 8)


def test_eval_batches_pad_with_zero_mask():
  x = np.ones((7, 2, 2, 1), np.uint8)
  batches = list(pipeline.eval_batches(x, np.arange(7, dtype=np.int32), task=3, batch_size=4))
  assert len(batches) == 2
  np.testing.assert_array_equal(batches[1]["mask"], [1, 1, 1, 0])
  assert (batches[1]["task"] == 3).all()


def test_preprocessor_normalizes_and_augments():
  pre = pipeline.Preprocessor((0.5,), (0.25,), random_crop=True, crop_padding=2, horizontal_flip=True)
  images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)
  plain = pre(images)
  np.testing.assert_allclose(plain, (images / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)
  aug = pre(images, jax.random.PRNGKey(0))
  chex.assert_shape(aug, (16, 8, 8, 1))
  assert not np.allclose(aug, plain)
  np.testing.assert_array_equal(aug, pre(images, jax.random.PRNGKey(0)))  # deterministic per key


def test_channel_moments_are_numpys_mean_and_std():
  rng = np.random.default_rng(0)
  for images in (rng.integers(0, 256, (50, 9, 7, 3), dtype=np.uint8), np.zeros((4, 2, 2, 1), np.uint8),
                 rng.integers(0, 256, (30, 5, 5, 1)).astype(np.float32)):
    mean, std = channel_moments(images)
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-12, atol=1e-15)


def test_step_indices_are_the_batches_of_train_batches():
  n, bs, seed, task = 103, 10, 3, 1
  spe = n // bs
  want = [b["label"] for e in range(3)
          for b in train_batches(_indexed(n, task), bs, seed, task, e)]
  got = step_indices(n, bs, seed, task, spe, first=7, count=15, rows=16)
  chex.assert_shape(got, (16, bs))
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got[:15], np.stack(want[7:22]))
  np.testing.assert_array_equal(got[15], 0)  # padding row
  np.testing.assert_array_equal(got[3], np.sort(epoch_order(n, seed, task, 1)[0:bs]))  # step 10 = epoch 1
  with pytest.raises(ValueError):
    step_indices(n, bs, seed, task, spe, first=0, count=5, rows=4)


def _indexed(n, task):
  """Examples whose label is their own index (so a batch's labels are its indices)."""
  from lwcl.data.examples import Examples
  return Examples(np.zeros((n, 1, 1, 1), np.uint8), np.arange(n, dtype=np.int32),
                  np.full(n, task, np.int32))


def test_dispatch_lengths_end_at_boundaries_and_cover_every_step():
  assert dispatch_lengths(0, 10, 4, lambda s: False) == [(0, 4), (4, 4), (8, 2)]
  assert dispatch_lengths(3, 10, 4, lambda s: s in (4, 5)) == [(3, 2), (5, 1), (6, 4)]
  assert dispatch_lengths(0, 5, 8, lambda s: s < 2) == [(0, 1), (1, 1), (2, 3)]
  assert dispatch_lengths(5, 5, 4, lambda s: False) == []
