"""Shared GEM QP problems (tests/methods/test_qp.py, tests/methods/test_gem_report.py)."""

import numpy as np  # noqa: F401  (the problems are NumPy arrays)
import quadprog

P, K = 120, 8


def conflicted_problem(rng):
  """Old gradients ``G`` [K, P] (full row rank) and a gradient ``g`` that violates most of them, so the
  exact projection (margin 0) has several active constraints and needs several solver iterations."""
  G = rng.standard_normal((K, P)) + 0.5 * rng.standard_normal(P)
  g = rng.standard_normal(P) - 2.0 * G.mean(0)
  return g, G


def reference_projection(g, G):
  """Exact GEM projection (margin 0) in float64: quadprog on the dual, ``g~ = G^T v + g``."""
  v = quadprog.solve_qp(G @ G.T, -(G @ g), np.eye(len(G)), np.zeros(len(G)))[0]
  return G.T @ v + g, v
