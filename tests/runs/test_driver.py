"""Products of the replica axis: task orders x seeds and sweep candidates x seeds in one vmapped program.

Each replica equals the single run of its order (or candidate) and seed up to float rounding; the layout is
that of each order's (candidate's) ``num_seeds`` run, so those runs find their results finished; the
statistics over orders are those of each order's mean over seeds, and a sweep selects on the mean over
seeds and runs the selected value over the seeds on the test split.
"""

import json
import os

import numpy as np
import pytest

from lwcl.engine import loop
from lwcl.runs import axis as replica_axis
from lwcl.runs import driver, orders, sweep

import helpers
from helpers import small_config

TINY = {**helpers.TINY, "seed": 3}


def _json(path):
  with open(path) as f:
    return json.load(f)


def _no_training(monkeypatch):
  monkeypatch.setattr(loop, "run_stream", lambda *a, **k: pytest.fail("retrained a finished run"))


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
@pytest.mark.parametrize("overrides", [
    {"method.name": "ewc"},  # one stream per order, shared by its seeds
    {"method.name": "agem", "scenario.task_heads": "masked", "train.steps_per_dispatch": 3}])  # masks as data
def test_orders_times_seeds_equal_their_single_runs(tmp_path, monkeypatch, capsys, overrides):
  config = small_config(**TINY, num_orders=2, num_seeds=2, **overrides)
  results = driver.run(config, str(tmp_path / "product"))
  assert "2 task orders x 2 seeds as replicas of one program" in capsys.readouterr().out
  assert results["kind"] == "orders" and results["num_seeds"] == 2 and results["seeds"] == [3, 4]
  all_orders = orders.config_orders(config)
  per = [[_json(tmp_path / "product" / f"order{o}" / f"seed{s}" / "results.json") for s in (3, 4)]
         for o in range(2)]
  # A replica equals the single run of its order and seed (the last replica: another order, another seed).
  single = driver.run(replica_axis.seed_config(orders.order_config(config, all_orders[1]), 4),
                      str(tmp_path / "single"))
  np.testing.assert_allclose(per[1][1]["accuracy_matrix"], single["accuracy_matrix"], atol=2e-3)
  assert per[1][1]["config"] == json.loads(json.dumps(single["config"]))
  # Each order's row is the mean over its seeds; the statistics over orders are over those means.
  for o, row in enumerate(results["orders"]):
    assert row["acc"] == pytest.approx(np.mean([r["acc"] for r in per[o]]))
    assert row["over_seeds"]["acc"]["n"] == 2
    np.testing.assert_allclose(row["accuracy_matrix"], np.mean([r["accuracy_matrix"] for r in per[o]], 0))
  assert results["acc"]["mean"] == pytest.approx(np.mean([row["acc"] for row in results["orders"]]))
  assert "x 2 seeds" in driver.format_summary(results)
  # Each order's folder is that order's finished num_seeds run; the whole product is finished too.
  _no_training(monkeypatch)
  order1 = driver.run(orders.order_config(config, all_orders[1]), str(tmp_path / "product" / "order1"))
  assert order1["kind"] == "seeds" and [r["accuracy_matrix"] for r in order1["runs"]] == \
      [r["accuracy_matrix"] for r in per[1]]
  os.remove(tmp_path / "product" / "results.json")
  assert driver.run(config, str(tmp_path / "product"))["orders"] == results["orders"]


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_orders_times_seeds_one_order_after_another(tmp_path, capsys):
  config = small_config(**TINY, num_orders=2, num_seeds=2, orders_as_replicas=False)
  results = driver.run(config, str(tmp_path))
  out = capsys.readouterr().out
  assert "task order 2/2 over 2 seeds" in out and "as replicas of one program" not in out
  product = config.copy_and_resolve_references()
  product.orders_as_replicas = True
  together = driver.run(product, str(tmp_path / "together"))
  for got, want in zip(results["orders"], together["orders"]):
    np.testing.assert_allclose(got["accuracy_matrix"], want["accuracy_matrix"], atol=2e-3)


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_sweep_times_seeds_selects_on_the_mean_and_runs_the_final_over_seeds(tmp_path, monkeypatch, capsys):
  config = small_config(**TINY, num_seeds=2, **{"method.name": "si", "sweep.key": "method.strength",
                                                "sweep.candidates": (0.1, 1000.0),
                                                "scenario.validation_fraction": 0.2})
  results = driver.run(config, str(tmp_path / "replicas"))
  assert "sweep 2 candidates of method.strength x 2 seeds as replicas" in capsys.readouterr().out
  rows = results["sweep"]["candidates"]
  for row in rows:
    per_seed = [_json(tmp_path / "replicas" / "sweep" / f"{row['value']:g}" / f"seed{s}" / "results.json")
                for s in (3, 4)]
    assert all(r["eval_split"] == "valid" and r["config"]["method"]["strength"] == row["value"] for r in per_seed)
    assert row["acc"] == pytest.approx(np.mean([r["acc"] for r in per_seed]))
  assert results["selected"] == max(rows, key=lambda r: r["acc"])["value"]
  # The final run is the selected value's num_seeds run on the test split.
  assert results["kind"] == "sweep" and results["num_seeds"] == 2 and len(results["runs"]) == 2
  final_seed = _json(tmp_path / "replicas" / "final" / "seed4" / "results.json")
  assert final_seed["eval_split"] == "test" and final_seed["config"]["method"]["strength"] == results["selected"]
  assert "<- selected" in driver.format_summary(results) and "over 2 seeds" in driver.format_summary(results)
  # A replica equals its single run; the candidates one after another (each over its seeds) agree.
  candidate = replica_axis.candidate_config(config, config.sweep.key, 1000.0, "valid")
  single = driver.run(replica_axis.seed_config(candidate, 4),
                      str(tmp_path / "single"))
  got = _json(tmp_path / "replicas" / "sweep" / "1000" / "seed4" / "results.json")
  np.testing.assert_allclose(got["accuracy_matrix"], single["accuracy_matrix"], atol=2e-3)
  monkeypatch.setattr(sweep, "replicable", lambda config: "forced by the test")
  one_by_one = driver.run(config, str(tmp_path / "sequential"))
  assert "run one after another (forced by the test)" in capsys.readouterr().out
  for got, want in zip(rows, one_by_one["sweep"]["candidates"]):
    assert got["acc"] == pytest.approx(want["acc"], abs=2e-3)
  assert one_by_one["selected"] == results["selected"]
