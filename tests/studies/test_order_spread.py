"""lwcl.studies.order_spread: statistics and bootstrap over task orders."""

import json

import numpy as np
import pytest


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
