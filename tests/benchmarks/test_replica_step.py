"""``bin/bench replica-step`` runs end to end on a real config and reports its ratios."""

import json

from lwcl.benchmarks import replica_step


def test_replica_step_reports_single_replicas_and_matmul(tmp_path, capsys):
  out = tmp_path / "rs.json"
  replica_step.main(["--method=ewc", "--replicas=2", "--steps=2", "--rounds=1", f"--json={out}"])
  assert "2 replicas" in capsys.readouterr().out
  got = json.loads(out.read_text())
  assert got["method"] == "ewc" and got["replicas"] == 2 and got["batch"] == 64
  assert set(got["median_ms"]) == {"single", "2 replicas", "matmul"}
  assert all(v > 0 for v in got["median_ms"].values()) and got["per_replica_ratio"] > 0
  assert got["matmul_gflops"] > 0
