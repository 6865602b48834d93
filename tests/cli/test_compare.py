"""bin/compare --seeds: every config over N seeds (replicas of one program), mean +- std in the table."""

import os

import numpy as np
import pytest

from lwcl.cli import compare
from lwcl.errors import ConfigError

from helpers import ROOT, TESTS, TINY_CONFIG_FILE


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_compare_seeds_runs_replicas_reports_mean_std_and_reuses_finished_seeds(tmp_path):
  spec = tmp_path / "tiny.py"
  spec.write_text(TINY_CONFIG_FILE.format(tests=TESTS))
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
  spec.write_text(TINY_CONFIG_FILE.format(tests=TESTS))
  with pytest.raises(ConfigError, match="num_orders or sweep.key; run it with bin/run --config.num_seeds"):
    compare.compare([f"{spec}:finetune"], str(tmp_path / "out"), ["num_orders=2"], seeds=2)
  assert not (tmp_path / "out").exists()


def test_layerwise_configs_and_compare_tables():
  from lwcl.cli import compare
  root = os.path.join(ROOT, "configs")
  c = compare.load_config(f"{root}/layerwise_cifar100.py:resnet110,local+accelerated+convs3",
                          ["train.epochs_per_task=2", "layerwise.readouts=true", "optimizer.learning_rate=1"])
  assert (c.data.name, c.model.depth, c.model.strides, c.layerwise.mode) == ("cifar100", 110, "accelerated", "local")
  assert (c.model.shallow_blocks, c.model.shallow_convs, c.train.epochs_per_task) == (18, 3, 2)
  assert c.layerwise.readouts is True and c.optimizer.learning_rate == 1.0
  assert (c.optimizer.weight_decay, c.train.batch_size, c.scenario.num_tasks) == (5e-4, 128, 1)
  for name in ("layerwise_fmnist", "layerwise_fmnist_depth"):
    g = compare.load_config(f"{root}/{name}.py:resnet20,greedy")
    assert g.layerwise.greedy_epochs_per_block * 3 == g.train.epochs_per_task  # 3 stages
  for bad in (f"{root}/layerwise_fmnist.py:resnet20,sideways", f"{root}/nope.py"):
    with pytest.raises(ConfigError):
      compare.load_config(bad)
  with pytest.raises(ConfigError, match="unknown config key train.epochz"):
    compare.load_config(f"{root}/layerwise_fmnist.py", ["train.epochz=2"])
  assert compare.run_name("configs/layerwise_fmnist.py:resnet20,local+accelerated") == \
      "layerwise_fmnist_resnet20_local-accelerated"
  fake = {"acc": 0.9, "block_acc": [0.5, 0.9], "linear_probe_acc": [0.6, 0.9], "train_seconds": 3.0,
          "layerwise": {"mode": "local", "local_blocks": 2, "depth": [3, 7]},
          "config": {"model": {"name": "resnet", "depth": 8, "strides": "standard"}}}
  md, table_csv = compare.tables(["a", "b"], [fake, {"acc": 0.8, "config": {"model": {"name": "mlp"}}}])
  assert "| a | resnet8 | local | standard | standard | 2 | 90.00 | 50.0 90.0 | 60.0 90.0 | 3 |" in md
  assert table_csv.splitlines()[1].startswith("a,resnet8,local,standard,standard,2,90.00,3.0,50.00,90.00,60.00")


def test_compare_tables_report_which_blocks_forget():
  from lwcl.cli import compare
  fake = {"acc": 0.9, "block_acc": [0.5, 0.9], "block_forgetting": [0.25, None], "train_seconds": 3.0,
          "layerwise": {"mode": "local", "local_blocks": 2, "depth": [3, 7]},
          "config": {"model": {"name": "resnet", "depth": 8, "strides": "standard"}}}
  md, table_csv = compare.tables(["a"], [fake])
  assert md.splitlines()[2].endswith("| 3 | 25.0 nan |")
  assert table_csv.splitlines()[1].endswith(",25.00,nan")
