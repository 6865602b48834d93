"""bin/compare --seeds: every config over N seeds (replicas of one program), mean +- std in the table."""

import os

import numpy as np
import pytest

from helpers import TINY_CONFIG_FILE
from lwcl.cli import compare
from lwcl.errors import ConfigError


def test_compare_seeds_runs_replicas_reports_mean_std_and_reuses_finished_seeds(tmp_path):
  spec = tmp_path / "tiny.py"
  spec.write_text(TINY_CONFIG_FILE.format(tests=os.path.dirname(os.path.abspath(__file__))))
  out = tmp_path / "out"
  per_seed_lists = compare.compare([f"{spec}:finetune", f"{spec}:ewc"], str(out), ["eval.lca_batches=2"], seeds=2)
  assert [len(p) for p in per_seed_lists] == [2, 2]
  for name in ("tiny_finetune", "tiny_ewc"):
    for s in (0, 1):
      assert (out / name / f"seed{s}" / "results.json").exists()
    assert (out / name / "results.json").exists()  # the replicas' summary
  finetune = per_seed_lists[0]
  assert [r["config"]["seed"] for r in finetune] == [0, 1] and finetune[0]["acc"] != finetune[1]["acc"]
  stats = compare.seed_statistics(finetune)
  assert stats["acc"]["mean"] == pytest.approx(np.mean([r["acc"] for r in finetune]))
  assert stats["acc"]["std"] == pytest.approx(np.std([r["acc"] for r in finetune]))
  assert stats["lca"]["n"] == 2
  md = (out / compare.TABLE_MD).read_text()
  row = f"| tiny_finetune | finetune | 2 | {100 * stats['acc']['mean']:.2f} +- {100 * stats['acc']['std']:.2f} |"
  assert row in md and (out / compare.PLOT).exists()
  # A second call finds every seed finished and trains nothing.
  stamp = os.path.getmtime(out / "tiny_ewc" / "seed1" / "results.json")
  again = compare.compare([f"{spec}:finetune", f"{spec}:ewc"], str(out), ["eval.lca_batches=2"], seeds=2)
  assert again[1][1]["accuracy_matrix"] == per_seed_lists[1][1]["accuracy_matrix"]
  assert os.path.getmtime(out / "tiny_ewc" / "seed1" / "results.json") == stamp
  with pytest.raises(ConfigError, match="seeds"):
    compare.compare([f"{spec}:finetune"], str(out), seeds=-1)


def test_compare_seeds_refuses_a_config_of_orders_or_a_sweep_before_any_run(tmp_path):
  spec = tmp_path / "tiny.py"
  spec.write_text(TINY_CONFIG_FILE.format(tests=os.path.dirname(os.path.abspath(__file__))))
  with pytest.raises(ConfigError, match="num_orders or sweep.key; run it with bin/run --config.num_seeds"):
    compare.compare([f"{spec}:finetune"], str(tmp_path / "out"), ["num_orders=2"], seeds=2)
  assert not (tmp_path / "out").exists()
