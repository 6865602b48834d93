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


def _edit(changes):
  def edit(d):
    for r, key, value in changes:
      (d["orders"][r] if r is not None else d)[key] = value
  return edit


# Partial or foreign outputs (issue 32): each refused with one line naming the file and the entry; none is
# averaged into a table (acc null became NaN, "0.8" became 0.8).
@pytest.mark.parametrize("edit,fragment", [
    (_edit([(0, "acc", None)]), "orders.0.acc is null, not a finite number"),
    (_edit([(1, "acc", "0.8")]), 'orders.1.acc is "0.8", not a finite number'),
    (_edit([(2, "acc", float("nan"))]), "orders.2.acc is NaN"),
    (_edit([(0, "accuracy_matrix", [[0.5]])]), "orders.0.accuracy_matrix has shape [1, 1], not [T, T] for its 3"),
    (_edit([(0, "accuracy_matrix", [[0.5, None, 0.1]] * 3)]), "orders.0.accuracy_matrix is [[0.5, null"),
    (_edit([(None, "orders", [None])]), "orders.0 is null, not an object"),
    (_edit([(None, "orders", {})]), "orders is {}, not a non-empty list"),
    (_edit([(None, "method", None)]), "method is null, not a string"),
    (lambda d: d.pop("orders"), "not a num_orders run (no 'orders'"),
])
def test_partial_results_end_in_one_line(tmp_path, capsys, edit, fragment):
  from lwcl.studies import order_spread
  results = _orders_results("ft", [{"a": 0.9, "b": 0.5, "c": 0.7}] * 3)
  edit(results)
  (tmp_path / "ft").mkdir()
  (tmp_path / "ft" / "results.json").write_text(json.dumps(results))
  with pytest.raises(SystemExit) as e:
    order_spread.main([str(tmp_path / "ft"), "--out", str(tmp_path / "out"), "--resamples=10"])
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
  assert "ft/results.json: " in err or "ft/results.json " in err
  assert not (tmp_path / "out").exists()
