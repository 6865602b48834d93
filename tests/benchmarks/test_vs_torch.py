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


def test_er_step_is_timed_against_fine_tuning_at_twice_the_batch(tmp_path, capsys):
  """The rehearsal setting's two rows do the same forward and backward work (XLA's FLOP count of ER's step
  at batch B + a replay batch of B equals fine-tuning's at 2B up to the buffer's bookkeeping), so their
  seconds per step compare the cost of the buffer; the ratio is reported per side."""
  had_openblas = os.environ.get("OPENBLAS_NUM_THREADS")
  from lwcl.benchmarks import vs_torch  # pylint: disable=g-import-not-at-top
  if had_openblas is None:
    os.environ.pop("OPENBLAS_NUM_THREADS", None)
  out = tmp_path / "vs_torch.json"
  vs_torch.main(["--no-torch", "--settings=rehearsal", "--methods=finetune,er", "--rounds=1", "--steps=1",
                 "--matmul=64", f"--json={out}"])
  result = json.loads(out.read_text())
  rows = {r["method"]: r for r in result["rows"]}
  assert (rows["er"]["examples_per_step"], rows["finetune"]["examples_per_step"]) == (10, 20)
  er, ft = rows["er"]["lwcl_flops_per_step"], rows["finetune"]["lwcl_flops_per_step"]
  assert ft <= er <= 1.01 * ft  # the replay batch is trained on: without it ER's step would count half
  ratio = result["replay_cost"]["rehearsal"]["lwcl"]
  assert ratio == rows["er"]["lwcl_seconds_per_step"] / rows["finetune"]["lwcl_seconds_per_step"]
  printed = capsys.readouterr().out
  assert "| rehearsal | ER |" in printed and f"| rehearsal | {ratio:.2f}x |" in printed
