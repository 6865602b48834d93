"""Metrics against hand-computed values and a float64 reference written independently (explicit loops)."""

import math

import numpy as np
import pytest
import scipy.stats

from lwcl.core import metrics


def reference(R, b):
  """Definitions of docs/design.md, 1-based in the text, written as plain loops."""
  T = len(R)
  acc = sum(R[T - 1][j] for j in range(T)) / T
  bwt = sum(R[T - 1][j] - R[j][j] for j in range(T - 1)) / (T - 1)
  fwt = sum(R[j - 1][j] - b[j] for j in range(1, T)) / (T - 1)
  forg = sum(max(R[l][j] for l in range(T - 1)) - R[T - 1][j] for j in range(T - 1)) / (T - 1)
  return acc, bwt, fwt, forg


def test_hand_computed_example():
  R = [[0.9, 0.1, 0.2],
       [0.7, 0.8, 0.3],
       [0.6, 0.5, 0.95]]
  b = [0.1, 0.2, 0.25]
  assert metrics.acc(R) == pytest.approx((0.6 + 0.5 + 0.95) / 3)
  assert metrics.bwt(R) == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8)) / 2)
  assert metrics.fwt(R, b) == pytest.approx(((0.1 - 0.2) + (0.3 - 0.25)) / 2)
  assert metrics.forgetting(R) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.5)) / 2)


@pytest.mark.parametrize("T", [2, 3, 7, 20])
def test_against_reference_on_random_matrices(T):
  rng = np.random.default_rng(T)
  R, b = rng.uniform(size=(T, T)), rng.uniform(size=T)
  want = reference(R.tolist(), b.tolist())
  got = (metrics.acc(R), metrics.bwt(R), metrics.fwt(R, b), metrics.forgetting(R))
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_forgetting_uses_max_over_rows_and_no_forgetting_is_zero():
  R = np.where(np.tril(np.ones((4, 4))) > 0, 1.0, 0.0)  # perfect on seen tasks, never forgets
  assert metrics.forgetting(R) == 0.0
  assert metrics.bwt(R) == 0.0
  R[3, 0] = 0.25
  assert metrics.forgetting(R) == pytest.approx(0.75 / 3)


def test_single_task_is_nan_not_error():
  assert metrics.acc([[0.5]]) == 0.5
  for v in (metrics.bwt([[0.5]]), metrics.fwt([[0.5]], [0.1]), metrics.forgetting([[0.5]])):
    assert math.isnan(v)


def test_lca():
  curves = np.array([[0.1, 0.5, 0.9, 1.0], [0.2, 0.4, 0.6, 0.8]])
  assert metrics.lca(curves, 0) == pytest.approx(0.15)
  assert metrics.lca(curves, 2) == pytest.approx(((0.1 + 0.5 + 0.9) / 3 + (0.2 + 0.4 + 0.6) / 3) / 2)
  with pytest.raises(ValueError, match="beta"):
    metrics.lca(curves, 4)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match="square"):
    metrics.acc(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="initial"):
    metrics.fwt(np.zeros((3, 3)), np.zeros(2))


def test_order_statistics():
  s = metrics.order_statistics([0.5, 0.7])
  assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1) and s["n"] == 2


def test_seed_statistics_give_the_student_t_interval_and_keep_the_population_std():
  assert metrics.t_quantile(3) == pytest.approx(4.302653, abs=5e-7)  # t_{0.975, 2}, the textbook value
  assert metrics.t_quantile(10) == pytest.approx(2.262157, abs=5e-7)  # t_{0.975, 9}
  values = [0.527, 0.691, 0.60]
  s = metrics.seed_statistics(values)
  v = np.asarray(values, np.float64)
  half = 4.302653 * v.std(ddof=1) / np.sqrt(3)  # written out: mean +- t * s / sqrt(n), s with ddof=1
  assert s["mean"] == pytest.approx(0.606) and s["std"] == pytest.approx(v.std())  # population std kept
  assert s["sample_std"] == pytest.approx(np.sqrt(((v - v.mean()) ** 2).sum() / 2))
  assert s["ci95_half_width"] == pytest.approx(half, rel=1e-6)
  assert s["ci95"] == pytest.approx([0.606 - half, 0.606 + half], rel=1e-6)
  lo, hi = scipy.stats.t.interval(0.95, 2, loc=v.mean(), scale=scipy.stats.sem(v))  # an independent reference
  assert s["ci95"] == pytest.approx([lo, hi], rel=1e-9)
  one = metrics.seed_statistics([0.5])
  assert one["std"] == 0.0 and one["sample_std"] is None and one["ci95"] is None and one["ci95_half_width"] is None


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
  a, b = [0.50, 0.55, 0.61, 0.58], [0.53, 0.60, 0.62, 0.63]
  d = np.subtract(b, a)
  p = metrics.paired_difference(a, b)
  lo, hi = scipy.stats.t.interval(0.95, 3, loc=d.mean(), scale=d.std(ddof=1) / 2)
  assert p["mean"] == pytest.approx(0.035) and p["n"] == 4
  assert p["ci95"] == pytest.approx([lo, hi], rel=1e-9) and p["ci95"][0] > 0  # resolved: excludes 0
  # Paired, the seeds' shared part cancels: the unpaired intervals of a and b overlap, the paired one is narrow.
  assert p["ci95_half_width"] < metrics.seed_statistics(a)["ci95_half_width"]
  assert metrics.paired_difference([0.5], [0.6])["ci95"] is None
  with pytest.raises(ValueError, match="equally long"):
    metrics.paired_difference([0.5, 0.6], [0.6])


def test_task_il_metrics_are_acc_bwt_and_forgetting_of_the_task_il_matrix():
  R = np.asarray([[0.9, 0.5, 0.4], [0.8, 0.95, 0.5], [0.85, 0.7, 0.9]])
  got = metrics.summarize_task_il(R)
  assert tuple(got) == metrics.TASK_IL_SCALARS
  assert got == {"task_il_acc": metrics.acc(R), "task_il_bwt": metrics.bwt(R),
                 "task_il_forgetting": metrics.forgetting(R)}
  assert got["task_il_acc"] == pytest.approx((0.85 + 0.7 + 0.9) / 3)
