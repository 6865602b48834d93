"""``bin/bench roofline``: what to expect on accelerators, on paper (issue 30, item 6).

For each train step of :data:`STEPS` (the default ConvNet; ResNet-20 and ResNet-56 in ``backprop``, ``local`` and
``local+accelerated``; the GEM-protocol MLP alone and as 8 replicas), builds the run's real step
(:class:`lwcl.engine.build.Setup`) **for the accelerators** (``platforms=('cuda', 'tpu')``: XLA convolutions,
never the CPU's oneDNN custom calls, which XLA's cost analysis counts as zero), lowers it with the run's
state and batch shapes, compiles it **with this machine's CPU compiler** (no GPU or TPU compiler is here) and
reads XLA's cost analysis of the compiled program (``compiled.cost_analysis()``): FLOPs and bytes accessed.
Each device's predicted step time is the roofline ``max(FLOPs / peak, bytes / bandwidth, dispatch)``, whose
largest term names the bound (``compute``, ``memory``, ``dispatch``).

``dispatch`` = the host's per-call cost, *measured here* (a jitted call of the same state, batch and learning
rate that only counts the step, :func:`host_dispatch_seconds`), + ``kernels x`` the device's per-kernel
launch cost (an assumption, :data:`DEVICES`; ``kernels`` = the CPU-compiled program's top-level operations,
:func:`count_kernels`).

Caveats: the counts are the CPU compiler's (its fusion decides the bytes; a GPU's fuses differently, cuDNN's
convolutions read more than once); a ``while`` loop's body is counted once; every FLOP is charged at the matmul
peak (element-wise work runs at the slower vector rate); the peaks are the vendors' and are not reached by
small kernels. Read the predictions as lower bounds on the step time, within a factor of a few.

Usage: ``bin/bench roofline [--only=SUBSTRING] [--json=docs/roofline.json] [--calls=20]``; prints a markdown
table. ``bin/gpu-check`` compares its measurements with ``docs/roofline.json`` (:func:`predictions_for`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform as host_platform
import re
import subprocess
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_JSON = os.path.join(ROOT, "docs", "roofline.json")
BOUNDS = ("compute", "memory", "dispatch")


@dataclasses.dataclass(frozen=True)
class Device:
  """One accelerator's peaks (dense, no sparsity) and the assumed per-kernel launch cost.

  Attributes:
    name: the table's column name; ``kinds``: lower-case substrings of ``jax.Device.device_kind`` that name it.
    matmul_flops: FLOP/s of a float32 matmul or convolution at JAX's default precision (TF32 tensor cores on
      NVIDIA GPUs since Ampere; one bfloat16 pass on TPUs: JAX's "Matmul precision" page), the peak used.
    bf16_flops, fp32_flops: FLOP/s of bfloat16 tensor-core matmuls and of float32 vector (non-tensor) work.
    hbm_bytes_per_s: memory bandwidth in bytes/s.
    launch_s: seconds per kernel launched (assumption; see :data:`DEVICES`).
    sources: where the figures come from.
  """
  name: str
  kinds: tuple
  matmul_flops: float
  bf16_flops: float
  fp32_flops: float
  hbm_bytes_per_s: float
  launch_s: float
  sources: str


_H100 = ("NVIDIA H100 SXM datasheet (nvidia.com/en-us/data-center/h100; copied at "
         "archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html: TF32 989 and BF16 1,979 TFLOP/s *with sparsity*, "
         "1/2 dense; FP32 67; 3,350 GB/s HBM3) and glennklockwood.com/garden/processors/h100 (494.7 / 989.4 / 66.9 "
         "dense)")
_LAUNCH = ("per-kernel launch 4 us: an assumption, the 4-6 us that a direct CUDA launch costs "
           "(susun-blog.com/blog/pegainfer-3-cuda-graph); XLA's command buffers (CUDA graphs) can lower it")
DEVICES = {
    "H100": Device("H100", ("h100",), 494.7e12, 989.4e12, 66.9e12, 3.35e12, 4e-6, f"{_H100}; {_LAUNCH}"),
    "H200": Device("H200", ("h200",), 494.7e12, 989.4e12, 66.9e12, 4.8e12, 4e-6,
                   "the H100's compute (same GH100 die) with 4.8 TB/s HBM3e (NVIDIA H200 page; "
                   f"aiminingco.com/gpu/h200/specs, lzwjava.github.io/nvidia-h200-gpu-specs-en); {_LAUNCH}"),
    "TPU v5e": Device("TPU v5e", ("v5 lite", "v5e", "v5litepod"), 197e12, 197e12, 197e12 / 8, 819e9, 0.0,
                      "cloud.google.com/tpu/docs/v5e: 197 TFLOP/s bf16 per chip, 16 GB HBM2 at 819 GB/s; float32 "
                      "matmuls at default precision are one bf16 pass (JAX 'Matmul precision'); vector rate "
                      "unpublished (1/8 of the MXUs' is a placeholder, unused); the whole program is one launch "
                      "on a TPU, so no per-kernel cost (assumption)"),
}

# (model, mode, config spec, overrides, replicas): the steps of the table, as ``bin/run --config=SPEC`` builds them.
_LW = "configs/layerwise_fmnist.py:resnet{},{}"
STEPS = (
    ("ConvNet", "fine-tuning", "configs/default.py", (), 1),
    *[(f"ResNet-{d}", v, _LW.format(d, v), (), 1)
      for d in (20, 56) for v in ("backprop", "local", "local+accelerated")],
    ("MLP 2x100 (GEM protocol)", "GEM", "configs/gem_permuted_fashion_mnist.py:gem", (), 1),
    ("MLP 2x100 (GEM protocol)", "GEM, 8 replicas", "configs/gem_permuted_fashion_mnist.py:gem", (), 8),
)

# Operations of a compiled HLO module that launch no kernel of their own.
_FREE = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all", "partition-id",
         "replica-id", "opt-barrier", "copy-done", "add-dependency"}


def predict(flops: float, bytes_accessed: float, host_s: float, kernels: int, device: Device) -> dict:
  """The roofline step time of a program on ``device``.

  Args:
    flops: FLOPs per step; ``bytes_accessed``: bytes read and written per step (XLA's cost analysis).
    host_s: the host's seconds per call (dispatch of the program, measured); ``kernels``: kernels launched.
  Returns:
    ``{"compute_s", "memory_s", "dispatch_s", "step_s", "bound"}``: ``flops / matmul_flops``,
    ``bytes / hbm_bytes_per_s``, ``host_s + kernels * launch_s`` (seconds), their maximum, and the name of the
    largest (one of :data:`BOUNDS`).
  Raises:
    ValueError: a negative count.
  """
  if min(flops, bytes_accessed, host_s, kernels) < 0:
    raise ValueError("FLOPs, bytes, host seconds and kernels must be >= 0")
  times = {"compute_s": flops / device.matmul_flops, "memory_s": bytes_accessed / device.hbm_bytes_per_s,
           "dispatch_s": host_s + kernels * device.launch_s}
  bound = max(BOUNDS, key=lambda b: times[f"{b}_s"])
  return {**times, "step_s": times[f"{bound}_s"], "bound": bound}


def program_cost(compiled) -> dict:
  """``{"flops", "bytes_accessed", "transcendentals"}`` of a compiled program (``jax.stages.Compiled``), from
  XLA's cost analysis (floats; bytes read plus written, in bytes).

  Raises:
    ValueError: the backend gives no cost analysis.
  """
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  if not cost or "flops" not in cost:
    raise ValueError("XLA gave no cost analysis for this program")
  return {"flops": float(cost["flops"]), "bytes_accessed": float(cost.get("bytes accessed", 0.0)),
          "transcendentals": float(cost.get("transcendentals", 0.0))}


def _computations(hlo_text: str) -> tuple[dict, str]:
  """``({name: [opcode, ...]}, entry name)`` of an HLO module's text."""
  comps, entry, name = {}, "", None
  for line in hlo_text.splitlines():
    line = re.sub(r"/\*.*?\*/", "", line)  # the /*index=5*/ comments of long tuple shapes
    head = re.match(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
    if head and not line.startswith(" "):
      name = head.group(2)
      comps[name] = []
      entry = name if head.group(1) else entry
    elif name is not None and line.strip() == "}":
      name = None
    elif name is not None:
      op = re.search(r"=\s*(?:\([^=]*?\)|[\w\[\]{},:\d\s/*]+?)\s+([a-z][\w\-]*)\(", line)
      if op:
        called = re.findall(r"(?:body|condition|to_apply|branch_computations)=(\{[^}]*\}|%?[\w.\-]+)", line)
        comps[name].append((op.group(1), [c for group in called for c in re.findall(r"[\w.\-]+", group)]))
  return comps, entry


def count_kernels(hlo_text: str) -> int:
  """Kernels one call of a compiled HLO module launches, roughly: the entry computation's operations that
  are not free (:data:`_FREE`: parameters, tuples, bitcasts...), with the operations of a ``while`` loop's body
  and condition and of a ``conditional``'s branches counted once each (not per iteration).

  Args:
    hlo_text: ``compiled.as_text()`` (fusions appear as one ``fusion`` operation each).
  Raises:
    ValueError: the text has no ENTRY computation.
  """
  comps, entry = _computations(hlo_text)
  if not entry:
    raise ValueError("no ENTRY computation in the HLO text")

  def count(name: str, depth: int = 0) -> int:
    n = 0
    for opcode, called in comps.get(name, []):
      if opcode in ("while", "conditional", "call") and depth < 8:
        n += sum(count(c, depth + 1) for c in called)
      elif opcode not in _FREE:
        n += 1
    return n

  return count(entry)


def host_dispatch_seconds(state, batch, lr, calls: int = 20, rounds: int = 30) -> float:
  """Seconds per call that the host spends dispatching a jitted program of these arguments (the state donated,
  its step counted; nothing else computed; the batch as host numpy arrays, copied to the device at each call
  as the run's one-step loop does), on the default backend: the per-step overhead that no device removes.
  The fastest of ``rounds`` rounds of ``calls`` calls (the least disturbed by other processes)."""
  null = jax.jit(lambda s, b, r: s.replace(step=s.step + 1), donate_argnums=(0,))
  state = null(state, batch, lr)
  best = float("inf")
  for _ in range(rounds):
    jax.block_until_ready(state)
    tic = time.perf_counter()
    for _ in range(calls):
      state = null(state, batch, lr)
    jax.block_until_ready(state)
    best = min(best, (time.perf_counter() - tic) / calls)
  return best


def step_costs(spec: str, overrides=(), replicas: int = 1, calls: int = 20) -> dict:
  """Builds the train step of ``bin/run --config=SPEC`` (with ``replicas`` seeds as replicas of one vmapped
  program when > 1) for ``cuda`` and ``tpu``, compiles it with this machine's compiler and returns its batch,
  ``conv_impl`` (the convolutions' lowering chosen for those platforms: ``native``, XLA's),
  XLA's cost analysis (compiled, and ``unfused_bytes``: the lowered module's, before any fusion), ``kernels``
  (:func:`count_kernels`) and ``host_s`` (:func:`host_dispatch_seconds`, seconds).

  Raises:
    ConfigError / DataError: as :meth:`lwcl.engine.build.Setup.build`; ValueError: no cost analysis.
  """
  from lwcl.cli.compare import load_config  # pylint: disable=g-import-not-at-top  (loads data sets)
  from lwcl.engine.build import Setup  # pylint: disable=g-import-not-at-top
  from lwcl.engine.dispatch import train_batch_spec  # pylint: disable=g-import-not-at-top
  from lwcl.runs.axis import ReplicaAxis  # pylint: disable=g-import-not-at-top
  config = load_config(spec, ["train.progress=False", *overrides])
  axis = ReplicaAxis.of_seeds([config.seed + r for r in range(replicas)]) if replicas > 1 else None
  setup = Setup.build(config, axis, platforms=("cuda", "tpu"))
  batch = train_batch_spec(setup)
  if replicas > 1:
    batch = {k: jax.ShapeDtypeStruct((replicas, *v.shape), v.dtype) for k, v in batch.items()}
  lr = np.asarray(setup.learning_rates_of_task(setup.steps_per_epoch[0])[..., 0], np.float32)
  state = setup.initial_state()
  lowered = setup.steps.train_step.lower(jax.eval_shape(lambda: state), batch, jax.ShapeDtypeStruct(lr.shape, lr.dtype))
  unfused = lowered.cost_analysis() or {}
  compiled = lowered.compile()
  host_batch = {k: np.zeros(v.shape, v.dtype) for k, v in batch.items()}  # as the run's K=1 loop passes it
  conv_impl = str(getattr(setup.fns.model, "conv_impl", ""))
  return {"batch": int(config.train.batch_size), "replicas": replicas, "conv_impl": conv_impl,
          **program_cost(compiled), "unfused_bytes": float(unfused.get("bytes accessed", 0.0)),
          "kernels": count_kernels(compiled.as_text()),
          "host_s": host_dispatch_seconds(state, host_batch, lr, calls)}


def row_predictions(row: dict) -> dict:
  """``{device name: predict(...) + examples_per_s}`` of one row of :func:`step_costs` (examples of all
  replicas per second)."""
  out = {}
  for name, device in DEVICES.items():
    p = predict(row["flops"], row["bytes_accessed"], row["host_s"], row["kernels"], device)
    out[name] = {**p, "examples_per_s": row["batch"] * row["replicas"] / p["step_s"]}
  return out


def _cpu_name() -> str:
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    model = re.search(r"Model name:\s*(.+)", out)
    return f"{model.group(1).strip()}, {os.cpu_count()} cores" if model else host_platform.processor()
  except (OSError, subprocess.SubprocessError):
    return host_platform.processor() or "unknown CPU"


def _commit() -> str:
  try:
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return ""


def table(rows: list) -> str:
  """The markdown table of ``rows`` (as :func:`main` writes them)."""
  names = list(DEVICES)
  lines = ["| model | mode | batch | GFLOP | MB accessed | FLOP/byte | kernels | host ms | "
           + " | ".join(f"{n} ms (bound)" for n in names) + " |", "|" + " --- |" * (8 + len(names))]
  for r in rows:
    cells = [f"{r['predictions'][n]['step_s'] * 1e3:.3g} ({r['predictions'][n]['bound']})" for n in names]
    batch = f"{r['batch']} x {r['replicas']}" if r["replicas"] > 1 else str(r["batch"])
    lines.append(f"| {r['model']} | {r['mode']} | {batch} | {r['flops'] / 1e9:.3g} | "
                 f"{r['bytes_accessed'] / 1e6:,.0f} | {r['flops'] / max(r['bytes_accessed'], 1):.1f} | "
                 f"{r['kernels']} | {r['host_s'] * 1e3:.3f} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines)


def predictions_for(kind: str, path: str = DEFAULT_JSON) -> tuple[str, dict]:
  """``(device name, {(model, mode): prediction})`` of the stored table ``path`` for the device whose
  ``jax.Device.device_kind`` is ``kind`` (``('', {})`` when no device of :data:`DEVICES` matches or the file
  is missing); a prediction is :func:`predict`'s dict with ``examples_per_s`` and the row's ``batch``."""
  kind = (kind or "").lower()
  name = next((n for n, d in DEVICES.items() if any(k in kind for k in d.kinds)), "")
  try:
    with open(path) as f:
      rows = json.load(f)["rows"]
  except (OSError, ValueError, KeyError):
    return "", {}
  if not name:
    return "", {}
  return name, {(r["model"], r["mode"]): {**r["predictions"][name], "batch": r["batch"]} for r in rows}


def main(argv) -> None:
  parser = argparse.ArgumentParser(prog="bin/bench roofline", description=__doc__.splitlines()[0])
  parser.add_argument("--only", default="", help="only the rows whose 'model mode' contains this")
  parser.add_argument("--calls", type=int, default=20, help="calls per round (of 30) of the host-dispatch timing")
  parser.add_argument("--json", default="", help="also write the rows to this file (docs/roofline.json)")
  args = parser.parse_args(argv)
  rows = []
  for model, mode, spec, overrides, replicas in STEPS:
    if args.only and args.only not in f"{model} {mode}":
      continue
    tic = time.perf_counter()
    row = {"model": model, "mode": mode, "config": spec, **step_costs(spec, overrides, replicas, args.calls)}
    row["predictions"] = row_predictions(row)
    rows.append(row)
    print(f"{model} {mode}: {row['flops'] / 1e9:.3g} GFLOP, {row['bytes_accessed'] / 1e6:.3g} MB, "
          f"{row['kernels']} kernels, host {row['host_s'] * 1e3:.3f} ms ({time.perf_counter() - tic:.0f} s)",
          flush=True)
  print("\n" + table(rows))
  if args.json:
    out = {"what": __doc__.split("\n\n")[0], "cpu": _cpu_name(), "commit": _commit(), "jax": jax.__version__,
           "backend": jax.default_backend(), "compiled_for": "cuda, tpu (model lowering); compiled by the CPU's XLA",
           "units": {"flops": "FLOP per step", "bytes_accessed": "bytes per step", "host_s": "seconds per call",
                     "step_s": "seconds"},
           "devices": {n: dataclasses.asdict(d) for n, d in DEVICES.items()}, "rows": rows}
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
