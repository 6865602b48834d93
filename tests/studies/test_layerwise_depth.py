"""lwcl.studies.layerwise_depth: the depth table pairs seeds across modes."""

import json

import numpy as np
import pytest


def _depth_run(root, name, seed, mode, acc, heads, depth=20):
  """A fake single-task layer-wise results.json under root/name/seed<seed>/."""
  run = root / name / f"seed{seed}"
  run.mkdir(parents=True)
  (run / "results.json").write_text(json.dumps({
      "kind": "single", "acc": acc, "block_accuracy": [[[h] for h in heads]], "epoch_accuracy": [[0.5, 0.6, acc, acc]],
      "scenario": {"num_tasks": 1}, "linear_probe_accuracy": [[0.7], [0.6]], "train_seconds": 10.0,
      "examples_per_second": 100.0,
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
  assert accel["acc"] == pytest.approx([100 * float(np.mean([0.87, 0.86, 0.5])),
                                        100 * float(np.std([0.87, 0.86, 0.5]))])
  assert local["best_head_blocks"] == [1, 1] and accel["best_head_blocks"] == [2, 2, 1]
  assert accel["best_head"][0] == pytest.approx((89 + 90 + 50) / 3)
  layerwise_depth.main([str(study), "--out", str(tmp_path / "out")])
  md = (tmp_path / "out" / "layerwise_depth.md").read_text()
  assert "| ResNet-20 | local | 0,1 | 86.50 ± 0.50 | 4.50 ± 0.50 | - |" in md
  assert "| ResNet-20 | local+convs1 | 0 | 85.00 | 5.00 | -1.00 (-1.00) | 85.0 (1 of 2) | 80.0 |" in md
  assert ("| ResNet-20 | backprop | 0 | 90.00 | 90.0 (2) | 90.0 | 70.0 (1) / 60.0 | 50.0 60.0 \\| 90.0 90.0 "
          "| 10 s, 100.0 ex/s | 1,234 |") in md
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


def _bad_run(tmp_path, edit=None, text=None, seed_dir="seed0", maxrss=None):
  study = tmp_path / "study"
  _depth_run(study, "d_resnet20_backprop", 0, "backprop", 0.9, [0.5, 0.9])
  _depth_run(study, "d_resnet20_local", 0, "local", 0.8, [0.5, 0.8])
  path = study / "d_resnet20_local" / "seed0" / "results.json"
  if edit is not None:
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))
  if text is not None:
    path.write_text(text)
  if maxrss is not None:
    (path.parent / "maxrss_kib.txt").write_text(maxrss)
  if seed_dir != "seed0":
    path.parent.rename(path.parent.parent / seed_dir)
  return study


# Partial or foreign outputs (issue 32): each refused with one line naming the file; none averaged into a
# table (acc null and a null block accuracy became NaN).
@pytest.mark.parametrize("kwargs,fragment", [
    (dict(text="{trunc"), "seed0/results.json is not valid JSON"),
    (dict(text="[1, 2]"), "seed0/results.json holds a JSON list"),
    (dict(edit=lambda d: d.update(acc=None)), "results.json: acc is null, not a finite number"),
    (dict(edit=lambda d: d.update(block_accuracy=[[[None], [0.5]]])), "block_accuracy is [[[null], [0.5]]]"),
    (dict(edit=lambda d: d.update(epoch_accuracy="abc")), 'epoch_accuracy is "abc", not a list of finite'),
    (dict(edit=lambda d: d.pop("scenario")), "scenario.num_tasks is missing"),
    (dict(edit=lambda d: d["config"].pop("model")), "config.model.name is missing"),
    (dict(edit=lambda d: d.pop("train_seconds")), "train_seconds is missing"),
    (dict(maxrss=""), "maxrss_kib.txt holds no peak RSS in KiB"),
    (dict(maxrss="lots\n"), "maxrss_kib.txt holds no peak RSS in KiB"),
    (dict(seed_dir="seedx"), "d_resnet20_local/seedx is not named seed<integer>"),
])
def test_partial_results_end_in_one_line(tmp_path, capsys, kwargs, fragment):
  from lwcl.studies import layerwise_depth
  study = _bad_run(tmp_path, **kwargs)
  with pytest.raises(SystemExit) as e:
    layerwise_depth.main([str(study), "--out", str(tmp_path / "out")])
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
  assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
  from lwcl.studies import layerwise_depth
  study = _bad_run(tmp_path)
  out = tmp_path / "out.md"
  out.write_text("kept\n")
  with pytest.raises(SystemExit) as e:
    layerwise_depth.main([str(study), "--out", str(out)])
  err = capsys.readouterr().err
  assert e.value.code == 2 and err == f"error: --out {out} is a file, not a folder; pass the path of a folder (it is " \
      "created when missing)\n"
  assert out.read_text() == "kept\n"
