"""bin/bench vs-torch's lwcl half runs without PyTorch (``--no-torch``): the real train step is built,
compiled, timed against the reference matmul, printed as a table and written as JSON. A smoke test of the
benchmark's plumbing only (tiny settings, one round); no timing is asserted and PyTorch is never needed."""

import json
import os
import sys


def test_vs_torch_lwcl_half_runs_without_torch(tmp_path, capsys):
  had_openblas = os.environ.get("OPENBLAS_NUM_THREADS")
  had_torch = "torch" in sys.modules
  from lwcl.benchmarks import vs_torch  # pylint: disable=g-import-not-at-top
  if had_openblas is None:  # the benchmark sets it for its own process; keep later subprocesses unchanged
    os.environ.pop("OPENBLAS_NUM_THREADS", None)
  out = tmp_path / "vs_torch.json"
  vs_torch.main(["--no-torch", "--settings=mlp", "--methods=finetune", "--rounds=1", "--steps=1",
                 "--matmul=64", f"--json={out}"])
  assert ("torch" in sys.modules) == had_torch  # --no-torch never imports PyTorch
  result = json.loads(out.read_text())
  (row,) = result["rows"]
  assert (row["setting"], row["method"], row["examples_per_step"]) == ("mlp", "finetune", 10)
  assert row["lwcl_examples_per_s"] > 0 and row["lwcl_flops_per_step"] > 0
  assert row["torch_examples_per_s"] is None and row["ratio"] is None
  assert set(result["matmul_flops_per_s"]) == {"lwcl"}
  printed = capsys.readouterr().out
  assert "| mlp | fine-tuning |" in printed and "| - | - |" in printed
