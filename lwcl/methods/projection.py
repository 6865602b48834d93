"""Gradient projection for continual learning: A-GEM, GEM, LGD as pure functions and optax transformations.

Every function takes the current task's gradient ``grad`` (a pytree, e.g. Flax parameters) and old-task
gradients ``ref_grads`` (the same pytree with a leading axis of ``K`` old tasks on every leaf, padded to
``max_tasks - 1``; ``mask`` bool ``[K]`` marks the real ones), and returns the gradient to apply, a pytree
like ``grad``. The rules are those of ``docs/design.md``, "Methods":

* A-GEM (Chaudhry et al., *Efficient Lifelong Learning with A-GEM*, ICLR 2019, Eq. 11):
  :func:`project_agem`.
* GEM (Lopez-Paz & Ranzato, *Gradient Episodic Memory for Continual Learning*, NeurIPS 2017, Eq. 8-10 and
  reference code ``model/gem.py``, ``project2cone2``): :func:`project_gem`, whose dual QP is solved on the
  device, inside jit, by an active-set method (:func:`solve_nonneg_qp`).
* LGD (Tang, Chen, Zhu, Yu, Ouyang, *Layerwise Optimization by Gradient Decomposition for Continual
  Learning*, CVPR 2021, Sec. 3.2-3.3 and reference code ``tangshixiang/grad-cl``,
  ``model/newblockgem_group5_pca_partmargin.py``, ``project5cone5``): :func:`project_lgd`.

**Grouping.** Each rule is applied independently to groups of parameters (:mod:`lwcl.methods.param_groups`:
``layer``, ``block``, ``network``, ``tensors:N`` or a callable labelling each leaf). Groups never concatenate
leaves: group inner products are sums of per-leaf inner products, so a group of any size costs no copy.

**Optax.** :func:`agem`, :func:`gem` and :func:`lgd` are ``optax.GradientTransformationExtraArgs`` whose
``update(updates, state, params=None, *, ref_grads, ref_mask)`` applies the projection; chain them in
front of the base optimizer. All three take the same arguments; A-GEM's single reference gradient is
``ref_grads`` with a leading axis of 1 and ``ref_mask`` bool ``[1]``.

This module is pure maths and imports nothing of the runner; the methods ``agem``, ``gem`` and ``lgd``
that use it are in :mod:`lwcl.methods.agem`, :mod:`lwcl.methods.gem` and :mod:`lwcl.methods.lgd` (episodic
memory and reference gradients: :mod:`lwcl.methods.episodic`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from lwcl.methods import gem_report as projection_report
from lwcl.methods.gem_report import GemReport
from lwcl.methods.param_groups import Grouping, check_grouping, parameter_groups
from lwcl.methods.qp import QPInfo, solve_nonneg_qp  # noqa: F401  (solve_nonneg_qp re-exported)


class _Flat(NamedTuple):
  """``grad`` and ``ref_grads`` as lists of leaves, flattened to ``[p]`` and ``[K, p]``."""
  g: list
  refs: list
  groups: list
  shapes: list
  treedef: Any


def _flatten(grad, ref_grads, grouping) -> _Flat:
  leaves, treedef = jax.tree_util.tree_flatten(grad)
  ref_leaves = treedef.flatten_up_to(ref_grads)
  k = {r.shape[0] for r in ref_leaves}
  if len(k) != 1 or any(r.shape[1:] != x.shape for r, x in zip(ref_leaves, leaves)):
    raise ValueError("ref_grads must be grad's pytree with one leading axis of old tasks on every leaf")
  return _Flat([x.reshape(-1) for x in leaves], [r.reshape(r.shape[0], -1) for r in ref_leaves],
               parameter_groups(grad, grouping), [x.shape for x in leaves], treedef)


def _unflatten(flat: _Flat, leaves: list) -> Any:
  return flat.treedef.unflatten([x.reshape(s) for x, s in zip(leaves, flat.shapes)])


def _dot(xs: Sequence, ys: Sequence, idx: Sequence[int]) -> jax.Array:
  """Group inner product ``sum_l <xs[l], ys[l]>`` over leaves ``idx``."""
  return sum(jnp.vdot(xs[i], ys[i]) for i in idx)


def _mask(mask, k: int) -> jax.Array:
  if mask is None:
    return jnp.ones((k,), bool)
  mask = jnp.asarray(mask, bool)
  if mask.shape != (k,):
    raise ValueError(f"mask must be bool [{k}] (one entry per old task), got shape {mask.shape}")
  return mask


# -- A-GEM -------------------------------------------------------------------------------------------


def project_agem(grad: Any, ref_grad: Any, *, mask: jax.Array | bool = True,
                 grouping: Grouping = "network") -> Any:
  """A-GEM: ``g`` if ``<g, g_ref> >= 0``, else ``g - (<g, g_ref> / <g_ref, g_ref>) g_ref``.

  Source: Chaudhry et al., ICLR 2019, Eq. 11 (the whole network as one vector, ``grouping='network'``).

  Args:
    grad: the current minibatch's gradient, a pytree of float arrays.
    ref_grad: the gradient on the reference batch drawn from the old tasks' memories; ``grad``'s pytree
      (no leading task axis).
    mask: bool scalar; False (no old task yet) returns ``grad`` unchanged.
    grouping: parameter groups projected independently (module docstring).
  Returns:
    A pytree like ``grad``. A zero ``ref_grad`` leaves ``grad`` unchanged.
  Raises:
    ValueError: unknown grouping, or ``ref_grad`` not shaped like ``grad``.
  """
  ref = jax.tree_util.tree_map(lambda r: r[None], ref_grad)
  f = _flatten(grad, ref, grouping)
  on = jnp.asarray(mask, bool)
  refs = [r[0] for r in f.refs]
  out = list(f.g)
  for idx in f.groups:
    dot, rr = _dot(f.g, refs, idx), _dot(refs, refs, idx)
    coef = jnp.where(on & (dot < 0) & (rr > 0), dot / jnp.where(rr > 0, rr, 1), 0)
    for i in idx:
      out[i] = f.g[i] - coef.astype(f.g[i].dtype) * refs[i]
  return _unflatten(f, out)


# -- GEM ---------------------------------------------------------------------------------------------


def project_gem(grad: Any, ref_grads: Any, margin: float = 0.0, mask: jax.Array | None = None,
                grouping: Grouping = "network", *, tol: float = 0.0, max_iter: int | None = None,
                with_report: bool = False) -> Any:
  """GEM: the gradient closest to ``g`` with ``<g~, g_k> >= 0`` for every old task ``k``.

  Solved through the dual, as the reference code does (``project2cone2``): with ``G`` the ``[K, p]`` matrix
  of old gradients, ``min_v 1/2 v^T G G^T v + (G g)^T v`` subject to ``v >= margin``, then
  ``g~ = G^T v + g``. Substituting ``v = u + margin`` this is the exact projection (margin 0) of
  ``g + margin * sum_k g_k``, which is how it is solved (:func:`lwcl.methods.qp.solve_nonneg_qp`, on the device).
  The projection is applied only when some ``<g, g_k> < 0``; otherwise ``g`` is returned unchanged (as in
  the reference code, also with ``margin > 0``). Unlike the reference code no ridge ``eps * I`` is added to
  ``G G^T``: the solver handles singular Gram matrices (collinear or zero old gradients).

  Args:
    grad: the current minibatch's gradient, a pytree.
    ref_grads: old-task gradients, ``grad``'s pytree with a leading axis ``K`` on every leaf.
    margin: GEM's ``memory_strength`` (0.5 in the reference experiments); ``>= 0``; may be traced.
    mask: bool ``[K]``, the real old tasks (None: all).
    grouping: parameter groups projected independently (module docstring); GEM's published form is
      ``'network'``.
    tol: constraint tolerance passed to :func:`lwcl.methods.qp.solve_nonneg_qp` (relative to ``|g_k|``).
    max_iter: the solver's iteration bound (None: :func:`lwcl.methods.qp.default_max_iter`).
    with_report: also return a :class:`lwcl.methods.gem_report.GemReport` (solver iterations and
      convergence, the largest constraint violation of the result, recomputed from it, and the norms of
      ``g`` and ``g~``).
  Returns:
    A pytree like ``grad``; with ``with_report``, ``(pytree, GemReport)``.
  Raises:
    ValueError: unknown grouping, negative margin, ``ref_grads``/``mask`` of the wrong shape.
  """
  if isinstance(margin, (int, float)) and margin < 0:
    raise ValueError(f"GEM margin must be >= 0, got {margin}")
  f = _flatten(grad, ref_grads, grouping)
  k = f.refs[0].shape[0]
  on = _mask(mask, k)
  refs = [jnp.where(on[:, None], r, 0) for r in f.refs]
  grams, cs, gnorms, violated = [], [], [], []
  for idx in f.groups:
    P = sum(refs[i] @ refs[i].T for i in idx)
    c = sum(refs[i] @ f.g[i] for i in idx)
    gg = _dot(f.g, f.g, idx)
    m1 = on.astype(P.dtype)
    # The problem is solved for g' = g + margin * sum_k g_k: G g' = c + margin * P 1.
    c_m = c + margin * (P @ m1)
    gnorms.append(jnp.sqrt(jnp.maximum(gg + 2 * margin * jnp.vdot(m1, c) + margin ** 2 * (m1 @ P @ m1), 0)))
    grams.append(P)
    cs.append(c_m)
    violated.append(jnp.any(on & (c < 0)))
  violated, gnorms = jnp.stack(violated), jnp.stack(gnorms)
  solve = jax.vmap(lambda P, c, m, t: solve_nonneg_qp(P, c, m, tol=t, max_iter=max_iter, with_info=True))
  v, info = solve(jnp.stack(grams), jnp.stack(cs), on[None, :] & violated[:, None], tol * gnorms)
  coef = jnp.where(violated[:, None], v + margin * on.astype(v.dtype)[None, :], 0)
  out = list(f.g)
  for n, idx in enumerate(f.groups):
    for i in idx:
      out[i] = f.g[i] + coef[n].astype(refs[i].dtype) @ refs[i]
  if not with_report:
    return _unflatten(f, out)
  return _unflatten(f, out), _gem_report(f, refs, out, grams, gnorms, on, violated, info)


def _gem_report(f: _Flat, refs: list, out: list, grams: list, gnorms: jax.Array, on: jax.Array,
                violated: jax.Array, info: QPInfo) -> GemReport:
  """:class:`GemReport` of a projection: ``<g_k, g~>`` recomputed from the result ``out``."""
  worst = []
  for n, idx in enumerate(f.groups):
    dots = sum(refs[i] @ out[i] for i in idx)
    norms = jnp.sqrt(jnp.maximum(jnp.diagonal(grams[n]), 0)) * gnorms[n]
    live = on & (norms > 0)
    worst.append(jnp.max(jnp.where(live, -dots / jnp.where(live, norms, 1), 0)))
  everything = [i for idx in f.groups for i in idx]
  return GemReport(projected=jnp.any(violated),
                   iterations=jnp.max(jnp.where(violated, info.iterations, 0)).astype(jnp.int32),
                   converged=jnp.all(info.converged | ~violated),
                   violation=jnp.maximum(jnp.max(jnp.stack(worst)), 0),
                   grad_norm=jnp.sqrt(_dot(f.g, f.g, everything)),
                   update_norm=jnp.sqrt(_dot(out, out, everything)))


# -- LGD ---------------------------------------------------------------------------------------------

LGD_PUSHES = ("sum", "mean")  # direction of the authors' margin push: sum or mean of the old gradients


def _orthonormal_rows(R: Sequence, idx: Sequence[int], threshold: float, top_k: int,
                      scale2: jax.Array) -> list:
  """Orthonormal basis ``U`` (rows, zero rows for dropped directions) of the span of residuals ``R``.

  Singular values come from the Gram matrix ``R R^T``; the kept rows ``Sigma^-1 V^T R`` are then
  re-orthonormalized with a second Gram pass (as Cholesky-QR2 does), so ``U U^T = I`` to working
  precision. A direction is kept when its singular value exceeds ``max(threshold, sqrt(32 eps))`` times
  the largest (the floor is what a Gram matrix resolves: ~2e-3 in float32, ~1e-7 in float64), exceeds
  ``64 eps`` times ``sqrt(scale2)`` (the Frobenius norm of the old gradients: below it a residual is rounding
  noise, e.g. of identical old gradients), and, with ``top_k > 0``, is among the ``top_k`` largest.
  """
  dtype = R[idx[0]].dtype
  eps = jnp.finfo(dtype).eps
  C = sum(R[i] @ R[i].T for i in idx)
  lam, V = jnp.linalg.eigh(C)  # ascending
  lam_max = jnp.maximum(lam[-1], 0)
  rel = max(float(threshold) ** 2, 32 * float(eps))
  keep = (lam > rel * lam_max) & (lam > (64 * eps) ** 2 * scale2)
  if top_k > 0:
    keep &= jnp.arange(lam.shape[0]) >= lam.shape[0] - top_k
  A = V * jnp.where(keep, jax.lax.rsqrt(jnp.where(keep, lam, 1)), 0)[None, :]
  Q = [A.T @ R[i] for i in idx]
  S = sum(q @ q.T for q in Q)
  mu, W = jnp.linalg.eigh(S)
  B = W * jnp.where(mu > 0.5, jax.lax.rsqrt(jnp.where(mu > 0.5, mu, 1)), 0)[None, :]
  return [B.T @ q for q in Q]


def project_lgd(grad: Any, ref_grads: Any, mask: jax.Array | None = None, grouping: Grouping = "layer",
                *, threshold: float = 0.0, top_k: int = 0, margin: float = 0.0, push: str = "sum",
                single_task_push: bool = False) -> Any:
  """LGD: keep the shared old-task gradient's direction, stay orthogonal to the task-specific parts.

  Per group (docs/design.md "LGD"; Tang et al. 2021, Sec. 3.2, Eq. 5-9): ``gbar = mean_k g_k``, residuals
  ``r_k = g_k - gbar``, ``U`` an orthonormal basis of ``span{r_k}``, ``P = I - U^T U``. If
  ``<gbar, Pg> >= 0`` then ``g~ = Pg``, else ``g~ = Pg - (<gbar, Pg> / <gbar, Pgbar>) Pgbar``: the solution of
  ``min ||g~ - g||^2  s.t.  U g~ = 0, <gbar, g~> >= 0``. Degenerate cases: with one old task there are no
  residuals and only the ``gbar`` constraint remains (A-GEM with that task's gradient); when
  ``Pgbar = 0`` (to ``sqrt(eps)`` relative to ``|gbar|``) the result is ``Pg``; with no old task, ``g``.

  ``margin > 0`` adds the authors' push (reference code ``model/newblockgem_group5_pca_partmargin.py``,
  ``project5cone5``): in the conflict case, ``max(0, a_v + margin) * v`` with ``a_v = <v, Pg> / <v, Pv>`` and
  ``v = s = sum_k g_k`` (``push='sum'``, the authors' choice) or ``v = gbar`` (``push='mean'``), so the
  update keeps at least ``margin * v`` along the old gradients (this part is not orthogonal to ``U``). Off
  by default. With ``single_task_push`` and exactly one old task (counted from ``mask`` at run time), the
  reference code's one-task rule replaces it: ``g~ = g + max(-<s, g> / <s, s>, margin) * s`` (``s = g_1``;
  ``g`` when ``s = 0``), which pushes also without a conflict. In the conflict case it equals the rule
  above; with ``margin = 0`` it is the equation's (A-GEM with ``g_1``).

  Args:
    grad: the current minibatch's gradient, a pytree.
    ref_grads: old-task gradients, ``grad``'s pytree with a leading axis ``K`` on every leaf.
    mask: bool ``[K]``, the real old tasks (None: all).
    grouping: parameter groups projected independently; ``'layer'`` is the paper's layer-wise LGD,
      ``'network'`` its concatenated ablation.
    threshold: keep residual directions whose singular value is above ``threshold`` times the largest;
      0 keeps every numerically non-zero direction (the reference code's ``scipy.linalg.orth``). Floored
      at ``sqrt(32 eps)`` (~2e-3 in float32; see ``_orthonormal_rows``).
    top_k: if ``> 0``, keep at most the ``top_k`` leading directions (the reference ``pca3`` variant is 3).
    margin: the authors' margin, ``>= 0`` (a Python number: ``0`` compiles no push).
    push: ``'sum'`` or ``'mean'``, the direction ``v`` of the conflict-case push (with ``margin > 0``).
    single_task_push: with ``margin > 0``, use the reference code's one-old-task rule (above) when exactly
      one old task is real.
  Returns:
    A pytree like ``grad``.
  Raises:
    ValueError: unknown grouping, ``threshold`` outside ``[0, 1)``, negative ``top_k`` or ``margin``,
      ``push`` not ``'sum'``/``'mean'``, ``ref_grads``/``mask`` of the wrong shape.
  """
  if not 0 <= threshold < 1:
    raise ValueError(f"LGD threshold must be in [0, 1), got {threshold}")
  if top_k < 0 or margin < 0:
    raise ValueError(f"LGD top_k and margin must be >= 0, got {top_k} and {margin}")
  if push not in LGD_PUSHES:
    raise ValueError(f"LGD push must be one of {', '.join(LGD_PUSHES)}, got {push!r}")
  f = _flatten(grad, ref_grads, grouping)
  k = f.refs[0].shape[0]
  on = _mask(mask, k)
  n = jnp.sum(on)
  w = on.astype(f.refs[0].dtype)
  refs = [r * w[:, None] for r in f.refs]
  gbar = [(w @ r) / jnp.maximum(n, 1).astype(r.dtype) for r in refs]
  resid = [(r - b[None, :]) * w[:, None] for r, b in zip(refs, gbar)]
  out = list(f.g)
  for idx in f.groups:
    dtype = f.g[idx[0]].dtype
    U = _orthonormal_rows(resid, idx, threshold, top_k, sum(jnp.vdot(refs[i], refs[i]) for i in idx))
    cg = sum(u @ f.g[i] for u, i in zip(U, idx))
    cb = sum(u @ gbar[i] for u, i in zip(U, idx))
    pg = {i: f.g[i] - cg @ u for u, i in zip(U, idx)}
    pb = {i: gbar[i] - cb @ u for u, i in zip(U, idx)}
    # <gbar, Pg> = <Pgbar, Pg> (P is an orthogonal projector); the latter makes the conflict step the exact
    # projection of the computed Pg onto the hyperplane orthogonal to the computed Pgbar (never longer).
    dot = sum(jnp.vdot(pb[i], pg[i]) for i in idx)
    pb2 = sum(jnp.vdot(pb[i], pb[i]) for i in idx)
    b2 = sum(jnp.vdot(gbar[i], gbar[i]) for i in idx)
    conflict = (dot < 0) & (pb2 > jnp.finfo(dtype).eps * b2)
    a = jnp.where(conflict, dot / jnp.where(conflict, pb2, 1), 0)
    # The authors' margin along v = c * gbar (c = n for s, 1 for gbar): a_v = <v, Pg> / <v, Pv> = a / c, and
    # max(0, a_v + margin) * v = max(0, a / c + margin) * c * gbar.
    c = jnp.maximum(n, 1).astype(a.dtype) if push == "sum" else 1
    coef = jnp.where(conflict, jnp.maximum(0, a / c + margin) * c, 0) if margin else 0
    if margin and single_task_push:
      # One old task (reference code): g + max(-<s, g> / <s, s>, margin) s with s = gbar = g_1, P = I.
      sg, ss = _dot(gbar, f.g, idx), b2
      one = jnp.maximum(jnp.where(ss > 0, -sg / jnp.where(ss > 0, ss, 1), 0), margin)
    for i in idx:
      new = pg[i] - a * pb[i] + coef * gbar[i]
      if margin and single_task_push:
        new = jnp.where(n == 1, f.g[i] + one * gbar[i], new)
      out[i] = jnp.where(n > 0, new, f.g[i]).astype(dtype)
  return _unflatten(f, out)


# -- optax transformations ---------------------------------------------------------------------------


def _transformation(project: Callable) -> optax.GradientTransformationExtraArgs:
  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, ref_grads, ref_mask, **extra_args):
    del params, extra_args
    return project(updates, ref_grads, ref_mask), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def agem(grouping: Grouping = "network") -> optax.GradientTransformationExtraArgs:
  """A-GEM as an optax transformation (:func:`project_agem`).

  ``update(updates, state, params=None, *, ref_grads, ref_mask)``: ``ref_grads`` is the reference
  gradient with a leading axis of 1 (the same calling convention as :func:`gem` and :func:`lgd`) and
  ``ref_mask`` bool ``[1]`` (False: no old task yet, updates pass unchanged). State: ``optax.EmptyState``.

  Raises:
    ValueError: unknown grouping.
  """
  check_grouping(grouping)

  def project(updates, ref_grads, ref_mask):
    ref = jax.tree_util.tree_map(lambda r: r[0], ref_grads)
    return project_agem(updates, ref, mask=jnp.asarray(ref_mask).reshape(-1)[0], grouping=grouping)

  return _transformation(project)


def gem(margin: float = 0.0, grouping: Grouping = "network", tol: float = 0.0, *, num_tasks: int = 1,
        max_iter: int | None = None,
        violation_tol: float | None = None) -> optax.GradientTransformationExtraArgs:
  """GEM as an optax transformation (:func:`project_gem`; the QP is solved inside the jitted step) that
  counts, per task, the steps whose solver did not converge or whose result violates a constraint.

  ``update(updates, state, params=None, *, ref_grads, ref_mask, task=0, margin=None)`` with ``ref_grads``
  the old-task gradients (leading axis ``K``), ``ref_mask`` bool ``[K]``, ``task`` the int32 index of the task
  being trained (clipped to ``[0, num_tasks)``) and ``margin`` a float32 scalar that replaces the
  constructor's (e.g. from the method state, so changing it needs no recompilation). State:
  :class:`lwcl.methods.gem_report.GemReportState`, per-task counters of
  :class:`~lwcl.methods.gem_report.GemReport` (``gem_violating`` counts steps whose violation exceeds
  ``violation_tol``).

  Args:
    margin, grouping, tol: as :func:`project_gem`.
    num_tasks: the length of the per-task counters (``scenario.max_tasks``).
    max_iter: the solver's iteration bound (None: :func:`lwcl.methods.qp.default_max_iter` of ``K``).
    violation_tol: None: ``max(tol, sqrt(eps))`` of the gradients' dtype
      (:func:`lwcl.methods.gem_report.default_violation_tol`).
  Raises:
    ValueError: unknown grouping, negative margin, ``num_tasks < 1`` or ``max_iter < 1``.
  """
  check_grouping(grouping)
  if not margin >= 0:
    raise ValueError(f"GEM margin must be >= 0, got {margin}")
  if num_tasks < 1 or (max_iter is not None and max_iter < 1):
    raise ValueError(f"GEM needs num_tasks >= 1 and max_iter >= 1, got {num_tasks} and {max_iter}")

  def init_fn(params):
    del params
    return projection_report.init_state(num_tasks)

  default_margin = margin

  def update_fn(updates, state, params=None, *, ref_grads, ref_mask, task=0, margin=None, **extra_args):
    del params, extra_args
    margin = default_margin if margin is None else margin
    out, report = project_gem(updates, ref_grads, margin, ref_mask, grouping, tol=tol, max_iter=max_iter,
                              with_report=True)
    dtype = jax.tree_util.tree_leaves(updates)[0].dtype
    limit = violation_tol
    if limit is None:
      limit = max(tol, projection_report.default_violation_tol(dtype))
    task = jnp.clip(jnp.asarray(task, jnp.int32), 0, num_tasks - 1)
    return out, projection_report.accumulate(state, report, task, limit)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def lgd(grouping: Grouping = "layer", threshold: float = 0.0, top_k: int = 0, margin: float = 0.0,
        push: str = "sum", single_task_push: bool = False) -> optax.GradientTransformationExtraArgs:
  """LGD as an optax transformation (:func:`project_lgd`, whose arguments these are).

  ``update(updates, state, params=None, *, ref_grads, ref_mask)`` as for :func:`gem`.
  State: ``optax.EmptyState``.

  Raises:
    ValueError: unknown grouping, ``threshold``/``top_k``/``margin`` out of range, or ``push`` not
      ``'sum'``/``'mean'``.
  """
  check_grouping(grouping)
  if not 0 <= threshold < 1 or top_k < 0 or margin < 0 or push not in LGD_PUSHES:
    raise ValueError(f"LGD needs 0 <= threshold < 1, top_k >= 0, margin >= 0, push in "
                     f"{', '.join(LGD_PUSHES)}; got {threshold}, {top_k}, {margin}, {push!r}")
  return _transformation(lambda u, r, m: project_lgd(u, r, m, grouping, threshold=threshold, top_k=top_k,
                                                     margin=margin, push=push,
                                                     single_task_push=single_task_push))
