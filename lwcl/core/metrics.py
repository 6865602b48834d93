"""Continual-learning metrics over the accuracy matrix.

Conventions (as in ``docs/design.md``, "Evaluation"), with tasks indexed from 0 here:

* ``R`` is a ``[T, T]`` array, ``R[i, j]`` the test accuracy (a fraction in [0, 1]) on task ``j`` after
  training through task ``i``, for every ``j`` including tasks not yet seen.
* ``b`` is a length-``T`` array, ``b[j]`` the accuracy on task ``j`` of the model at initialization.

Sources: ACC and BWT and FWT from Lopez-Paz & Ranzato, *Gradient Episodic Memory for Continual Learning*,
NeurIPS 2017, Sec. 2 (Eq. 2-4); forgetting and LCA from Chaudhry et al., *Efficient Lifelong Learning
with A-GEM*, ICLR 2019, Sec. 4 (Eq. 3 and 4). All functions are pure NumPy and return Python floats
(``nan`` where the quantity is undefined, e.g. BWT of a single task).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _matrix(R) -> np.ndarray:
  R = np.asarray(R, dtype=np.float64)
  if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
    raise ValueError(f"accuracy matrix must be a non-empty square [T, T] array, got shape {R.shape}")
  return R


def acc(R) -> float:
  """Average accuracy after the last task: ``mean_j R[T-1, j]`` (GEM Eq. 2).

  Args:
    R: ``[T, T]`` accuracy matrix, fractions.
  Returns:
    A float in [0, 1].
  Raises:
    ValueError: if ``R`` is not a non-empty square matrix.
  """
  R = _matrix(R)
  return float(R[-1].mean())


def bwt(R) -> float:
  """Backward transfer: ``mean_{j<T-1} (R[T-1, j] - R[j, j])`` (GEM Eq. 3).

  Negative values mean forgetting. ``nan`` when ``T == 1``.

  Raises:
    ValueError: if ``R`` is not a non-empty square matrix.
  """
  R = _matrix(R)
  T = R.shape[0]
  if T < 2:
    return float("nan")
  return float(np.mean(R[-1, :-1] - np.diag(R)[:-1]))


def fwt(R, b) -> float:
  """Forward transfer: ``mean_{j>=1} (R[j-1, j] - b[j])`` (GEM Eq. 4).

  Args:
    R: ``[T, T]`` accuracy matrix.
    b: length-``T`` accuracies at initialization.
  Returns:
    A float; ``nan`` when ``T == 1``.
  Raises:
    ValueError: on mismatched shapes.
  """
  R = _matrix(R)
  b = np.asarray(b, dtype=np.float64)
  T = R.shape[0]
  if b.shape != (T,):
    raise ValueError(f"initial accuracies must have shape ({T},), got {b.shape}")
  if T < 2:
    return float("nan")
  j = np.arange(1, T)
  return float(np.mean(R[j - 1, j] - b[j]))


def forgetting(R) -> float:
  """Average forgetting: ``mean_{j<T-1} max_{l<T-1} (R[l, j] - R[T-1, j])`` (A-GEM Eq. 3).

  The maximum runs over every row before the last, as in ``docs/design.md``. ``nan`` when ``T == 1``.

  Raises:
    ValueError: if ``R`` is not a non-empty square matrix.
  """
  R = _matrix(R)
  T = R.shape[0]
  if T < 2:
    return float("nan")
  best = R[:-1, :-1].max(axis=0)
  return float(np.mean(best - R[-1, :-1]))


def lca(curves, beta: int) -> float:
  """Learning curve area ``LCA_beta`` (A-GEM Eq. 4).

  ``LCA_beta = 1/(beta+1) * sum_{b=0}^{beta} Z_b`` with ``Z_b`` the accuracy on each task after ``b``
  minibatches of that task, averaged over tasks.

  Args:
    curves: ``[T, B]`` array, ``curves[k, b]`` the accuracy on task ``k`` after ``b`` minibatches of
      training on task ``k`` (``b = 0`` is before the first minibatch); ``B >= beta + 1``.
    beta: number of minibatches, ``>= 0``.
  Returns:
    A float in [0, 1].
  Raises:
    ValueError: if ``curves`` is not 2-D or has fewer than ``beta + 1`` columns, or ``beta < 0``.
  """
  curves = np.asarray(curves, dtype=np.float64)
  if curves.ndim != 2:
    raise ValueError(f"curves must be a [T, B] array, got shape {curves.shape}")
  if beta < 0 or curves.shape[1] < beta + 1:
    raise ValueError(f"LCA_{beta} needs beta >= 0 and at least beta + 1 = {beta + 1} points per "
                     f"task, got {curves.shape[1]}")
  return float(curves[:, : beta + 1].mean(axis=1).mean())


def summarize(R, b) -> dict:
  """All scalar metrics of one run: ``{'acc', 'bwt', 'fwt', 'forgetting'}`` as floats."""
  return {"acc": acc(R), "bwt": bwt(R), "fwt": fwt(R, b), "forgetting": forgetting(R)}


# The scalar metrics of a Task-IL accuracy matrix (class-incremental runs), in results.json.
TASK_IL_SCALARS = ("task_il_acc", "task_il_bwt", "task_il_forgetting")


def summarize_task_il(R) -> dict:
  """The scalar metrics of a Task-IL accuracy matrix ``R`` (``[T, T]``, laid out as the accuracy matrix;
  Mammoth's ``mask_classes``), by the same functions as :func:`summarize`: ``{'task_il_acc',
  'task_il_bwt', 'task_il_forgetting'}`` (:data:`TASK_IL_SCALARS`). No FWT: it would need the Task-IL
  accuracies at initialization, which are not recorded."""
  return {"task_il_acc": acc(R), "task_il_bwt": bwt(R), "task_il_forgetting": forgetting(R)}


def order_statistics(values: Sequence[float]) -> dict:
  """Mean and (population) standard deviation of one metric over task orders.

  Args:
    values: the metric of each of R runs (e.g. ACC of each task order).
  Returns:
    ``{'mean', 'std', 'min', 'max', 'n'}``; ``std`` is 0 for a single value.
  Raises:
    ValueError: if ``values`` is empty.
  """
  v = np.asarray(values, dtype=np.float64)
  if v.size == 0:
    raise ValueError("order_statistics needs at least one value")
  return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
          "max": float(v.max()), "n": int(v.size)}


def t_quantile(n: int, confidence: float = 0.95) -> float:
  """Student's t quantile ``t_{(1 + confidence) / 2, n - 1}`` (two-sided interval of ``n`` values;
  ``4.302653`` for n = 3 at 95%)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top  (0.3 s: only summaries need it)
  return float(stats.t.ppf(0.5 + confidence / 2, n - 1))


def seed_statistics(values: Sequence[float]) -> dict:
  """:func:`order_statistics` of one metric over seeds, with the 95% Student-t interval of its mean.

  Args:
    values: the metric of each of n runs (seeds).
  Returns:
    ``{'mean', 'std', 'min', 'max', 'n'}`` (``std`` the population std, as before) and ``'sample_std'``
    (``s``, ddof=1), ``'ci95_half_width'`` (``t_{0.975, n-1} * s / sqrt(n)``) and ``'ci95'`` (``[mean - h,
    mean + h]``); the three are None for a single value.
  Raises:
    ValueError: if ``values`` is empty.
  """
  out = order_statistics(values)
  out.update(_interval(np.asarray(values, dtype=np.float64)))
  return out


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict:
  """The mean per-seed difference ``b - a`` of two configs run over the same seeds, and its 95% t-interval.

  Args:
    a, b: the metric of each seed, in the same seed order (equal lengths).
  Returns:
    ``{'mean', 'n', 'sample_std', 'ci95_half_width', 'ci95'}`` of ``d = b - a``: ``mean(d) +- t_{0.975, n-1}
    * sd(d) / sqrt(n)``, ``sd`` with ddof=1 (None for n = 1).
  Raises:
    ValueError: if the lengths differ or are 0.
  """
  a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
  if a.shape != b.shape or a.ndim != 1 or a.size == 0:
    raise ValueError(f"paired_difference needs two equally long non-empty sequences, got {a.shape} and {b.shape}")
  d = b - a
  return {"mean": float(d.mean()), "n": int(d.size), **_interval(d)}


def _interval(v: np.ndarray) -> dict:
  """``{'sample_std', 'ci95_half_width', 'ci95'}`` of the mean of ``v`` (None for fewer than 2 values)."""
  if v.size < 2:
    return {"sample_std": None, "ci95_half_width": None, "ci95": None}
  s = float(v.std(ddof=1))
  half = t_quantile(v.size) * s / float(np.sqrt(v.size))
  mean = float(v.mean())
  return {"sample_std": s, "ci95_half_width": half, "ci95": [mean - half, mean + half]}
