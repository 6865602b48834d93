"""``bin/bench roofline``: the roofline arithmetic against hand computations, XLA's counts of programs whose cost is
known, the stored table (``docs/roofline.json``) complete and consistent, and ``bin/gpu-check``'s comparison."""

import json
import os

import jax
import jax.numpy as jnp
import pytest

from lwcl.benchmarks import gpu_check, roofline

from helpers import ROOT

H100, V5E = roofline.DEVICES["H100"], roofline.DEVICES["TPU v5e"]


def test_predict_takes_the_largest_of_compute_memory_and_dispatch_by_hand():
  # 4.947 TFLOP on 494.7 TFLOP/s = 10 ms; 3.35 GB on 3.35 TB/s = 1 ms; 0.1 ms + 10 kernels x 4 us = 0.14 ms
  p = roofline.predict(4.947e12, 3.35e9, 1e-4, 10, H100)
  assert p["compute_s"] == pytest.approx(0.01) and p["memory_s"] == pytest.approx(1e-3)
  assert p["dispatch_s"] == pytest.approx(1.4e-4) and p["bound"] == "compute" and p["step_s"] == p["compute_s"]
  p = roofline.predict(1e9, 3.35e10, 1e-4, 10, H100)  # 2 us of compute, 10 ms of memory traffic
  assert p["bound"] == "memory" and p["step_s"] == pytest.approx(0.01)
  p = roofline.predict(1e9, 1e6, 5e-5, 1000, H100)  # 1000 launches x 4 us + 50 us
  assert p["bound"] == "dispatch" and p["step_s"] == pytest.approx(4.05e-3)
  p = roofline.predict(1e9, 8.19e6, 5e-5, 1000, V5E)  # a TPU program is one launch: 10 us of memory < 50 us host
  assert p["dispatch_s"] == pytest.approx(5e-5) and p["memory_s"] == pytest.approx(1e-5) and p["bound"] == "dispatch"
  with pytest.raises(ValueError):
    roofline.predict(-1.0, 0.0, 0.0, 0, H100)


def test_the_devices_peaks_are_the_documented_ones():
  assert H100.matmul_flops == 494.7e12 and H100.bf16_flops == 989.4e12 and H100.hbm_bytes_per_s == 3.35e12
  assert roofline.DEVICES["H200"].hbm_bytes_per_s == 4.8e12 and roofline.DEVICES["H200"].matmul_flops == 494.7e12
  assert V5E.matmul_flops == 197e12 and V5E.hbm_bytes_per_s == 819e9
  assert all(d.sources for d in roofline.DEVICES.values())


def test_xla_counts_a_matmul_as_two_flops_per_multiply_add_and_its_operands_bytes():
  b, d, h = 32, 64, 16
  compiled = jax.jit(jnp.matmul).lower(jnp.ones((b, d)), jnp.ones((d, h))).compile()
  cost = roofline.program_cost(compiled)
  assert cost["flops"] == 2 * b * d * h
  assert cost["bytes_accessed"] == 4 * (b * d + d * h + b * h)  # float32: both operands read, the result written
  assert roofline.count_kernels(compiled.as_text()) == 1


HLO = """HloModule m

%body (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %p = (s32[], f32[4]{0}) parameter(0)
  %a = s32[] get-tuple-element(%p), index=0
  %f = f32[4]{0} fusion(%p), kind=kLoop, calls=%x
  %g = s32[] add(%a, %a)
  ROOT %t = (s32[], f32[4]{0}) tuple(%g, %f)
}

%cond (q: (s32[], f32[4])) -> pred[] {
  %q = (s32[], f32[4]{0}) parameter(0)
  ROOT %c = pred[] fusion(%q), kind=kLoop, calls=%y
}

ENTRY %main (x: f32[4]) -> f32[4] {
  %x = f32[4]{0} parameter(0)
  %k = s32[] constant(0)
  %cp = f32[4]{0} copy(%x)
  %t0 = (s32[], f32[4]{0}) tuple(%k, %cp)
  %w = (s32[], f32[4]{0}, s32[], s32[], s32[], /*index=5*/s32[]) while(%t0), condition=%cond, body=%body
  %o = f32[4]{0} get-tuple-element(%w), index=1
  ROOT %r = f32[4]{0} custom-call(%o), custom_call_target="foo"
}
"""


def test_count_kernels_counts_the_entry_and_a_loop_body_once_and_skips_free_operations():
  # entry: copy, custom-call (2); the loop: its condition's fusion (1) and its body's fusion and add (2)
  assert roofline.count_kernels(HLO) == 5
  with pytest.raises(ValueError):
    roofline.count_kernels("HloModule empty\n")


def test_the_convnet_step_built_for_accelerators_counts_its_convolutions():
  """The default ConvNet's step lowered for cuda/tpu (XLA convolutions, no oneDNN custom call): about three
  times the forward FLOPs of its layers (forward, input and weight gradients), counted by hand."""
  batch = 8
  row = roofline.step_costs("configs/default.py", ["train.batch_size=8"], calls=5)
  # 3x3 convolutions 1->32 on 28x28 and 32->64 on 14x14 (2x2 pools), Dense 7*7*64 -> 128: per example
  forward = 2 * (28 * 28 * 32 * 9 * 1 + 14 * 14 * 64 * 9 * 32 + 7 * 7 * 64 * 128)
  assert 2.5 * forward * batch < row["flops"] < 3.5 * forward * batch
  assert row["conv_impl"] == "native" and row["batch"] == batch
  assert row["bytes_accessed"] > 0 and row["kernels"] > 10 and row["host_s"] > 0


def _stored():
  with open(roofline.DEFAULT_JSON) as f:
    return json.load(f)


def test_the_stored_table_predicts_every_step_on_every_device_consistently():
  got = _stored()
  assert got["cpu"] and got["commit"] and got["jax"]
  assert [(r["model"], r["mode"]) for r in got["rows"]] == [(m, mode) for m, mode, *_ in roofline.STEPS]
  for r in got["rows"]:
    assert r["flops"] > 0 and r["bytes_accessed"] > 0 and r["kernels"] > 0 and r["host_s"] > 0
    assert r["conv_impl"] == "native"  # XLA's convolutions, counted (never the CPU's oneDNN custom calls)
    assert set(r["predictions"]) == set(roofline.DEVICES)
    for name, p in r["predictions"].items():
      again = roofline.predict(r["flops"], r["bytes_accessed"], r["host_s"], r["kernels"], roofline.DEVICES[name])
      assert p["bound"] == again["bound"] and p["step_s"] == pytest.approx(again["step_s"])
      assert p["step_s"] == max(p["compute_s"], p["memory_s"], p["dispatch_s"])
  rows = {(r["model"], r["mode"]): r for r in got["rows"]}
  for v in ("backprop", "local", "local+accelerated"):  # deeper costs more; accelerated downsampling less
    assert rows[("ResNet-56", v)]["flops"] > 2 * rows[("ResNet-20", v)]["flops"]
  for d in (20, 56):
    assert rows[(f"ResNet-{d}", "local+accelerated")]["flops"] < rows[(f"ResNet-{d}", "local")]["flops"]
  one, eight = rows[("MLP 2x100 (GEM protocol)", "GEM")], rows[("MLP 2x100 (GEM protocol)", "GEM, 8 replicas")]
  assert eight["replicas"] == 8 and 7 * one["flops"] < eight["flops"] < 9 * one["flops"]


def test_predictions_for_matches_device_kinds():
  assert roofline.predictions_for("NVIDIA H100 80GB HBM3")[0] == "H100"
  assert roofline.predictions_for("NVIDIA H200")[0] == "H200"
  name, table = roofline.predictions_for("TPU v5 lite")
  assert name == "TPU v5e" and table[("ConvNet", "fine-tuning")]["batch"] == 64
  assert roofline.predictions_for("cpu") == ("", {})
  assert roofline.predictions_for("NVIDIA H100 80GB HBM3", os.path.join(ROOT, "no-such.json")) == ("", {})


def test_gpu_check_puts_its_measurements_next_to_the_predictions():
  table = roofline.predictions_for("NVIDIA H100 80GB HBM3")[1]
  predicted = table[("ResNet-20", "local")]["step_s"]
  report = {"dry_run": False, "device": {"kind": "NVIDIA H100 80GB HBM3"}, "steps": {
      "default_run": {"figures": {"examples_per_second": 6400.0}},
      "layerwise": {"figures": {"rows": [
          {"variant": "resnet20,local", "batch": 128, "steps_per_second": 0.5 / predicted},
          {"variant": "resnet8,local", "batch": 16, "steps_per_second": 9.0}]}},
      "gem_replicas": {"figures": {"examples_per_second": 8000.0}}}}
  got = gpu_check.compare(report)
  assert got["device"] == "H100"
  rows = {r["what"]: r for r in got["rows"]}
  assert set(rows) == {"default run (ConvNet, batch 64)", "resnet20,local, batch 128", "GEM MLP, 8 replicas, batch 10"}
  assert rows["resnet20,local, batch 128"]["ratio"] == pytest.approx(2.0)  # measured twice the predicted time
  assert rows["default run (ConvNet, batch 64)"]["measured_s"] == pytest.approx(0.01)
  assert rows["GEM MLP, 8 replicas, batch 10"]["measured_s"] == pytest.approx(0.01)
  report["roofline"] = got
  assert "| resnet20,local, batch 128 |" in gpu_check._comparison(report)  # pylint: disable=protected-access
  report = {**report, "dry_run": True, "device": {"kind": "cpu"}}
  report["roofline"] = gpu_check.compare(report)
  assert report["roofline"]["rows"] == [] and "no roofline prediction" in gpu_check._comparison(report)  # pylint: disable=protected-access
