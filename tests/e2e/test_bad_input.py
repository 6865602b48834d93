"""Hostile inputs and faults a new user meets (issue 16, B-D), through the real entry points.

Every case ends in one ``error: <problem>; <fix>`` line and exit status 2 (Ctrl-C: one ``stopped:`` line
and 130), and leaves the workdir as it found it: a refused run creates no workdir, overwrites and deletes
nothing, and writes no TensorBoard file. The cases refused before training run as concurrent
subprocesses (each costs about an import of JAX).
"""

import ast
import concurrent.futures
import glob
import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lwcl.data import records, shards
from lwcl.data.synthetic import write_idx
from lwcl.io import lock as workdir_lock

from helpers import (
  LOCK_AND_SLEEP,
  ROOT,
  TESTS,
  TINY_CONFIG_FILE,
  assert_one_line_error,
  assert_same_stream,
  cli,
  load_results,
  snapshot,
)

# The tiny run T (flags after --config and --workdir).
T = ["--config.scenario.num_tasks=2", "--config.scenario.samples_per_task=256",
     "--config.train.epochs_per_task=1", "--config.train.progress=False"]


DEFAULT = f"--config={ROOT}/configs/default.py"
ADDRESS_SPACE_CAP = 8 << 30  # a case's process: JAX and a tiny run need under 8 GiB of address space


def write_results(content):
  def setup(workdir):
    os.makedirs(workdir)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      f.write(content)
  return setup


def write_file(workdir):
  with open(workdir, "w") as f:
    f.write("not a folder\n")


def stale_shards(workdir):
  """A record folder (DATADIR) written with 2 training shards, then again with 1: the 2 left beside it."""
  d = os.path.join(os.path.dirname(workdir), "data")
  spec = records.FeatureSpec((4, 4, 1), "raw", 10)
  x, y = np.zeros((40, 4, 4, 1), np.uint8), np.arange(40) % 10
  for split, count in (("train", 2), ("test", 1), ("train", 1)):
    records.write_split(d, split, [(x, y)], spec, count)


def record_folder(shape=(4, 4, 1), features=None, tamper=None):
  """A set-up writing a record folder (DATADIR: 40 training, 20 test examples of ``shape``, one shard each)
  whose features.json then holds ``features`` (a JSON text, without a manifest) when given: the shards
  written by lwcl, the spec edited by hand; ``tamper(folder)`` then changes it."""
  def setup(workdir):
    d = os.path.join(os.path.dirname(workdir), "data")
    spec = records.FeatureSpec(shape, "raw", 10)
    for split, n in (("train", 40), ("test", 20)):
      x = np.random.default_rng(n).integers(0, 256, (n, *shape), np.uint8)
      records.write_split(d, split, [(x, np.arange(n) % 10)], spec)
    if features is not None:
      with open(os.path.join(d, records.FEATURES_FILE), "w") as f:
        f.write(features)
    if tamper is not None:
      tamper(d)
  return setup


def edit_features(d, edit):
  """``edit`` applied to d/features.json, which is then written as lwcl would (its digest recomputed)."""
  with open(os.path.join(d, records.FEATURES_FILE)) as f:
    body = json.load(f)
  edit(body)
  body.pop("sha256", None)
  shards.write_features_file(d, body)


TRAIN_SHARD = "train.array_record-00000-of-00001"


def garbage_labels(d):
  """The training shard's labels file replaced by garbage, and its digest in the manifest with it (the
  manifest recomputed: what only its digests would have caught)."""
  side = os.path.join(d, TRAIN_SHARD + records.LABELS_SUFFIX)
  with open(side, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00garbage")
  edit_features(d, lambda j: j["splits"]["train"]["shards"][0].update(labels_sha256=shards.file_digest(side)[1]))


def unlisted(damage):
  """features.json without its manifest (as an older lwcl wrote it), then ``damage`` to the training
  shard (a file opened r+b): nothing recorded to check it by."""
  def tamper(d):
    edit_features(d, lambda j: j.pop("splits"))
    with open(os.path.join(d, TRAIN_SHARD), "r+b") as f:
      damage(f)
  return tamper


def flip_records(f):  # 16 bytes inside the records (the tiny shard's records fill its first 2 KB)
  f.seek(1024)
  data = f.read(16)
  f.seek(1024)
  f.write(bytes(b ^ 0xFF for b in data))


def orders_results(edit=None, text=None):
  """A set-up writing DATADIR/results.json: a finished num_orders run's results (2 orders of 2 tasks),
  changed by ``edit`` (a function of the dict), or ``text`` instead (None: no file, an empty DATADIR)."""
  def setup(workdir):
    d = os.path.join(os.path.dirname(workdir), "data")
    os.makedirs(d)
    orders = [{"order": r, "tasks": names, "acc": 0.7, "accuracy_matrix": [[0.9, 0.1], [0.6, 0.8]]}
              for r, names in enumerate((["a", "b"], ["b", "a"]))]
    results = {"kind": "orders", "method": "ewc", "orders": orders, "config": {"method": {"strength": 1.0}}}
    if edit is not None:
      edit(results)
    if text is not None or edit is not None:
      with open(os.path.join(d, "results.json"), "w") as f:
        f.write(json.dumps(results) if text is None else text)
  return setup


def float_idx_images(workdir):
  """An IDX folder (DATADIR) whose training images are float32 in [0, 1] (type 0x0D)."""
  d = os.path.join(os.path.dirname(workdir), "data")
  os.makedirs(d)
  for split, n in (("train", 40), ("t10k", 20)):
    labels = (np.arange(n) % 10).astype(np.uint8)
    write_idx(os.path.join(d, f"{split}-labels-idx1-ubyte"), labels)
    write_idx(os.path.join(d, f"{split}-images-idx3-ubyte"), np.zeros((n, 4, 4), np.uint8))
  x = np.full((40, 4, 4), 0.5, ">f4")
  with open(os.path.join(d, "train-images-idx3-ubyte"), "wb") as f:
    f.write(bytes([0, 0, 0x0D, 3]) + b"".join(v.to_bytes(4, "big") for v in x.shape) + x.tobytes())


def plant_links(workdir):
  """Links at the lock file and at the heatmap's former temporary name, to a file beside the workdir (a
  run must leave it as it is: issue 32)."""
  os.makedirs(workdir)
  target = os.path.join(os.path.dirname(workdir), "target.txt")
  with open(target, "w") as f:
    f.write("kept\n")
  os.symlink(target, os.path.join(workdir, workdir_lock.LOCK_FILE))
  os.symlink(target, os.path.join(workdir, "accuracy_matrix.png.tmp.png"))


def checkpoints_file(workdir):
  """A file where the run keeps its checkpoints folder (issue 32: it failed after task 1's training)."""
  os.makedirs(workdir)
  with open(os.path.join(workdir, "checkpoints"), "w") as f:
    f.write("not a folder\n")


def tiny_config_and_file(workdir):
  """tiny.py beside a file at WORKDIR (bin/compare --out a file)."""
  tiny_config(workdir)
  write_file(workdir)


def exiting_config(workdir):
  """A config file (the case's tiny.py) that ends the process with status 0 while it loads (issue 32)."""
  with open(os.path.join(os.path.dirname(workdir), "tiny.py"), "w") as f:
    f.write("import sys\nsys.exit(0)\n")


def partial_config(workdir):
  """A config file (the case's tiny.py) that builds a config of one key, not from configs/default.py."""
  with open(os.path.join(os.path.dirname(workdir), "tiny.py"), "w") as f:
    f.write("import ml_collections\ndef get_config():\n  c = ml_collections.ConfigDict()\n  c.seed = 0\n"
            "  return c\n")


def big_labels(workdir):
  """An IDX folder (DATADIR) of 8 x 8 images whose int32 labels (type 0x0C) are classes 0-9 and one label
  2**31 - 2 (issue 32: the process grew to 23 GB counting the classes below it)."""
  d = os.path.join(os.path.dirname(workdir), "data")
  os.makedirs(d)
  for split, n in (("train", 60), ("t10k", 20)):
    write_idx(os.path.join(d, f"{split}-images-idx3-ubyte"), np.zeros((n, 8, 8), np.uint8))
    y = (np.arange(n) % 10).astype(">i4")
    y[-1] = 2**31 - 2
    with open(os.path.join(d, f"{split}-labels-idx1-ubyte"), "wb") as f:
      f.write(bytes([0, 0, 0x0C, 1]) + n.to_bytes(4, "big") + y.tobytes())


def tiny_config(workdir):
  with open(os.path.join(os.path.dirname(workdir), "tiny.py"), "w") as f:
    f.write(TINY_CONFIG_FILE.format(tests=TESTS))


# id: (entry point arguments; WORKDIR and TINY stand for the case's workdir and tiny.py), fragments of the
# error line, set-up of the workdir before the run (None: no workdir)[, environment variables].
CASES = {
    "B6 --config file missing": (["--config=nope.py", "--workdir=WORKDIR"],
                                 ["config file nope.py not found", "--config=configs/default.py"], None),
    "B7 model.hidden=(0,)": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.model.name=mlp",
                              "--config.model.hidden=(0,)"], ["model.hidden=(0,)", "at least 1", "(256,256)"],
                             None),
    "B8 results.json without a config": ([DEFAULT, "--workdir=WORKDIR", *T],
                                         ["results.json is incomplete", "move it away"],
                                         write_results('{"config": {}}')),
    "B8 results.json without results": ([DEFAULT, "--workdir=WORKDIR", *T], ["incomplete", "'method'"],
                                        write_results('{"config": {"seed": 0}}')),
    "B10 default.py takes no argument": ([f"{DEFAULT}:foo", "--workdir=WORKDIR"],
                                         ["takes no argument", "':foo'", "pass --config="], None),
    "B10 bad config argument": ([f"--config={ROOT}/configs/layerwise_fmnist.py:resnet21,sideways",
                                 "--workdir=WORKDIR"],
                                ["name exactly one mode of backprop, local, greedy", "argument after ':'"], None),
    "C12 compare: bad method in the second config": (
        ["-m", "lwcl.cli.compare", "--out=WORKDIR", "TINY:finetune", "TINY:ewcc"],
        ["tiny.py:ewcc", "unknown method.name 'ewcc'", "use one of"], tiny_config),
    "C12 compare: bad model.hidden in the second config": (
        ["-m", "lwcl.cli.compare", "--out=WORKDIR", "TINY:finetune", "TINY:joint/a,b"],
        ["tiny.py:joint/a,b", "model.hidden=('a', 'b')", "'a' is not an integer"], tiny_config),
    "C12 compare: bad --set value": (["-m", "lwcl.cli.compare", "--out=WORKDIR", "--set",
                                      "train.epochs_per_task=abc", "TINY:finetune"],
                                     ["train.epochs_per_task=abc", "not an integer", "--set "], tiny_config),
    "C14 learning_rate=nan": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.optimizer.learning_rate=nan"],
                              ["optimizer.learning_rate=nan", "not a finite number"], None),
    "C14 learning_rate=inf": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.optimizer.learning_rate=inf"],
                              ["optimizer.learning_rate=inf", "not a finite number"], None),
    "C15 unknown key": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.train.epochs=1"],
                        ["unknown config key train.epochs", "did you mean train.epochs_per_task"], None),
    "C15 unknown section": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.trian.epochs_per_task=1"],
                            ["unknown config key trian.epochs_per_task", "did you mean train.epochs_per_task"],
                            None),
    "C16 workdir is a file": ([DEFAULT, "--workdir=WORKDIR", *T], ["is a file, not a folder"], write_file),
    "D18 sweep.key with num_orders": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.sweep.key=method.strength",
                                       "--config.sweep.candidates=(1.,10.)",
                                       "--config.scenario.validation_fraction=0.1", "--config.num_orders=2"],
                                      ["sweep.key cannot be combined with num_orders"], None),
    "D19 samples_per_task=-5": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.scenario.samples_per_task=-5"],
                                ["scenario.samples_per_task=-5", "at least 0"], None),
    "D19 classes_per_task=-1": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.scenario.classes_per_task=-1"],
                                ["scenario.classes_per_task=-1", "at least 0"], None),
    "D19 num_orders=-2": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.num_orders=-2"],
                          ["num_orders=-2", "at least 0"], None),
    "Also num_tasks=0": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.scenario.num_tasks=0"],
                         ["scenario.num_tasks=0", "at least 1"], None),
    "Also validation_fraction=1.0": ([DEFAULT, "--workdir=WORKDIR", *T,
                                      "--config.scenario.validation_fraction=1.0"],
                                     ["scenario.validation_fraction=1.0", "[0, 1)"], None),
    "Data: stale shards of an earlier write": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.data.record_dir=DATADIR"],
                                               ["train.array_record-00000-of-00002 is not one of the 1 shards",
                                                "stale", "delete them"], stale_shards),
    "Data: float32 IDX images": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.data.source=idx",
                                  "--config.data.idx_dir=DATADIR"],
                                 ["holds float32 images, lwcl reads uint8", "np.round(x * 255)"], float_idx_images),
    "Data: an image shape the model cannot take": ([DEFAULT, "--workdir=WORKDIR", *T,
                                                    "--config.data.record_dir=DATADIR"],
                                                   ["model.name=convnet cannot take images of shape [64, 1, 1]",
                                                    "ZeroDivisionError", "features.json: image.shape"],
                                                   record_folder((64, 1, 1))),
    "Data: data.image_size=1": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.data.record_dir=DATADIR",
                                 "--config.data.image_size=1"],
                                ["cannot take images of shape [1, 1, 1]", "a larger --config.data.image_size"],
                                record_folder()),
    "Data: features.json image.shape of 10**400": (
        [DEFAULT, "--workdir=WORKDIR", *T, "--config.data.record_dir=DATADIR"],
        ["features.json: image.shape [1000000000", "needs over 2147483648 bytes an image"],
        record_folder(features='{"image": {"shape": [1%s, 4, 1]}, "label": {"num_classes": 10}}' % ("0" * 400))),
    "Data: features.json image.shape of 10**12 pixels": (
        [DEFAULT, "--workdir=WORKDIR", *T, "--config.data.record_dir=DATADIR"],
        ["image.shape [1000000, 1000000, 1] needs over"],
        record_folder(features='{"image": {"shape": [1000000, 1000000, 1]}, "label": {"num_classes": 10}}')),
    "Data: 16 channels resized by data.image_size": (
        [DEFAULT, "--workdir=WORKDIR", *T, "--config.data.record_dir=DATADIR", "--config.data.image_size=8"],
        ["have 16 channels", "1 to 4 channels only", "--config.data.image_size=0"], record_folder((2, 2, 16))),
    "Data: a TFDS data set not prepared (tensorflow's start-up lines)": (
        [DEFAULT, "--workdir=WORKDIR", *T, "--config.data.source=tfds_stream", "--config.data.name=mnist",
         "--config.data.data_dir=DATADIR"], ["TFDS data set 'mnist' is not prepared in", "tfds build mnist"],
        lambda workdir: os.makedirs(os.path.join(os.path.dirname(workdir), "data", "mnist", "3.0.1"))),
    "Studies: order_spread on a run whose orders are empty": (
        ["-m", "lwcl.studies.order_spread", "--out=WORKDIR", "DATADIR"],
        ["results.json: orders is [], not a non-empty list", "finished num_orders run"],
        orders_results(lambda r: r.update(orders=[]))),
    "Studies: order_spread on acc null": (["-m", "lwcl.studies.order_spread", "--out=WORKDIR", "DATADIR"],
                                          ["results.json: orders.1.acc is null, not a finite number"],
                                          orders_results(lambda r: r["orders"][1].update(acc=None))),
    "Studies: order_spread without results.json": (["-m", "lwcl.studies.order_spread", "--out=WORKDIR",
                                                    "DATADIR"], ["results.json not found", "--config.num_orders"],
                                                   orders_results()),
    "Studies: order_spread on results.json not JSON": (
        ["-m", "lwcl.studies.order_spread", "--out=WORKDIR", "DATADIR"],
        ["results.json is not valid JSON (Expecting"], orders_results(text='{"orders": [')),
    "Studies: order_spread on results.json a list": (
        ["-m", "lwcl.studies.order_spread", "--out=WORKDIR", "DATADIR"],
        ["results.json holds a JSON list, not a run's results object"], orders_results(text="[1, 2]")),
    "Studies: order_spread --resamples=0": (["-m", "lwcl.studies.order_spread", "--out=WORKDIR", "DATADIR",
                                             "--resamples=0"], ["--resamples=0 must be at least 1"],
                                            orders_results(lambda r: None)),
    "Data: bench stream write --out a file": (["-m", "lwcl.benchmarks", "stream", "write", "--out=WORKDIR",
                                               "--copies=1"], ["WORKDIR is a file, not a folder"], write_file),
    "Data: a garbage labels file, its digest recomputed": (
        [DEFAULT, "--workdir=WORKDIR", *T, "--config.data.record_dir=DATADIR"],
        [f"{TRAIN_SHARD}.labels.npy is not a NumPy labels file", "delete it"],
        record_folder(tamper=garbage_labels)),
    "Data: a shard truncated, no manifest": (
        [DEFAULT, "--workdir=WORKDIR", *T, "--config.data.record_dir=DATADIR"],
        [f"{TRAIN_SHARD} holds 0 records, its labels file 40", "restore it"],
        record_folder(tamper=unlisted(lambda f: f.truncate(f.seek(0, 2) // 2)))),
    "Data: bytes flipped in a shard, no manifest": (
        [DEFAULT, "--workdir=WORKDIR", *T, "--config.data.record_dir=DATADIR"],
        ["cannot read records of", TRAIN_SHARD, "Corrupted Riegeli/records file", "restore it"],
        record_folder(tamper=unlisted(flip_records))),
    "Data: features.json a JSON list": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.data.record_dir=DATADIR"],
                                        ["features.json holds a JSON list, not an object"],
                                        record_folder(features="[28, 28, 1]")),
    "Also a config file that calls sys.exit(0)": (["--config=TINY", "--workdir=WORKDIR"],
                                                  ["does not load (it called sys.exit(0) while loading)"],
                                                  exiting_config),
    "Also a partial config file": (["--config=TINY", "--workdir=WORKDIR", *T],
                                   ["the config lacks checkpoint, data, devices and", "start the config from the "
                                    "default one"], partial_config),
    "Also optimizer.momentum=-5": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.optimizer.momentum=-5."],
                                   ["optimizer.momentum=-5.0", "must be in [0, 1)"], None),
    "Also a link at the lock file": ([DEFAULT, "--workdir=WORKDIR", *T],
                                     ["WORKDIR/.lwcl.lock is a symbolic link", "remove the link"], plant_links),
    "D seed=2**32 (its PRNG key is seed 0's)": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.seed=4294967296"],
                                                ["seed=4294967296", "[0, 4294967296)"], None),
    "D seeds past 2**32 - 1 as replicas": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.seed=4294967290",
                                            "--config.num_seeds=7"], ["seeds 4294967290..4294967296",
                                                                      "give a smaller --config.seed"], None),
    "D JAX_PLATFORMS=cuda without CUDA": ([DEFAULT, "--workdir=WORKDIR", *T],
                                          ["JAX_PLATFORMS='cuda'", "unset JAX_PLATFORMS"], None,
                                          {"JAX_PLATFORMS": "cuda"}),
    "C a value of lwcl's XLA flag that XLA aborts on": ([DEFAULT, "--workdir=WORKDIR", *T],
                                                        ["xla_cpu_experimental_ynn_fusion_type=bogus",
                                                         "XLA would abort on it"], None,
                                                        {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=bogus"}),
    "D compare: --out is a file": (["-m", "lwcl.cli.compare", "--out=WORKDIR", "TINY:finetune"],
                                   ["WORKDIR is a file, not a folder"], tiny_config_and_file),
    "D checkpoints is a file": ([DEFAULT, "--workdir=WORKDIR", *T],
                                ["WORKDIR/checkpoints is a file, not a folder", "move the file away"],
                                checkpoints_file),
    "C data.stream.workers above the CPUs": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.data.record_dir=DATADIR",
                                              "--config.data.stream.workers=4096"],
                                             ["data.stream.workers=4096 is more than the", "CPUs this process may use",
                                              "set --config.data.stream.workers="], None),
    "E int32 labels near 2**31": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.data.source=idx",
                                   "--config.data.name=mine", "--config.data.idx_dir=DATADIR"],
                                  ["leave 2147483636 of 2147483647 classes without an example",
                                   "the largest label is 2147483646, and 11 distinct labels occur"], big_labels),
    # What cannot fit in memory (issue 32: silent for 90 s, or a 730 GiB allocation after task 1), said before
    # it is allocated; every estimate is terabytes, above any machine that runs the suite.
    "E num_tasks=10**6 permuted tasks": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.scenario.kind=permuted",
                                          "--config.scenario.num_tasks=1000000"],
                                         ["scenario.num_tasks=1000000 permuted tasks", "would take at least",
                                          "TiB of memory", "lower --config.scenario.num_tasks"], None),
    "E num_seeds=10**6": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.num_seeds=1000000"],
                          ["1000000 replicas (num_seeds=1000000)", "would take at least",
                           "lower --config.num_seeds"], None),
    "E num_seeds=10**6 of a 4096-4096 MLP at batch 1 (their states)": (
        [DEFAULT, "--workdir=WORKDIR", *T, "--config.num_seeds=1000000", "--config.train.batch_size=1",
         "--config.model.name=mlp", "--config.model.hidden=(4096,4096)"],
        ["1000000 replicas (num_seeds=1000000) of", "MiB of state and a", "TiB of memory", "replicas fit"], None),
    "E eval_batch_size=10**9": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.train.eval_batch_size=1000000000"],
                                ["train.eval_batch_size=1000000000: one evaluation batch", "TiB of memory",
                                 "lower --config.train.eval_batch_size"], None),
    "E an MLP of 10**6 x 10**6": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.model.name=mlp",
                                   "--config.model.hidden=(1000000,1000000)"],
                                  ["the model's state", "TiB of memory", "shrink the model"], None),
    "Also missing data after the lock": ([DEFAULT, "--workdir=WORKDIR", *T, "--config.data.source=idx",
                                          "--config.data.idx_dir=/nonexistent/idx"], ["not found"], None),
}


def outputs(workdir):
  """What ``workdir`` holds: None when missing, a file's modification time, else the modification time of
  each file but the lock file (which a run rewrites, refused or not)."""
  if not os.path.exists(workdir):
    return None
  if not os.path.isdir(workdir):
    return os.stat(workdir).st_mtime_ns
  return {k: v for k, v in snapshot(workdir).items() if k != workdir_lock.LOCK_FILE}


def _run_case(tmp, name):
  argv, _, setup, *env = CASES[name]
  case_dir = os.path.join(tmp, "".join(c if c.isalnum() else "_" for c in name))
  os.makedirs(case_dir)
  workdir = os.path.join(case_dir, "w")
  if setup is not None:
    setup(workdir)
  before = outputs(workdir)
  argv = [a.replace("WORKDIR", workdir).replace("TINY", os.path.join(case_dir, "tiny.py"))
          .replace("DATADIR", os.path.join(case_dir, "data")) for a in argv]
  if argv[0] != "-m":
    argv = ["-m", "lwcl.main", *argv]
  proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, timeout=600,
                        env=dict(os.environ, **env[0]) if env else None, preexec_fn=_cap_address_space)
  return proc, workdir, before


def _cap_address_space():
  """No case may take the machine's memory, even where a regression would try (the cases of what cannot fit
  ask for terabytes): an allocation past the cap fails in the case's own process."""
  resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))


@pytest.fixture(scope="module")
def case_results(tmp_path_factory):
  """Every case of :data:`CASES`, run as concurrent subprocesses: ``{name: (proc, workdir, snapshot)}``."""
  tmp = str(tmp_path_factory.mktemp("hostile"))
  with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
    futures = {name: pool.submit(_run_case, tmp, name) for name in CASES}
    return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_refused_before_training_with_one_line_and_nothing_written(case_results, name):
  proc, workdir, before = case_results[name]
  line = assert_one_line_error(proc, *(f.replace("WORKDIR", workdir) for f in CASES[name][1]))
  assert proc.stderr.strip() == line, proc.stderr[-3000:]  # nothing else: no warning, no library's chatter
  assert "; " in line and "\\'" not in line and "\\n" not in line and "Traceback" not in line, line
  if before is None:
    assert not os.path.exists(workdir), os.listdir(workdir)  # not even the lock file's folder
  else:  # nothing added (no TensorBoard file), changed or removed
    assert outputs(workdir) == before
  target = os.path.join(os.path.dirname(workdir), "target.txt")
  if os.path.exists(target):  # the target of a planted link: untouched
    with open(target) as f:
      assert f.read() == "kept\n"


def test_help_exits_0():
  proc = subprocess.run([sys.executable, "-m", "lwcl.main", "--help"], capture_output=True, text=True, cwd=ROOT,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "--workdir" in proc.stdout + proc.stderr


def test_every_error_message_names_a_fix():
  """Every message of an lwcl error raised with literal text has the ``; <fix>`` part (static scan)."""
  user_errors = {"LwclError", "ConfigError", "DataError", "CheckpointError", "DivergenceError",
                 "WorkdirLockedError", "Interrupted"}
  bad = []
  for path in sorted(glob.glob(os.path.join(ROOT, "lwcl", "**", "*.py"), recursive=True)):
    with open(path) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args):
        continue
      name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
      texts = [c.value for c in ast.walk(node.exc.args[0]) if isinstance(c, ast.Constant)
               and isinstance(c.value, str)]
      passed_on = not any(c.isalpha() for t in texts for c in t)  # f"{spec}: {e}": e has its fix
      if name in user_errors and texts and not passed_on and not any(";" in t for t in texts):
        bad.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}: {''.join(texts)[:80]}")
  assert not bad, bad


def test_a_run_inside_a_running_study_is_refused(tmp_path):
  study = str(tmp_path / "study")
  holder = subprocess.Popen([sys.executable, "-c", LOCK_AND_SLEEP, study], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    before = snapshot(study)
    proc = cli(os.path.join(study, "order0"))
    assert_one_line_error(proc, "inside", study, f"pid {holder.pid}", "outside it")
    for sub in ("seed0", os.path.join("sweep", "10")):
      with pytest.raises(workdir_lock.WorkdirLockedError, match="inside"):
        with workdir_lock.hold(os.path.join(study, sub)):
          pass
    assert snapshot(study) == before and os.listdir(study) == [workdir_lock.LOCK_FILE]
  finally:
    holder.kill()
    holder.wait()
  with workdir_lock.hold(os.path.join(study, "order0")):  # the study has ended: its folders are free
    pass


# Checkpoints at steps 4, 8, ..., and task ends (10 steps per task): a fault after global step 17 (task 2,
# step 7) leaves checkpoints 12 and 16; a rerun resumes at task 2, step 6.
FAULT_RUN = ["--config.checkpoint.every_steps=4"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The results of the fault runs' config run without a fault."""
  workdir = str(tmp_path_factory.mktemp("reference") / "w")
  proc = cli(workdir, *FAULT_RUN)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return workdir


def test_results_json_has_the_mode_of_the_other_outputs(reference):
  mode = lambda name: os.stat(os.path.join(reference, name)).st_mode & 0o777  # noqa: E731
  assert mode("results.json") == mode("accuracy_matrix.png")


def test_ctrl_c_mid_task_stops_with_one_line_and_a_rerun_resumes(tmp_path, reference):
  workdir = str(tmp_path / "w")
  proc = cli(workdir, *FAULT_RUN, kill_after_step="17:INT")
  assert proc.returncode == 130, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  last = proc.stderr.rstrip().splitlines()[-1]
  assert last.startswith("stopped: interrupted (Ctrl-C) in task 2 of 3 after step 7 of the task"), last
  assert "rerun the same command to resume from its last checkpoint (task 2, step 6 of the task)" in last
  assert not [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["12", "16"]
  # A refused run (another experiment's checkpoint) adds no TensorBoard file, and changes nothing.
  before = outputs(workdir)
  assert_one_line_error(cli(workdir, *FAULT_RUN, "--config.optimizer.learning_rate=0.5"),
                        "different experiment")
  assert outputs(workdir) == before
  proc = cli(workdir, *FAULT_RUN)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "resuming from checkpoint at task 2, step 6" in proc.stdout
  assert_same_stream(load_results(workdir), load_results(reference))


@pytest.mark.parametrize("delay", [1.0, 2.0, 3.5, 5.0])  # from 1 s: before ~0.5 s Python itself is starting
def test_ctrl_c_during_start_up_stops_with_one_line(tmp_path, delay):
  # Issue 32: Ctrl-C in the first seconds (imports, XLA compiling, a gc callback) ended in a traceback, a
  # segmentation fault, an abort, or was lost and the run finished with exit 0. Wherever it lands now: one
  # "stopped:" line, status 130. SIGINT's default action is restored for the child (a background shell
  # job, as CI may run, starts with it ignored).
  proc = subprocess.Popen([sys.executable, "-m", "lwcl.main", DEFAULT, f"--workdir={tmp_path / 'w'}", *T,
                           "--config.scenario.num_tasks=5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  time.sleep(delay)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 130, err[-3000:]
  assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("stopped: interrupted (Ctrl-C)"), err[-3000:]


@pytest.fixture
def small_disk(tmp_path):
  """A 2 MB tmpfs at ``tmp_path/disk`` (root only: skipped where mounting is not allowed)."""
  disk = tmp_path / "disk"
  disk.mkdir()
  try:
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                             capture_output=True, timeout=60).returncode == 0
  except OSError:
    mounted = False
  if not mounted:
    pytest.skip("cannot mount a tmpfs here (needs root)")
  try:
    yield str(disk)
  finally:
    subprocess.run(["umount", str(disk)], capture_output=True, timeout=60)


def test_full_disk_ends_in_one_line_keeps_the_checkpoint_and_a_rerun_resumes(small_disk, reference):
  workdir = os.path.join(small_disk, "w")
  proc = cli(workdir, *FAULT_RUN, kill_after_step="17:FILL")  # fills the disk after step 17
  line = assert_one_line_error(proc, "no space left on the device", workdir, "rerun the same command to resume")
  assert proc.stderr.strip() == line, proc.stderr[-3000:]
  assert {"12", "16"} <= set(os.listdir(os.path.join(workdir, "checkpoints")))
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  os.unlink(os.path.join(small_disk, "filler"))
  proc = cli(workdir, *FAULT_RUN)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "resuming from checkpoint at task 2, step 6" in proc.stdout
  assert_same_stream(load_results(workdir), load_results(reference))


def test_full_disk_under_compare_ends_in_one_line(small_disk):
  # Issue 32: bin/compare lacked lwcl.main's filters: 115 lines (2 MB disk) to 216 (3 MB) around its line,
  # orbax's writer threads' tracebacks, asyncio's unretrieved write tasks, TensorStore's closed-loop callbacks.
  out = os.path.join(small_disk, "out")
  sets = [a for o in T for a in ("--set", o.removeprefix("--config."))]
  proc = subprocess.run([sys.executable, "-m", "lwcl.cli.compare", f"--out={out}", *sets, f"{ROOT}/configs/default.py"],
                        capture_output=True, text=True, cwd=ROOT, timeout=600)
  line = assert_one_line_error(proc, "no space left on the device", os.path.join(out, "default"))
  assert proc.stderr.strip() == line, proc.stderr[-3000:]


# SMALL sets model.hidden=(32,); ml_collections appends a repeated tuple override: (32, '(100,abc)').
@pytest.mark.parametrize("overrides,fragments", [
    (["--config.model.hidden=(100,abc)"], ["model.hidden=(32, '(100,abc)')", "'abc' is not an integer"]),
    (["--config.model.name=convnet", "--config.model.hidden=(100,abc)"], ["model.hidden=", "'abc'"]),
    (["--config.train.epochs_per_task=1.5"], ["train.epochs_per_task=1.5", "not an integer"]),
    (["--config.train.progress=yes"], ["train.progress=yes", "not a boolean"]),
])
def test_bad_overrides_end_in_one_line_before_the_workdir_exists(tmp_path, overrides, fragments):
  workdir = str(tmp_path / "w")
  assert_one_line_error(cli(workdir, *overrides), *fragments)
  assert not os.path.exists(workdir)


def test_unknown_and_mistyped_config_keys(tmp_path):
  proc = cli(str(tmp_path / "w"), "--config.train.batchsize=3")
  assert_one_line_error(proc, "batchsize")
  proc = cli(str(tmp_path / "w"), "--config.train.batch_size=lots")
  assert_one_line_error(proc, "batch_size")
  assert not os.path.exists(str(tmp_path / "w"))


def test_impossible_scenario_and_missing_data(tmp_path):
  proc = cli(str(tmp_path / "w"), "--config.scenario.num_tasks=4", "--config.scenario.classes_per_task=0")
  assert_one_line_error(proc, "cannot be split evenly", "num_tasks")
  proc = cli(str(tmp_path / "w"), "--config.data.source=idx", f"--config.data.idx_dir={tmp_path}/none")
  assert_one_line_error(proc, "not found", "dataset-fashion-mnist")
