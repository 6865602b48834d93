"""The diagnostic studies of lwcl.studies run end to end and report consistent quantities."""

import json

import numpy as np
import pytest

from conftest import small_config
from lwcl.errors import ConfigError
from lwcl.studies import lgd_push


def test_lgd_push_probe(tmp_path):
  config = small_config(**{"method.name": "lgd", "method.lgd_margin": 0.5, "method.lgd_single_task_push": True,
                           "method.memory_per_task": 20, "scenario.num_tasks": 3})
  rows = lgd_push.run(config, str(tmp_path), num_batches=3)
  assert [r["task"] for r in rows] == [2, 3] and [r["old_tasks"] for r in rows] == [1, 2]
  for r in rows:
    assert r["equation/push_norm"] == 0.0  # the push is what the margin adds to the equation's rule
    # n * max(0, a / n + m) >= max(0, a + m) for a <= 0: the sum push is never shorter than the mean push.
    assert r["sum/push_norm"] >= r["mean/push_norm"] - 1e-6
  # With one old task the sum and the mean are the same vector.
  assert rows[0]["sum/push_norm"] == pytest.approx(rows[0]["mean/push_norm"], rel=1e-5)
  saved = json.loads((tmp_path / "lgd_push.json").read_text())
  assert saved["rows"] == rows and (tmp_path / "lgd_push.png").exists()
  with pytest.raises(ConfigError, match="not lgd"):
    lgd_push.run(small_config(), str(tmp_path / "x"), 1)


def _orders_results(method, finals_by_order):
  """A fake num_orders results.json: order r presents the tasks reversed when r is odd."""
  orders = []
  for r, finals in enumerate(finals_by_order):
    names = ["a", "b", "c"] if r % 2 == 0 else ["c", "b", "a"]
    last = [finals[n] for n in names]
    orders.append({"order": r, "tasks": names, "acc": sum(last) / 3, "accuracy_matrix": [[0, 0, 0], [0, 0, 0], last]})
  return {"method": method, "orders": orders, "config": {"method": {"strength": 1.0}}}


def test_order_spread_statistics_and_bootstrap(tmp_path):
  from lwcl.studies import order_spread
  finals = [{"a": 0.9, "b": 0.5, "c": 0.7}, {"a": 0.8, "b": 0.6, "c": 0.7}, {"a": 0.6, "b": 0.6, "c": 0.4}]
  for name, by_order in (("ft", finals), ("nai", [{"a": 0.8, "b": 0.8, "c": 0.8}] * 3)):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(_orders_results(name, by_order)))
  result = order_spread.analyse([str(tmp_path / "ft"), str(tmp_path / "nai")], num_resamples=200)
  ft, nai = result["rows"]
  # Per task max - min across orders: a 0.3, b 0.1, c 0.3 (by name, whatever the position).
  assert ft["aopd"] == pytest.approx(100 * (0.3 + 0.1 + 0.3) / 3) and ft["mopd"] == pytest.approx(30.0)
  accs = [sum(f.values()) / 3 for f in finals]
  assert ft["acc_std"] == pytest.approx(100 * float(np.std(accs)))
  assert nai["aopd"] == nai["mopd"] == nai["acc_std"] == 0.0 and nai["aopd_ci"] == [0.0, 0.0]
  assert ft["aopd_ci"][0] <= ft["aopd"] <= ft["aopd_ci"][1] + 1e-9  # resamples can only shrink the range
  lo, hi = nai["aopd_minus_first_ci"]
  assert hi <= 0.0 and lo >= -ft["aopd"] - 1e-9
  assert "| nai | 1.0 |" in order_spread.table(result)
  with pytest.raises(ValueError, match="not found"):
    order_spread.analyse([str(tmp_path / "missing")])


def _depth_run(root, name, seed, mode, acc, heads, depth=20):
  """A fake single-task layer-wise results.json under root/name/seed<seed>/."""
  run = root / name / f"seed{seed}"
  run.mkdir(parents=True)
  (run / "results.json").write_text(json.dumps({
      "kind": "single", "acc": acc, "block_accuracy": [[[h] for h in heads]], "epoch_accuracy": [[0.5, 0.6, acc, acc]],
      "scenario": {"num_tasks": 1}, "linear_probe_accuracy": [[0.7], [0.6]], "train_seconds": 10.0, "examples_per_second": 100.0,
      "config": {"model": {"name": "resnet", "depth": depth}, "layerwise": {"mode": mode},
                 "optimizer": {"decay_every_epochs": 2}}}))
  (run / "maxrss_kib.txt").write_text("1234\n")


def test_layerwise_depth_table_pairs_seeds(tmp_path, capsys):
  from lwcl.studies import layerwise_depth
  study = tmp_path / "study"
  for seed, (bp, lo, acc) in enumerate([(0.90, 0.86, 0.87), (0.92, 0.87, 0.86)]):
    _depth_run(study, "d_resnet20_backprop", seed, "backprop", bp, [0.5, bp])
    _depth_run(study, "d_resnet20_local", seed, "local", lo, [0.88, lo])
    _depth_run(study, "d_resnet20_local-accelerated", seed, "local", acc, [0.8, 0.89 + seed / 100, acc][:2])
  _depth_run(study, "d_resnet20_local-accelerated", 2, "local", 0.5, [0.5, 0.5])  # no backprop seed 2
  _depth_run(study, "d_resnet20_local-convs1", 0, "local", 0.85, [0.85, 0.8])  # one seed: no spread shown
  result = layerwise_depth.analyse(layerwise_depth.load_runs(str(study)))
  backprop, local, accel, _ = result["groups"]
  assert [g["variant"] for g in result["groups"]] == ["backprop", "local", "local+accelerated", "local+convs1"]
  assert backprop["gap_to_backprop"] is None and local["against_local"] is None
  assert local["gap_to_backprop"]["per_seed"] == pytest.approx([4.0, 5.0])
  assert local["gap_to_backprop"]["mean_std"] == pytest.approx([4.5, 0.5])  # population std, as bin/compare
  assert accel["gap_to_backprop"]["seeds"] == [0, 1]  # paired: seed 2 has no backprop run
  assert accel["against_local"]["per_seed"] == pytest.approx([1.0, -1.0])
  assert accel["acc"] == pytest.approx([100 * float(np.mean([0.87, 0.86, 0.5])), 100 * float(np.std([0.87, 0.86, 0.5]))])
  assert local["best_head_blocks"] == [1, 1] and accel["best_head_blocks"] == [2, 2, 1]
  assert accel["best_head"][0] == pytest.approx((89 + 90 + 50) / 3)
  layerwise_depth.main([str(study), "--out", str(tmp_path / "out")])
  md = (tmp_path / "out" / "layerwise_depth.md").read_text()
  assert "| ResNet-20 | local | 0,1 | 86.50 ± 0.50 | 4.50 ± 0.50 | - |" in md
  assert "| ResNet-20 | local+convs1 | 0 | 85.00 | 5.00 | -1.00 (-1.00) | 85.0 (1 of 2) | 80.0 |" in md
  assert "| ResNet-20 | backprop | 0 | 90.00 | 90.0 (2) | 90.0 | 70.0 (1) / 60.0 | 50.0 60.0 \\| 90.0 90.0 | 10 s, 100.0 ex/s | 1,234 |" in md
  assert (tmp_path / "out" / "layerwise_depth.png").exists()
  with pytest.raises(SystemExit):
    layerwise_depth.main([str(tmp_path / "empty"), "--out", str(tmp_path / "out2")])
  assert "no finished run" in capsys.readouterr().err
  multi = tmp_path / "multi"
  _depth_run(multi, "x", 0, "local", 0.5, [0.5])
  path = multi / "x" / "seed0" / "results.json"
  path.write_text(path.read_text().replace('"num_tasks": 1', '"num_tasks": 5'))
  with pytest.raises(ValueError, match="not a single-task layer-wise run"):
    layerwise_depth.load_runs(str(multi))
