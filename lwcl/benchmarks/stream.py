"""``bin/bench stream``: the streaming source's input pipeline against the train step, and a large set.

``bin/bench stream write --out=DIR [--copies=10] [--encoding=raw]`` writes Fashion-MNIST ``copies`` times
(copy k rolled k pixels right, so records differ) as ArrayRecord shards with ``features.json``: a generated
on-disk set ``copies`` times Fashion-MNIST's size, written in chunks (the writer never holds it whole).

``bin/bench stream throughput [--record_dir=DIR] [--batches=200] [--threads=2] [--set key=value ...]``
builds the default config's experiment (MLP 100-100 unless ``--set``) on the record folder and prints, as
JSON, examples per second of: the loader alone (grain over the files, task 1's epoch-0 batches), the
in-memory pipeline on the same examples (after reading them whole), the train step alone (one batch
reused, state donated), and loader and train step together (the experiment's loop without checkpoints).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def write_copies(out: str, copies: int, encoding: str, shards: int) -> dict:
  """Writes ``copies`` rolled copies of Fashion-MNIST's train and test splits to ``out``."""
  from lwcl.data import idx, records, sources  # pylint: disable=g-import-not-at-top
  src = sources.DEFAULT_IDX_DIRS["fashion_mnist"]
  train, test = idx.load_idx_split(src, "train"), idx.load_idx_split(src, "test")
  shifted = lambda x, k: np.roll(x, k, axis=2)
  from lwcl.data.lazy import channel_stats  # pylint: disable=g-import-not-at-top
  mean, std = channel_stats(train[0])  # rolling moves pixels, so every copy has the same statistics
  spec = records.FeatureSpec(train[0].shape[1:], encoding, 10, sources.FASHION_MNIST_CLASSES,
                             stats={"mean": list(mean), "std": list(std)})
  counts = {}
  for split, (x, y) in (("train", train), ("test", test)):
    chunks = ((shifted(x[s:s + 10000], k), y[s:s + 10000]) for k in range(copies) for s in range(0, len(y), 10000))
    counts[split] = records.write_split(out, split, chunks, spec, shards)
  records.write_features(out, spec)
  size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
  return {"out": out, "examples": counts, "bytes": size}


def _rate(n_examples: int, seconds: float) -> float:
  return round(n_examples / max(seconds, 1e-9), 1)


def throughput(record_dir: str, batches: int, threads: int, sets: list) -> dict:
  """Examples per second of the loader, the in-memory pipeline, the train step, and both together."""
  import jax  # pylint: disable=g-import-not-at-top

  from lwcl.config import files as config_files  # pylint: disable=g-import-not-at-top
  from lwcl.data import pipeline, stream_loader  # pylint: disable=g-import-not-at-top
  from lwcl.data.examples import Examples  # pylint: disable=g-import-not-at-top
  from lwcl.engine import experiment  # pylint: disable=g-import-not-at-top
  c = config_files.load(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "default.py")).get_config()
  c.model.name, c.train.progress, c.data.record_dir, c.data.stream.threads = "mlp", False, record_dir, threads
  for item in sets:
    key, _, text = item.partition("=")
    old = config_files.get_key(c, key)
    config_files.set_key(c, key, type(old)(text) if not isinstance(old, bool) else text == "True")
  c.lock()
  exp = experiment.Experiment(c)
  data, bs = exp.train_data[0], c.train.batch_size
  batches = min(batches, len(data) // bs)
  out = {"config": {"model": c.model.name, "batch_size": bs, "threads": threads,
                    "train_examples_task1": len(data)}}
  tic = time.perf_counter()
  it = stream_loader.train_batches(data, bs, c.seed, 0, 0)
  for _ in range(batches):
    next(it)
  out["loader_examples_per_s"] = _rate(batches * bs, time.perf_counter() - tic)
  rows = np.sort(pipeline.epoch_order(len(data), c.seed, 0, 0)[:batches * bs])
  whole = Examples(data.images[rows], data.labels[rows], data.tasks[rows])
  tic = time.perf_counter()
  for _, _ in zip(range(batches), pipeline.train_batches(whole, bs, c.seed, 0, 0)):
    pass
  out["in_memory_pipeline_examples_per_s"] = _rate(batches * bs, time.perf_counter() - tic)
  state = exp.parallel.replicate(exp.initial_state())
  lr = exp.setup.learning_rates_of_task(exp.steps_per_epoch[0])
  batch = next(stream_loader.train_batches(data, bs, c.seed, 0, 0))
  state, m = exp.train_step(state, exp.parallel.put_batch(batch), lr[0])  # compile
  jax.block_until_ready(m)
  tic = time.perf_counter()
  for s in range(batches):
    state, m = exp.train_step(state, exp.parallel.put_batch(batch), lr[s])
  jax.block_until_ready(m)
  out["train_step_examples_per_s"] = _rate(batches * bs, time.perf_counter() - tic)
  tic = time.perf_counter()
  for s, b in zip(range(batches), stream_loader.train_batches(data, bs, c.seed, 0, 1)):
    state, m = exp.train_step(state, exp.parallel.put_batch(b), lr[s])
  jax.block_until_ready(m)
  out["loader_and_step_examples_per_s"] = _rate(batches * bs, time.perf_counter() - tic)
  return out


def main(argv: list) -> None:
  parser = argparse.ArgumentParser(prog="bin/bench stream")
  parser.add_argument("what", choices=("write", "throughput"))
  parser.add_argument("--out", default="", help="write: the record folder to write (required)")
  parser.add_argument("--copies", type=int, default=10)
  parser.add_argument("--encoding", default="raw", choices=("raw", "png", "jpeg"))
  parser.add_argument("--shards", type=int, default=8, help="write: training shards, at least 1")
  parser.add_argument("--record_dir", default="")
  parser.add_argument("--batches", type=int, default=200)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--set", action="append", default=[])
  args = parser.parse_args(argv)
  if args.what == "write" and not args.out:
    parser.error("write needs --out=FOLDER (the record folder to write)")
  if args.what == "write" and (args.shards < 1 or args.copies < 1):
    parser.error(f"--shards={args.shards} --copies={args.copies}: both must be at least 1")
  if args.what == "write":
    from lwcl.data.shards import check_folder  # pylint: disable=g-import-not-at-top
    from lwcl.errors import LwclError, exit_with  # pylint: disable=g-import-not-at-top
    try:
      check_folder(args.out)  # before Fashion-MNIST is read
      print(json.dumps(write_copies(args.out, args.copies, args.encoding, args.shards)))
    except LwclError as e:  # --out a file, a full disk, too many shards open: one line
      exit_with(e)
  else:
    print(json.dumps(throughput(args.record_dir, args.batches, args.threads, args.set)))
