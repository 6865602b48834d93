"""lwcl.methods.qp: the non-negative QP solver (the dual of GEM's projection) against quadprog, and its report."""

import jax
import jax.numpy as jnp
import numpy as np
import quadprog

from lwcl.methods import projection as pj
from lwcl.methods import qp

from helpers import fresh_rng
from qp_cases import K, conflicted_problem, reference_projection

P, KMAX = 120, 8  # fixed shapes: one compilation per test function


def test_nonneg_qp_solver_matches_quadprog_dual():
  rng, seed = fresh_rng()
  with jax.enable_x64(True):
    solve = jax.jit(jax.vmap(pj.solve_nonneg_qp))
    A = rng.standard_normal((16, KMAX, 3 * KMAX))
    Ps = A @ A.transpose(0, 2, 1)
    cs = rng.standard_normal((16, KMAX)) * 3
    v = np.asarray(solve(jnp.asarray(Ps), jnp.asarray(cs), jnp.ones((16, KMAX), bool)))
    for P_, c_, v_ in zip(Ps, cs, v):
      ref = quadprog.solve_qp(P_, -c_, np.eye(KMAX), np.zeros(KMAX))[0]
      scale = np.abs(c_).max() / np.diag(P_).min()  # the size of v
      np.testing.assert_allclose(v_, ref, rtol=1e-6, atol=1e-9 * scale, err_msg=f"seed {seed}")


def test_solver_reports_iterations_and_stopping_at_max_iter():
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    solve = jax.jit(lambda P_, c_, m: qp.solve_nonneg_qp(P_, c_, tol=0.0, max_iter=m, with_info=True),
                    static_argnums=2)
    for trial in range(6):
      g, G = conflicted_problem(rng)
      _, v_ref = reference_projection(g, G)
      assert np.sum(v_ref > 1e-9) >= 2, trial  # several active constraints: more than one iteration
      v, info = solve(jnp.asarray(G @ G.T), jnp.asarray(G @ g), None)
      assert bool(info.converged) and 2 <= int(info.iterations) <= qp.default_max_iter(K), trial
      np.testing.assert_allclose(v, v_ref, rtol=1e-7, atol=1e-9 * np.abs(v_ref).max())
      v1, info1 = solve(jnp.asarray(G @ G.T), jnp.asarray(G @ g), 1)
      assert not bool(info1.converged) and int(info1.iterations) == 1, trial
      assert np.all(np.asarray(v1) >= 0)  # stopped early: feasible for the dual, but not its solution
