"""``bin/gpu-check``: one prepared check of lwcl on a fresh GPU (or TPU) machine, in at most 8 minutes.

Steps, each in its own subprocess with its own time budget (seconds); a failing or timed-out step is
recorded and the next one runs:

* ``install``: ``pip install 'jax[cuda12]==<the locked jax>'`` on top of the lock (``--platform=tpu``:
  ``'jax[tpu]==...'``; README "Installing", GPU/TPU); skipped with ``--no-install`` and ``--dry-run``.
* ``device``: the devices JAX sees (platform, kind, count; fails when the default backend is not the
  expected one), jax/jaxlib versions, lwcl's provenance (:func:`lwcl.platform.provenance.collect`) and the
  baseline every speed figure is reported against: a square float32 matmul (default precision, as the
  models compute; TF32 on NVIDIA GPUs since Ampere) in FLOP/s, and the same in bfloat16.
* ``tests_models``, ``tests_lowering``: ``tests/models/test_models.py`` and ``tests/engine/test_lowering.py``
  under pytest with ``JAX_PLATFORMS=cuda,cpu`` (``tpu,cpu``), so the accelerator is the default backend (the
  suite's conftest pins the CPU only when ``JAX_PLATFORMS`` is unset).
* ``default_run``: ``python -m lwcl.main --config=configs/default.py`` shrunk (2 tasks, few samples):
  finished, ACC, examples/s.
* ``layerwise``: ResNet-20 of ``configs/layerwise_fmnist.py`` in ``backprop``, ``local`` and
  ``local+accelerated``: the compiled train step's temporary memory (bytes, as ``bin/bench layerwise
  --config``), its FLOPs (XLA's cost analysis) and steps/s on one batch.
* ``gem_replicas``: ``configs/gem_permuted_fashion_mnist.py:gem --config.num_seeds=8`` shrunk: wall time.

Data: the IDX files of ``--idx-dir`` (or ``$LWCL_IDX_DIR`` / Debian's Fashion-MNIST) when present, else a
small learnable synthetic Fashion-MNIST-shaped set written into ``OUT/data`` (the machine may have no
internet); the JSON says which. Writes ``OUT/gpu_check.json`` and prints a summary table, then the measured
seconds per step of the default run, the three ResNet-20 steps and the 8 GEM replicas next to the roofline's
predictions for the device (``docs/roofline.json``, ``bin/bench roofline``; :func:`compare`, the JSON's
``roofline``); exit status 0 when every step passed (a skipped install counts as passed), 1 otherwise.

``--dry-run`` runs the same steps on the CPU, each shrunk to seconds (no install, tiny sizes): the test of
this script (tests/benchmarks/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

from lwcl.benchmarks import roofline
from lwcl.data import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join("runs", "gpu-check")
LAYERWISE_VARIANTS = ("backprop", "local", "local+accelerated")
# The backends JAX must default to, and the JAX_PLATFORMS the steps run under.
PLATFORMS = {"gpu": ("gpu", "cuda,cpu", "cuda12"), "tpu": ("tpu", "tpu,cpu", "tpu"), "cpu": ("cpu", "cpu", "")}
# (step, budget in seconds on the device, budget in --dry-run); the device budgets add up to 8 minutes.
BUDGETS = {"install": (150, 0), "device": (30, 30), "tests_models": (60, 60), "tests_lowering": (55, 60),
           "default_run": (60, 60), "layerwise": (70, 90), "gem_replicas": (55, 60)}
# Sizes: (device, dry-run)
SIZES = {"matmul": (8192, 256), "samples_per_task": (2000, 100), "gem_samples": (1000, 50),
         "gem_tasks": (3, 2), "resnet_depth": (20, 8), "batch": (128, 16), "timed_steps": (20, 2),
         "synthetic_per_class": (600, 30)}
# Dry-run: one small test of each file (the whole files take minutes on a CPU).
DRY_TESTS = {"tests_models": "test_explicit_strides", "tests_lowering": "test_the_mlp_cases_cover"}


def locked_version(package: str) -> str:
  """``package``'s version in ``requirements/cpu.lock``."""
  with open(os.path.join(ROOT, "requirements", "cpu.lock")) as f:
    m = re.search(rf"^{re.escape(package)}==([^\s\\]+)", f.read(), re.M)
  if not m:
    raise SystemExit(f"error: no {package}== line in requirements/cpu.lock")
  return m.group(1)


# ---- data ---------------------------------------------------------------------------------------------

def synthetic_idx(directory: str, per_class: int) -> str:
  """A learnable Fashion-MNIST-shaped set (28x28, 10 classes; :mod:`lwcl.data.synthetic`, as the tests
  use when the real files are missing) as gzip IDX files in ``directory``, ``per_class`` training and
  ``max(per_class // 4, 10)`` test images per class; returns ``directory``."""
  return synthetic.write_learnable_idx_dataset(directory, per_class, max(per_class // 4, 10))


def find_data(args) -> tuple[str, str]:
  """``(idx folder, description)``: the real Fashion-MNIST files when present (not in --dry-run), else a
  synthetic set written under ``OUT/data``."""
  candidates = [args.idx_dir, os.environ.get("LWCL_IDX_DIR", ""), "/usr/share/datasets/fashion-mnist"]
  if not args.dry_run:
    for d in filter(None, candidates):
      if all(os.path.exists(os.path.join(d, f)) or os.path.exists(os.path.join(d, f[:-3]))
             for f in synthetic.FILES.values()):
        return d, f"fashion_mnist IDX files in {d}"
  per_class = SIZES["synthetic_per_class"][args.dry_run]
  d = synthetic_idx(os.path.join(args.out, "data"), per_class)
  return d, f"synthetic (28x28, 10 classes, {per_class} training images per class) in {d}"


# ---- the steps (the parent runs each as a subprocess) -------------------------------------------------

def _run(cmd, budget: float, env: dict, log: str) -> dict:
  """Runs ``cmd`` with a time limit, its output into ``log``; the step's record."""
  tic = time.perf_counter()
  with open(log, "w") as f:
    try:
      rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=budget).returncode
      status = "passed" if rc == 0 else "failed"
    except subprocess.TimeoutExpired:
      rc, status = None, "timed out"
  with open(log) as f:
    tail = f.read()[-1500:]
  return {"status": status, "returncode": rc, "seconds": round(time.perf_counter() - tic, 2), "budget_s": budget,
          "command": " ".join(cmd), "log": log, **({"log_tail": tail} if status != "passed" else {})}


def _read_json(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _inner(name: str, args, extra=()) -> list:
  return [sys.executable, "-m", "lwcl.benchmarks.gpu_check", "--inner", name, f"--out={args.out}",
          f"--platform={args.platform}", *(["--dry-run"] if args.dry_run else []), *extra]


def _run_figures(workdir: str, replicas: int = 0) -> dict:
  """ACC, examples/s and train seconds of a run's ``results.json``; of ``replicas`` seeds (``num_seeds``): the
  mean ACC and the examples/s of all replicas together (the sum of the seeds' own)."""
  res = _read_json(os.path.join(workdir, "results.json")) or {}
  out = {k: res[k] for k in ("acc", "examples_per_second", "train_seconds") if k in res}
  if replicas:
    out["acc"] = (res.get("acc") or {}).get("mean")
    seeds = [_read_json(os.path.join(workdir, f"seed{s}", "results.json")) or {} for s in range(replicas)]
    if all("examples_per_second" in r for r in seeds):
      out["examples_per_second"] = sum(r["examples_per_second"] for r in seeds)
  return out


def run_steps(args, env: dict, data_dir: str) -> dict:
  """Every step in turn: ``{name: record}`` (``status``, ``seconds``, ``figures``...)."""
  dry, out = args.dry_run, args.out
  logs = os.path.join(out, "logs")
  os.makedirs(logs, exist_ok=True)
  budget = lambda name: BUDGETS[name][dry] * args.budget_scale  # noqa: E731
  steps = {}
  if args.no_install or dry:
    steps["install"] = {"status": "skipped", "seconds": 0.0, "budget_s": 0}
  else:
    extra = PLATFORMS[args.platform][2]
    spec = f"jax[{extra}]=={locked_version('jax')}"
    steps["install"] = _run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", spec],
                            budget("install"), env, os.path.join(logs, "install.log"))
  figures = os.path.join(out, "device.json")
  steps["device"] = _run(_inner("device", args), budget("device"), env, os.path.join(logs, "device.log"))
  steps["device"]["figures"] = _read_json(figures)
  for name, path in (("tests_models", "tests/models/test_models.py"),
                     ("tests_lowering", "tests/engine/test_lowering.py")):
    cmd = [sys.executable, "-m", "pytest", path, "-p", "no:cacheprovider", "-n", "0", "-q", "-rfE"]
    steps[name] = _run(cmd + (["-k", DRY_TESTS[name]] if dry else []), budget(name), env,
                       os.path.join(logs, f"{name}.log"))
    with open(steps[name]["log"]) as f:  # pytest's last line: "54 passed, 1 failed in 30.1s"
      counts = re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected)", f.read()[-400:])
    steps[name]["figures"] = {"tests": {k: int(n) for n, k in counts}}
  small = SIZES["samples_per_task"][dry]
  workdir = os.path.join(out, "default_run")
  steps["default_run"] = _run(
      [sys.executable, "-m", "lwcl.main", "--config=configs/default.py", f"--workdir={workdir}",
       f"--config.data.idx_dir={data_dir}", "--config.data.source=idx", "--config.scenario.num_tasks=2",
       f"--config.scenario.samples_per_task={small}", "--config.train.epochs_per_task=1",
       "--config.train.progress=False"] + ([
           "--config.train.batch_size=16", "--config.model.name=mlp", "--config.model.hidden=(32,)"]
           if dry else []), budget("default_run"), env, os.path.join(logs, "default_run.log"))
  steps["default_run"]["figures"] = _run_figures(workdir)
  figures = os.path.join(out, "layerwise.json")
  steps["layerwise"] = _run(_inner("layerwise", args, [f"--idx-dir={data_dir}"]), budget("layerwise"), env,
                            os.path.join(logs, "layerwise.log"))
  steps["layerwise"]["figures"] = _read_json(figures)
  workdir = os.path.join(out, "gem_replicas")
  steps["gem_replicas"] = _run(
      [sys.executable, "-m", "lwcl.main", "--config=configs/gem_permuted_fashion_mnist.py:gem",
       f"--workdir={workdir}", "--config.num_seeds=8", f"--config.data.idx_dir={data_dir}",
       "--config.data.source=idx", f"--config.scenario.num_tasks={SIZES['gem_tasks'][dry]}",
       f"--config.scenario.samples_per_task={SIZES['gem_samples'][dry]}", "--config.train.progress=False"]
      + (["--config.model.hidden=(32,)"] if dry else []), budget("gem_replicas"), env,
      os.path.join(logs, "gem_replicas.log"))
  steps["gem_replicas"]["figures"] = {"replicas": 8, "wall_seconds": steps["gem_replicas"]["seconds"],
                                      **_run_figures(workdir, 8)}
  for name in ("default_run", "gem_replicas"):
    if steps[name]["status"] == "passed" and steps[name]["figures"].get("acc") is None:
      steps[name]["status"] = "failed"  # exited 0 without a finished results.json
  return steps


def _relative(steps: dict) -> None:
  """Adds to every speed figure its ratio to the device's matmul FLOP/s (per TFLOP/s of the baseline)."""
  base = ((steps["device"].get("figures") or {}).get("matmul") or {}).get("float32_flops_per_s")
  if not base:
    return
  for name in ("default_run", "gem_replicas"):
    f = steps[name].get("figures") or {}
    if f.get("examples_per_second"):
      f["examples_per_second_per_matmul_tflops"] = f["examples_per_second"] / (base / 1e12)
  for row in (steps["layerwise"].get("figures") or {}).get("rows", []):
    row["steps_per_second_per_matmul_tflops"] = row["steps_per_second"] / (base / 1e12)
    if row.get("step_flops"):
      row["of_matmul"] = row["step_flops"] * row["steps_per_second"] / base


# ---- inner steps (run in a subprocess, after the install) ---------------------------------------------

def _matmul_flops(n: int, dtype, calls: int) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(lambda a: a @ a)
  jax.block_until_ready(f(a))
  best = float("inf")
  for _ in range(3):  # best of three rounds of `calls` calls
    tic = time.perf_counter()
    for _ in range(calls):
      out = f(a)
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - tic) / calls)
  return 2.0 * n ** 3 / best


def inner_device(args) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top

  from lwcl.platform import provenance  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  n = SIZES["matmul"][args.dry_run]
  precision = (f"jax_default_matmul_precision={jax.config.jax_default_matmul_precision} (None: the backend's "
               "default, as the models compute; TF32 for float32 on NVIDIA GPUs since Ampere)")
  calls = 5 if args.dry_run else 20
  out = {"devices": [{"id": d.id, "platform": d.platform, "kind": str(d.device_kind)} for d in devices],
         "default_backend": jax.default_backend(), "count": len(devices), "kind": str(devices[0].device_kind),
         "jax": jax.__version__, "jaxlib": jaxlib.__version__,
         "matmul": {"what": f"jitted [{n}, {n}] x [{n}, {n}] matmul, best of 3 rounds of {calls} calls",
                    "units": "FLOP/s (2 n^3 per call)", "precision": precision,
                    "float32_flops_per_s": _matmul_flops(n, jnp.float32, calls),
                    "bfloat16_flops_per_s": _matmul_flops(n, jnp.bfloat16, calls)},
         "provenance": provenance.collect(devices=provenance.device_info(len(devices)))}
  try:
    stats = devices[0].memory_stats() or {}
    out["memory"] = {"units": "bytes", **{k: stats[k] for k in ("bytes_limit", "peak_bytes_in_use") if k in stats}}
  except Exception:  # pylint: disable=broad-except  (not every backend has memory_stats)
    out["memory"] = None
  expected = PLATFORMS["cpu" if args.dry_run else args.platform][0]
  if out["default_backend"] != expected:
    out["error"] = f"default backend is {out['default_backend']}, expected {expected}"
  return out


def inner_layerwise(args) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from lwcl.cli.compare import load_config  # pylint: disable=g-import-not-at-top
  from lwcl.engine.build import Setup  # pylint: disable=g-import-not-at-top
  from lwcl.engine.dispatch import train_batch_spec  # pylint: disable=g-import-not-at-top
  dry = args.dry_run
  depth, batch, calls = SIZES["resnet_depth"][dry], SIZES["batch"][dry], SIZES["timed_steps"][dry]
  rows = []
  for variant in LAYERWISE_VARIANTS:
    config = load_config(f"configs/layerwise_fmnist.py:resnet20,{variant}", [
        f"data.idx_dir={args.idx_dir}", "data.source=idx", f"model.depth={depth}", f"train.batch_size={batch}",
        f"scenario.samples_per_task={max(batch, 64)}", "train.progress=False"])
    setup = Setup.build(config)
    lr_spec = jax.ShapeDtypeStruct((), jnp.float32)
    compiled = setup.steps.train_step.lower(jax.eval_shape(setup.initial_state), train_batch_spec(setup),
                                            lr_spec).compile()
    memory, cost = compiled.memory_analysis(), compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    data = setup.train_data[0]
    host = {"image": data.images[:batch], "label": data.labels[:batch].astype(np.int32),
            "task": np.zeros(batch, np.int32)}
    if setup.fns.is_greedy:
      host["phase"] = np.zeros(batch, np.int32)
    lr = jnp.asarray(setup.learning_rates_of_task(setup.steps_per_epoch[0])[..., 0], jnp.float32)
    state = compiled(setup.initial_state(), host, lr)[0]  # warm-up
    jax.block_until_ready(state)
    tic = time.perf_counter()
    for _ in range(calls):
      state = compiled(state, host, lr)[0]
    jax.block_until_ready(state)
    seconds = (time.perf_counter() - tic) / calls
    rows.append({"variant": f"resnet{depth},{variant}", "batch": batch, "local_blocks": setup.fns.local_blocks,
                 "temp_bytes": int(memory.temp_size_in_bytes), "argument_bytes": int(memory.argument_size_in_bytes),
                 "step_flops": float((cost or {}).get("flops", 0.0)) or None, "steps_per_second": 1.0 / seconds,
                 "examples_per_second": batch / seconds})
  units = {"memory": "bytes (XLA memory analysis of the compiled step)",
           "step_flops": "FLOP (XLA cost analysis; custom calls, e.g. CPU's oneDNN convolutions, count 0)",
           "speed": "train steps per second on one batch, after a warm-up call"}
  return {"units": units, "rows": rows}


def compare(report: dict, path: str = roofline.DEFAULT_JSON) -> dict:
  """The measured speeds of ``report`` next to the roofline's predictions for its device (``docs/roofline.json``,
  :func:`lwcl.benchmarks.roofline.predictions_for`): ``{"device": name or '', "rows": [...]}``, each row
  ``{"what", "measured_s", "predicted_s", "bound", "ratio"}`` (seconds per step; ratio = measured / predicted,
  >= 1 when the roofline holds as the lower bound it is). Only the steps whose model and batch are the
  predicted ones (not in --dry-run's shrunk sizes). The default run's and the replicas' seconds per step come
  from their examples/s, which include the run's host loop (data gathering, logging)."""
  name, table = roofline.predictions_for((report.get("device") or {}).get("kind") or "", path)
  rows, steps = [], report["steps"]

  def add(what: str, key: tuple, batch: int, steps_per_s: float | None) -> None:
    p = table.get(key)
    if p and steps_per_s and p["batch"] == batch:
      rows.append({"what": what, "measured_s": 1.0 / steps_per_s, "predicted_s": p["step_s"], "bound": p["bound"],
                   "ratio": 1.0 / steps_per_s / p["step_s"]})

  if table and not report.get("dry_run"):
    eps = (steps["default_run"].get("figures") or {}).get("examples_per_second")
    add("default run (ConvNet, batch 64)", ("ConvNet", "fine-tuning"), 64, eps and eps / 64)
    for r in (steps["layerwise"].get("figures") or {}).get("rows", []):
      depth, variant = r["variant"].split(",", 1)
      add(f"{r['variant']}, batch {r['batch']}", (f"ResNet-{depth[6:]}", variant), r["batch"], r["steps_per_second"])
    eps = (steps["gem_replicas"].get("figures") or {}).get("examples_per_second")
    add("GEM MLP, 8 replicas, batch 10", ("MLP 2x100 (GEM protocol)", "GEM, 8 replicas"), 10, eps and eps / 80)
  return {"device": name, "rows": rows}


def _comparison(report: dict) -> str:
  c = report.get("roofline") or {}
  if not c.get("rows"):
    kind = (report.get("device") or {}).get("kind")
    return (f"no roofline prediction to compare with (device {kind!r}; docs/roofline.json predicts "
            f"{', '.join(roofline.DEVICES)} at the device sizes, not --dry-run's)")
  lines = [f"measured against the roofline's prediction for {c['device']} (docs/results.md, \"What to expect on "
           "accelerators\"):", "", "| step | measured ms/step | predicted ms/step (bound) | measured / predicted |",
           "| --- | --- | --- | --- |"]
  lines += [f"| {r['what']} | {r['measured_s'] * 1e3:.3g} | {r['predicted_s'] * 1e3:.3g} ({r['bound']}) | "
            f"{r['ratio']:.2f} |" for r in c["rows"]]
  return "\n".join(lines)


# ---- entry --------------------------------------------------------------------------------------------

def _summary(report: dict) -> str:
  lines = ["| step | status | seconds | budget s | figures |", "| --- | --- | --- | --- | --- |"]
  for name, s in report["steps"].items():
    f = s.get("figures") or {}
    if name == "device" and f:
      fig = (f"{f.get('count')} x {f.get('kind')} ({f.get('default_backend')}); matmul f32 "
             f"{f['matmul']['float32_flops_per_s'] / 1e12:.2f} TFLOP/s, bf16 "
             f"{f['matmul']['bfloat16_flops_per_s'] / 1e12:.2f} TFLOP/s")
    elif name == "layerwise" and f:
      fig = "; ".join(f"{r['variant']} {r['steps_per_second']:.1f} steps/s {r['temp_bytes'] / 2 ** 20:.0f} MiB"
                      + (f" {100 * r['of_matmul']:.1f}% of matmul" if r.get("of_matmul") else "")
                      for r in f.get("rows", []))
    elif f.get("tests"):
      fig = ", ".join(f"{n} {k}" for k, n in f["tests"].items())
    elif f.get("examples_per_second"):
      fig = f"ACC {f.get('acc', float('nan')):.4f}, {f['examples_per_second']:.0f} examples/s"
      fig += f", 8 replicas in {f['wall_seconds']:.1f} s wall" if name == "gem_replicas" else ""
    else:
      fig = ""
    lines.append(f"| {name} | {s['status']} | {s['seconds']:.1f} | {s.get('budget_s', 0):.0f} | {fig} |")
  return "\n".join(lines)


def main(argv) -> None:
  parser = argparse.ArgumentParser(prog="bin/gpu-check", description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=DEFAULT_OUT, help="folder of gpu_check.json, the logs and the runs")
  parser.add_argument("--platform", choices=("gpu", "tpu"), default="gpu", help="the accelerator expected")
  parser.add_argument("--no-install", action="store_true", help="skip pip install 'jax[cuda12]==...'")
  parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU, shrunk to seconds")
  parser.add_argument("--idx-dir", default="", help="folder of Fashion-MNIST IDX files (default: found or synthetic)")
  parser.add_argument("--budget-scale", type=float, default=1.0, help="multiplies every step's time budget")
  parser.add_argument("--inner", choices=("device", "layerwise"), default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  args.out = os.path.abspath(args.out)
  if args.inner:
    from lwcl import platform  # pylint: disable=g-import-not-at-top
    platform.configure()
    result = inner_device(args) if args.inner == "device" else inner_layerwise(args)
    with open(os.path.join(args.out, f"{args.inner}.json"), "w") as f:
      json.dump(result, f, indent=1, default=str)
    sys.exit(1 if result.get("error") else 0)
  os.makedirs(args.out, exist_ok=True)
  env = dict(os.environ, JAX_PLATFORMS=PLATFORMS["cpu" if args.dry_run else args.platform][1],
             PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH", "")])))
  tic = time.perf_counter()
  data_dir, data = find_data(args)
  steps = run_steps(args, env, data_dir)
  _relative(steps)
  device = steps["device"].get("figures") or {}
  report = {"dry_run": args.dry_run, "platform": "cpu" if args.dry_run else args.platform,
            "passed": all(s["status"] in ("passed", "skipped") for s in steps.values()),
            "seconds": round(time.perf_counter() - tic, 2), "data": data,
            "device": {k: device.get(k) for k in ("kind", "count", "default_backend", "devices", "memory")},
            "versions": {k: device.get(k) for k in ("jax", "jaxlib")},
            "matmul_baseline": device.get("matmul"), "provenance": device.get("provenance"), "steps": steps}
  report["roofline"] = compare(report)
  path = os.path.join(args.out, "gpu_check.json")
  with open(path, "w") as f:
    json.dump(report, f, indent=1, default=str)
  print(_summary(report) + "\n\n" + _comparison(report))
  print(f"\n{'all steps passed' if report['passed'] else 'FAILED'} in {report['seconds']:.0f} s; {path}")
  sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
  main(sys.argv[1:])
