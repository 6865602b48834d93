"""bin/compare --seeds: every config over N seeds (replicas of one program), mean +- 95% t-interval and std in the
table, paired differences; where the runs' provenance differs, and seeds of mixed provenance refused."""

import os

import numpy as np
import pytest
import scipy.stats

from lwcl.cli import compare
from lwcl.errors import ConfigError
from lwcl.platform import provenance

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
  acc = stats["acc"]
  row = (f"| tiny_finetune | finetune | 2 | {100 * acc['mean']:.2f} +- {100 * acc['ci95_half_width']:.2f} "
         f"({100 * acc['std']:.2f}) |")
  assert row in md and (out / compare.PLOT).exists() and (out / compare.PAIRED_CSV).exists()
  assert "| tiny_ewc - tiny_finetune | 2 |" in md and "provenance" not in md  # one machine: nothing differs
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


def test_compare_tables_add_a_task_il_column_when_a_run_has_it():
  plain = {"acc": 0.5, "train_seconds": 3.0, "config": {"model": {"name": "mlp"}}}
  md, table_csv = compare.tables(["a"], [plain])
  assert "Task-IL" not in md and "task_il" not in table_csv  # the table as before
  md, table_csv = compare.tables(["a", "b"], [plain, {**plain, "task_il_acc": 0.875}])
  header, rule = md.splitlines()[:2]
  assert "| final acc % | Task-IL acc % | block heads" in header and rule == "| --- " * 12 + "|"
  assert "| 50.00 | - | - |" in md.splitlines()[2] and "| 50.00 | 87.50 | - |" in md.splitlines()[3]
  assert table_csv.splitlines()[0].startswith("run,model,mode,strides,intensity,local_blocks,acc,task_il_acc,train")
  assert table_csv.splitlines()[1].endswith(",50.00,,3.0") and table_csv.splitlines()[2].endswith(",50.00,87.50,3.0")
  seeds = [[_seed(s, 0.5 + s / 10, BLOCK) for s in (0, 1)], [{**_seed(s, 0.5, BLOCK), "task_il_acc": 0.8 + s / 10}
                                                            for s in (0, 1)]]
  md, table_csv = compare.seed_tables(["a", "b"], seeds)
  assert md.splitlines()[0] == ("| run | method | seeds | ACC % | Task-IL ACC % | BWT % | forgetting % | LCA % | "
                                "train s |")
  row_a, row_b = (next(line for line in md.splitlines() if line.startswith(f"| {n} |")) for n in "ab")
  assert row_b.split(" | ")[4].startswith("85.00 +- ") and row_a.split(" | ")[4] == "-"
  assert "task_il_acc_mean,task_il_acc_std" in table_csv.splitlines()[0]
  assert "Task-IL" not in compare.seed_tables(["a"], seeds[:1])[0]


def _seed(seed, acc, prov, method="finetune"):
  return {"config": {"seed": seed}, "method": method, "acc": acc, "bwt": -acc / 10, "forgetting": acc / 10,
          "train_seconds": 2.0, "provenance": prov}


BLOCK = {"cpu": {"vendor": "AuthenticAMD", "family": 25, "model": 17, "isa": ["avx", "avx2", "avx512f"]},
         "packages": {"jaxlib": "0.10.2"}, "lwcl": {"commit": "a" * 40, "dirty": False}}
AVX2 = {**BLOCK, "cpu": {**BLOCK["cpu"], "family": 23, "model": 49, "isa": ["avx", "avx2"]}}


def test_seed_tables_give_the_t_interval_the_std_and_paired_differences():
  a = [_seed(s, v, BLOCK) for s, v in zip((0, 1, 2), (0.50, 0.55, 0.61))]
  b = [_seed(s, v, BLOCK, "ewc") for s, v in zip((0, 1, 2), (0.53, 0.60, 0.62))]
  md, table_csv = compare.seed_tables(["a", "b"], [a, b])
  v = np.asarray([0.50, 0.55, 0.61])
  half = 4.302653 * v.std(ddof=1) / np.sqrt(3)
  assert f"| a | finetune | 3 | {100 * v.mean():.2f} +- {100 * half:.2f} ({100 * v.std():.2f}) |" in md
  d = np.asarray([0.03, 0.05, 0.01])  # b - a per seed
  lo, hi = scipy.stats.t.interval(0.95, 2, loc=d.mean(), scale=scipy.stats.sem(d))
  assert f"| b - a | 3 | {100 * d.mean():.2f} +- {100 * (hi - lo) / 2:.2f} |" in md
  header, row_a = table_csv.splitlines()[:2]
  assert header.startswith("run,method,seeds,acc_mean,acc_std,") and header.endswith("train_seconds_ci95_half_width")
  assert row_a.split(",")[3:5] == [f"{v.mean():.6g}", f"{v.std():.6g}"]
  pairs = compare.paired_differences(["a", "b", "c"], [a, b, b[1:]])  # c ran seeds 1 and 2 only
  assert [(p["b"], p["a"], p["seeds"]) for p in pairs] == [("b", "a", [0, 1, 2]), ("c", "a", [1, 2]),
                                                           ("c", "b", [1, 2])]
  assert pairs[0]["acc"]["ci95"] == pytest.approx([lo, hi]) and pairs[2]["acc"]["mean"] == 0.0
  paired = compare.paired_csv(pairs).splitlines()
  assert paired[0].startswith("b,a,seeds,acc_mean_diff,acc_ci95_half_width,acc_ci95_low,acc_ci95_high")
  assert paired[1].startswith(f"b,a,3,{d.mean():.6g},{(hi - lo) / 2:.6g},{lo:.6g},{hi:.6g},")


def test_provenance_lines_refusal_and_mixed_provenance():
  same = [_seed(0, 0.5, BLOCK), _seed(1, 0.6, BLOCK)]
  other_commit = {**BLOCK, "lwcl": {"commit": "b" * 40, "dirty": True}}
  lines, notes = provenance.notes(["x", "y"], [same, [_seed(0, 0.5, other_commit), _seed(1, 0.6, None)]])
  assert lines == [f"provenance differs: lwcl.commit: \"{'a' * 40}\" (x/seed0, x/seed1); \"{'b' * 40}\" (y/seed0)",
                   "provenance differs: lwcl.dirty: false (x/seed0, x/seed1); true (y/seed0)",
                   "provenance not recorded (results of an older lwcl): y/seed1"]
  assert notes == []  # a commit does not change numbers by itself; unknown provenance is not a difference
  mixed = [_seed(0, 0.5, BLOCK), _seed(1, 0.6, AVX2)]
  with pytest.raises(ConfigError) as e:
    provenance.notes(["x"], [mixed])
  message = str(e.value)
  assert "\n" not in message and message.startswith("the seeds of x were computed on different platforms")
  assert "cpu.isa: avx avx2 avx512f (x/seed0); avx avx2 (x/seed1)" in message and "--mixed-provenance" in message
  lines, notes = provenance.notes(["x", "y"], [mixed, same], mixed_provenance=True)
  assert "provenance differs: cpu.family: 25 (x/seed0, y/seed0, y/seed1); 23 (x/seed1)" in lines
  assert notes == ["note: --mixed-provenance: the seeds of x differ in cpu.family, cpu.isa, cpu.model; its mean "
                   "mixes platforms or software."]
  _, notes = provenance.notes(["x", "y"], [[_seed(0, 0.5, {**BLOCK, "conv_impl": "onednn"})],
                                                  [_seed(0, 0.5, {**AVX2, "conv_impl": "native"})]], seeds=False)
  assert notes == ["note: the compared runs differ in cpu.family, cpu.isa, cpu.model (lines above the table); "
                   "their differences include the platform's."]


def test_bin_compare_refuses_mixed_seeds_with_one_line_and_exit_2_unless_told(tmp_path, monkeypatch, capsys):
  spec = tmp_path / "tiny.py"
  spec.write_text(TINY_CONFIG_FILE.format(tests=TESTS))
  out = tmp_path / "out"
  # Seed 1 finished earlier on an AVX2 machine, seed 0 here: what run_seeds reads back from OUT/<name>/seed<s>.
  monkeypatch.setattr(compare, "run_seeds", lambda config, workdir, n: [_seed(0, 0.5, BLOCK), _seed(1, 0.6, AVX2)])
  with pytest.raises(SystemExit) as e:
    compare.main([f"{spec}:finetune", f"--out={out}", "--seeds=2"])
  assert e.value.code == 2
  captured = capsys.readouterr()
  errors = [l for l in captured.err.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and captured.err.rstrip().splitlines()[-1] == errors[0]
  assert "error: the seeds of tiny_finetune were computed on different platforms" in errors[0]
  assert "; rerun the seeds that differ on one machine" in errors[0]
  assert "provenance differs" not in captured.out and not (out / compare.TABLE_MD).exists()  # no table
  compare.main([f"{spec}:finetune", f"--out={out}", "--seeds=2", "--mixed-provenance"])
  captured = capsys.readouterr()
  assert "provenance differs: cpu.isa: avx avx2 avx512f (tiny_finetune/seed0); avx avx2 (tiny_finetune/seed1)" \
      in captured.out
  md = (out / compare.TABLE_MD).read_text()
  assert md.rstrip().splitlines()[-1].startswith("note: --mixed-provenance: the seeds of tiny_finetune differ in")
