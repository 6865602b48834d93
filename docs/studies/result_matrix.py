"""The small-run matrix that checks a refactor changed no result: run it on the commit before and after,
then compare the two outputs key by key.

    .venv/bin/python docs/studies/result_matrix.py run OUT_DIR         # every run of MATRIX into OUT_DIR
    .venv/bin/python docs/studies/result_matrix.py compare A_DIR B_DIR  # key-by-key diff; exit 1 if any

Each run is ``python -m lwcl.main`` (the entry point every lwcl version has) on the default config made
tiny (2 tasks of 256 Fashion-MNIST examples, 1 epoch), in a fresh workdir. ``run`` gathers every
``results.json`` under each workdir (replicas' and summaries' too) into ``OUT_DIR/matrix.json``. ``compare``
reports every key whose value differs, except the keys that measure time or name a path, and the
provenance, which differ from run to run by nature (:data:`IGNORED`). Results are compared exactly (floats
bit for bit): the two sides must run on the same CPU and software.

The streamed run reads an ArrayRecord folder written once by this script from the Fashion-MNIST IDX
files (``--records DIR`` reuses one, so both sides read the same bytes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

BASE = ["--config=configs/default.py", "--config.scenario.num_tasks=2", "--config.scenario.samples_per_task=256",
        "--config.train.epochs_per_task=1", "--config.train.progress=False"]

# name -> overrides on top of BASE (the matrix of issue 28's "done when").
MATRIX = {
    "plain": [],
    "ewc_k4": ["--config.method.name=ewc", "--config.train.steps_per_dispatch=4"],
    "gem_lca_epoch": ["--config.method.name=gem", "--config.eval.lca_batches=3", "--config.eval.every_epoch=True"],
    "nai_local": ["--config.method.name=nai", "--config.layerwise.mode=local"],
    "greedy": ["--config.layerwise.mode=greedy", "--config.train.epochs_per_task=2"],
    "seeds_greedy_si": ["--config.num_seeds=2", "--config.method.name=si", "--config.layerwise.mode=greedy",
                        "--config.train.epochs_per_task=2"],
    "seeds_agem_k3": ["--config.num_seeds=2", "--config.method.name=agem", "--config.train.steps_per_dispatch=3"],
    "orders_seeds": ["--config.num_orders=2", "--config.num_seeds=2", "--config.method.name=ewc"],
    "strength_sweep": ["--config.method.name=ewc", "--config.sweep.key=method.strength",
                       "--config.sweep.candidates=(1.,10.)", "--config.scenario.validation_fraction=0.1"],
    "streamed": ["--config.data.record_dir={records}"],
}

# Keys that measure time or name a folder: they differ between any two runs. And `provenance` (the commit,
# package versions, CPU that produced a result, lwcl/platform/provenance.py): it differs between the two
# sides by nature (another commit; absent on a side older than it), and the matrix compares results.
IGNORED = {"train_seconds", "examples_per_second", "workdir", "seconds", "wall_seconds", "total_seconds",
           "elapsed_seconds", "select_seconds", "final_seconds", "provenance"}


def write_records(directory: str) -> None:
  """The Fashion-MNIST IDX files as an ArrayRecord folder (two shards), with whatever lwcl writes them."""
  code = ("import sys, importlib, runpy\n"
          "config = runpy.run_path('configs/default.py')['get_config']()\n"
          "config.data.source = 'idx'\n"
          "d = importlib.import_module('lwcl.data.sources').load_dataset(config.data)\n"
          "importlib.import_module('lwcl.data.records').write_dataset(\n"
          "    sys.argv[1], (d.train_images, d.train_labels), (d.test_images, d.test_labels), num_shards=2)\n")
  subprocess.run([sys.executable, "-c", code, directory], check=True)


def gather(workdir: str) -> dict:
  """Every results.json under ``workdir``, by its path relative to it."""
  out = {}
  for root, _, files in os.walk(workdir):
    if "results.json" in files:
      with open(os.path.join(root, "results.json")) as f:
        out[os.path.relpath(root, workdir)] = json.load(f)
  return out


def run(out_dir: str, records: str | None, only: list) -> None:
  os.makedirs(out_dir, exist_ok=True)
  records = records or os.path.join(out_dir, "records")
  if not os.path.isdir(records):
    write_records(records)
  matrix = {}
  for name, overrides in MATRIX.items():
    if only and name not in only:
      continue
    workdir = os.path.join(out_dir, name)
    args = [a.format(records=records) for a in BASE + overrides] + [f"--workdir={workdir}"]
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "lwcl.main", *args], capture_output=True, text=True)
    print(f"{name}: exit {proc.returncode} in {time.time() - t0:.0f} s", flush=True)
    if proc.returncode:
      print(proc.stderr[-3000:], file=sys.stderr)
    matrix[name] = {"exit": proc.returncode, "results": gather(workdir)}
  with open(os.path.join(out_dir, "matrix.json"), "w") as f:
    json.dump(matrix, f, indent=1, sort_keys=True)


def diff(a, b, path: str, out: list) -> None:
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      if k in IGNORED:
        continue
      if k not in a or k not in b:
        out.append(f"{path}/{k}: only in {'B' if k not in a else 'A'}")
      else:
        diff(a[k], b[k], f"{path}/{k}", out)
  elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
    for i, (x, y) in enumerate(zip(a, b)):
      diff(x, y, f"{path}[{i}]", out)
  elif a != b:
    out.append(f"{path}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}")


def compare(a_dir: str, b_dir: str) -> int:
  with open(os.path.join(a_dir, "matrix.json")) as f:
    a = json.load(f)
  with open(os.path.join(b_dir, "matrix.json")) as f:
    b = json.load(f)
  out = []
  diff(a, b, "", out)
  keys = sum(_count(v) for v in a.values())
  print("\n".join(out) if out else f"identical: {len(a)} runs, {keys} values compared (timings and paths aside)")
  return 1 if out else 0


def _count(tree) -> int:
  if isinstance(tree, dict):
    return sum(_count(v) for k, v in tree.items() if k not in IGNORED)
  if isinstance(tree, list):
    return sum(_count(v) for v in tree)
  return 1


if __name__ == "__main__":
  if len(sys.argv) >= 3 and sys.argv[1] == "run":
    rest = sys.argv[3:]
    recs = rest[rest.index("--records") + 1] if "--records" in rest else None
    run(sys.argv[2], recs, [r for r in rest if not r.startswith("--") and r != recs])
  elif len(sys.argv) == 4 and sys.argv[1] == "compare":
    sys.exit(compare(sys.argv[2], sys.argv[3]))
  else:
    sys.exit(__doc__)
