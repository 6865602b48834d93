"""A non-negative quadratic program solved on the device, inside jit: GEM's dual (:mod:`lwcl.methods.projection`).

:func:`solve_nonneg_qp` solves ``min_v 1/2 v^T P v + c^T v  s.t.  v >= 0`` with Lawson & Hanson's active-set
NNLS algorithm and reports, with ``with_info=True``, how it ended (:class:`QPInfo`: iterations used and
whether it converged), so that a caller can count the steps where it did not instead of passing them on.

This module is pure maths (JAX only) and imports nothing of lwcl.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class QPInfo(NamedTuple):
  """How :func:`solve_nonneg_qp` ended.

  Attributes:
    iterations: int32 scalar, active-set iterations used (at most ``max_iter``).
    converged: bool scalar, True when the optimality test held for every variable not banned (every
      negative gradient ``<= tol``) before ``max_iter``; False when ``max_iter`` stopped it.
  """
  iterations: jax.Array
  converged: jax.Array


def default_max_iter(k: int) -> int:
  """The default iteration bound for ``k`` variables, ``3k + 10`` (each iteration frees or fixes one
  variable; a solve that frees every variable once and never steps back takes ``k + 1``)."""
  return 3 * k + 10


def solve_nonneg_qp(P: jax.Array, c: jax.Array, mask: jax.Array | None = None, *,
                    tol: jax.Array | float = 0.0, max_iter: int | None = None,
                    with_info: bool = False):
  """Solves ``min_v 1/2 v^T P v + c^T v  s.t.  v >= 0`` (``v_k = 0`` where ``mask`` is False), inside jit.

  ``P`` must be symmetric positive semi-definite; with ``P = G G^T`` and ``c = G g`` this is GEM's dual
  (Lopez-Paz & Ranzato 2017, Eq. 10) and equivalent to the non-negative least-squares problem
  ``min_{v >= 0} ||G^T v + g||^2``. Lawson & Hanson's active-set NNLS algorithm (*Solving Least Squares
  Problems*, 1974, ch. 23), in Gram form: each iteration frees the variable with the most negative gradient
  and solves the free variables' equality-constrained problem, stepping back to the feasible boundary when
  that solution leaves ``v >= 0``. It finishes in finitely many steps; the subproblems are solved with an
  eigen pseudo-inverse of the (Jacobi-scaled) free block, so singular ``P`` (collinear or zero rows) gives
  the minimum-norm solution of the degenerate directions rather than nan. Pure and traceable (one
  ``lax.while_loop``), and ``jax.vmap``-able over a leading batch axis.

  Args:
    P: float ``[K, K]``, symmetric PSD.
    c: float ``[K]``.
    mask: bool ``[K]`` or None (all variables).
    tol: stop when every free variable's negative gradient ``-(P v + c)_k / sqrt(P_kk)`` is ``<= tol``
      (for GEM: every constraint ``<g_k/|g_k|, g~> >= -tol``). Also floored at ``16 K eps`` times the
      problem's scale.
    max_iter: a Python int bounding the iterations (default :func:`default_max_iter`, ``3K + 10``).
    with_info: also return a :class:`QPInfo`.
  Returns:
    ``v`` float ``[K]``, ``v >= 0``, zero outside ``mask``; with ``with_info``, ``(v, QPInfo)``. When
    ``max_iter`` stops the method, ``v`` is its last feasible iterate (``v >= 0``, not optimal) and
    ``QPInfo.converged`` is False.
  """
  k = P.shape[-1]
  dtype = P.dtype
  eps = jnp.finfo(dtype).eps
  mask = jnp.ones((k,), bool) if mask is None else jnp.asarray(mask, bool)
  max_iter = default_max_iter(k) if max_iter is None else max_iter
  # Jacobi scaling: unit diagonal, so the tolerances below are relative.
  diag = jnp.diagonal(P)
  live = mask & (diag > 0)
  d = jnp.where(live, jax.lax.rsqrt(jnp.where(live, diag, 1)), 0).astype(dtype)
  Pn = P * d[:, None] * d[None, :]
  cn = c * d
  scale = jnp.maximum(jnp.max(jnp.abs(cn)), 1.0 * jnp.finfo(dtype).tiny)
  tol = jnp.maximum(jnp.asarray(tol, dtype), 16 * k * eps * scale)

  def solve(free):
    both = free[:, None] & free[None, :]
    M = jnp.where(both, Pn, 0) + jnp.diag(jnp.where(free, 0, 1).astype(dtype))
    lam, V = jnp.linalg.eigh(M)
    inv = jnp.where(lam > k * eps * jnp.max(lam), 1 / jnp.where(lam > 0, lam, 1), 0)
    s = V @ (inv * (V.T @ jnp.where(free, -cn, 0)))
    return jnp.where(free, s, 0)

  def cond(state):
    _, _, _, _, it, done = state
    return (~done) & (it < max_iter)

  def body(state):
    v, free, banned, last, it, _ = state
    s = solve(free)
    feasible = jnp.all(jnp.where(free, s > 0, True))

    # Feasible: accept s, then free the variable with the most negative gradient (if any).
    w = -(Pn @ s + cn)
    cand = live & ~free & ~banned & (w > tol)
    j = jnp.argmax(jnp.where(cand, w, -jnp.inf))
    add = jnp.any(cand)
    free_f = free.at[j].set(free[j] | add)

    # Infeasible: step from v towards s until the first free variable reaches 0, and fix it there.
    blocking = free & (s <= 0)
    ratio = jnp.where(blocking, v / jnp.where(blocking, v - s, 1), jnp.inf)
    i = jnp.argmin(ratio)
    alpha = jnp.clip(ratio[i], 0, 1)
    v_i = v + alpha * (s - v)
    leave = free & ((v_i <= 0) | (jnp.arange(k) == i))
    v_i = jnp.where(leave, 0, v_i)
    # A variable that leaves at once after entering cannot make progress in this precision: ban it.
    banned_i = banned | (leave & (jnp.arange(k) == last) & (alpha <= 0))

    v = jnp.where(feasible, s, v_i)
    free = jnp.where(feasible, free_f, free & ~leave)
    banned = jnp.where(feasible, banned, banned_i)
    last = jnp.where(feasible & add, j, -1)
    done = feasible & ~add
    return v, free, banned, last, it + 1, done

  false = jnp.zeros((k,), bool)
  init = (jnp.zeros((k,), dtype), false, false, jnp.asarray(-1), jnp.asarray(0), jnp.asarray(False))
  v, _, _, _, it, done = jax.lax.while_loop(cond, body, init)
  v = jnp.where(live, jnp.maximum(v, 0) * d, 0)
  if with_info:
    return v, QPInfo(iterations=it.astype(jnp.int32), converged=done)
  return v
