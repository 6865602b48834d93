"""bin/bench conv's plumbing on tiny shapes (one round): every lowering of each convolution is timed and
reported with its FLOP rate; no timing is asserted."""

import chex

from lwcl.benchmarks import conv as bench_conv
from lwcl.models import onednn


def test_bench_conv_reports_every_lowering_and_pass():
  result = bench_conv.measure(1, 1, 32, shapes={"narrow": (2, 6, 1, 4), "wide": (2, 6, 8, 4)})
  rows = {(r["convolution"], r["lowering"], r["pass"]): r for r in result["rows"]}
  lowerings = {"native", "patches"} | ({"onednn"} if onednn.unavailable_reason() is None else set())
  want = {(n, lw, p) for n in ("narrow", "wide") for lw in lowerings | ({"direct"} if n == "narrow" else set())
          for p in ("forward", "forward + gradients")}
  assert set(rows) == want
  for r in rows.values():
    chex.assert_scalar_positive(r["ms"])
    chex.assert_scalar_positive(r["gflops_per_s"])
  assert result["matmul_flops_per_s"] > 0
