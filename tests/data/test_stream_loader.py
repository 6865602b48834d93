"""lwcl.data.stream_loader: streamed tasks hold the in-memory examples; each process reads its shard."""


import chex
import jax
import numpy as np
import pytest

from lwcl.data import pipeline, sources, stream_loader
from lwcl.data.examples import Examples
from lwcl.data.lazy import LazyImages
from lwcl.data.pipeline import train_batches
from lwcl.data.scenarios import build_scenario

from helpers import small_config


@pytest.mark.parametrize("kind", ["split", "permuted", "rotated"])
def test_scenario_tasks_hold_the_same_examples(folders, kind):
  mem = sources.load_dataset(small_config(**{"data.idx_dir": folders["idx"]}).data)
  disk = sources.load_dataset(small_config(**{"data.record_dir": folders["records"]}).data)
  cfg = small_config(**{"scenario.kind": kind}).scenario
  for a, b in zip(build_scenario(cfg, mem).tasks, build_scenario(cfg, disk).tasks):
    for split in ("train", "valid", "test"):
      ea, eb = getattr(a, split), getattr(b, split)
      np.testing.assert_array_equal(ea.labels, eb.labels)
      np.testing.assert_array_equal(ea.images, eb.images[:])
    batches = zip(train_batches(a.train, 20, 0, 1, 0), stream_loader.train_batches(b.train, 20, 0, 1, 0))
    for ba, bb in batches:
      chex.assert_trees_all_equal(ba, bb)


def test_each_process_reads_a_disjoint_shard_of_the_global_batch(folders, monkeypatch):
  disk = sources.load_dataset(small_config(**{"data.record_dir": folders["records"]}).data)
  data = Examples.of_task(disk.train_images, disk.train_labels, 0)
  whole = next(iter(stream_loader.stream_batches(data, 20, 0, 0, 0)))
  read, parts = [[], []], []

  class Spy:  # records the rows one process asks the reader for
    def __init__(self, reader, log):
      self.reader, self.log = reader, log
      self.image_shape, self.num_examples = reader.image_shape, reader.num_examples

    def read_images(self, indices, augment=None):
      self.log.append(indices.copy())
      return self.reader.read_images(indices, augment)

  for p in range(2):
    monkeypatch.setattr(jax, "process_index", lambda p=p: p)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    spied = Examples(LazyImages([s.__class__(Spy(s.reader, read[p]), s.indices, s.transform)
                                 for s in disk.train_images.segments]), data.labels, data.tasks)
    parts.append(next(iter(stream_loader.stream_batches(spied, 20, 0, 0, 0))))
  # grain reads ahead, so a process may have read more batches than the first: every row it read is one
  # of its half-batches' rows, and it read its half of the first batch.
  order = pipeline.epoch_order(len(data), 0, 0, 0)
  halves = [set(), set()]
  for b in range(len(data) // 20):
    batch = np.sort(order[b * 20:(b + 1) * 20])
    halves[0].update(batch[:10].tolist())
    halves[1].update(batch[10:].tolist())
  first = np.sort(order[:20])
  for p in range(2):
    mine = set(np.concatenate(read[p]).tolist())
    assert mine <= halves[p] and set(first[10 * p:10 * (p + 1)].tolist()) <= mine
  assert not halves[0] & halves[1]
  np.testing.assert_array_equal(parts[0]["image"][:10], whole["image"][:10])
  np.testing.assert_array_equal(parts[1]["image"][10:], whole["image"][10:])
  np.testing.assert_array_equal(parts[1]["label"], whole["label"])


def test_each_process_reads_its_rows_of_the_evaluation_batches(folders, monkeypatch):
  disk = sources.load_dataset(small_config(**{"data.record_dir": folders["records"]}).data)
  images, labels = disk.test_images.view(np.arange(50)), disk.test_labels[:50]
  whole = list(pipeline.eval_batches(images, labels, 0, 32))
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  for p in range(2):
    monkeypatch.setattr(jax, "process_index", lambda p=p: p)
    for got, want in zip(pipeline.eval_batches(images, labels, 0, 32), whole):
      rows = slice(16 * p, 16 * (p + 1))
      np.testing.assert_array_equal(got["image"][rows], want["image"][rows])
      assert not got["image"][slice(16 * (1 - p), 16 * (2 - p))].any()
      chex.assert_trees_all_equal({k: v for k, v in got.items() if k != "image"},
                                  {k: v for k, v in want.items() if k != "image"})
