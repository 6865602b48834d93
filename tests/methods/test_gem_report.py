"""GEM's solver report: a projection that did not converge or violates its constraints cannot pass
unreported (lwcl.methods.qp, lwcl.methods.gem_report, the ``gem_solver`` entry of results.json).

References: quadprog in float64 on GEM's dual (the reference code's ``project2cone2`` without its ridge)
for the exact projection, and NumPy in float64 for the constraint violation of a result. The solver is
forced to stop early with a tiny ``max_iter``, which must show in every layer: ``QPInfo``, ``GemReport``,
the per-task counters of the optax state, the run's ``results.json`` and its printed warning.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lwcl.engine import experiment
from lwcl.methods import gem_report as projection_report
from lwcl.methods import projection as pj
from lwcl.runs.seeds import run_replicas

from helpers import small_config
from qp_cases import K, P, conflicted_problem, reference_projection


def violation(out, g, G):
  """``max_k max(0, -<g_k, out>) / (|g_k| |g|)`` in float64 (margin 0: ``g' = g``)."""
  return max(0.0, float(np.max(-(G @ out) / (np.linalg.norm(G, axis=1) * np.linalg.norm(g)))))


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-10), (jnp.float32, 1e-5)])
def test_gem_report_flags_a_projection_that_violates_its_constraints(dtype, tol):
  rng = np.random.default_rng(1)
  with jax.enable_x64(dtype == jnp.float64):
    project = jax.jit(lambda g, G, m: pj.project_gem({"w": g}, {"w": G}, 0.0, None, max_iter=m,
                                                     with_report=True), static_argnums=2)
    for trial in range(6):
      g, G = conflicted_problem(rng)
      ref, _ = reference_projection(g, G)
      assert violation(ref, g, G) < 1e-12
      # Enough iterations: the result is quadprog's, converged, no violation past the dtype's tolerance.
      out, rep = project(jnp.asarray(g, dtype), jnp.asarray(G, dtype), None)
      out = np.asarray(out["w"], np.float64)
      assert bool(rep.projected) and bool(rep.converged), trial
      np.testing.assert_allclose(out, ref, atol=30 * float(jnp.finfo(dtype).eps) ** 0.5 * np.linalg.norm(g))
      assert float(rep.violation) <= max(tol, violation(out, g, G) * 1.01 + 1e-7), trial
      assert float(rep.violation) <= projection_report.default_violation_tol(dtype), trial
      np.testing.assert_allclose([float(rep.grad_norm), float(rep.update_norm)],
                                 [np.linalg.norm(g), np.linalg.norm(out)], rtol=1e-5)
      # One iteration: not converged, and the violation left is reported as computed independently.
      out1, rep1 = project(jnp.asarray(g, dtype), jnp.asarray(G, dtype), 1)
      out1 = np.asarray(out1["w"], np.float64)
      want = violation(out1, g, G)
      assert bool(rep1.projected) and not bool(rep1.converged) and int(rep1.iterations) == 1, trial
      assert want > 1e-2, trial
      np.testing.assert_allclose(float(rep1.violation), want, rtol=1e-4)
      assert float(rep1.violation) > projection_report.default_violation_tol(dtype)


def test_gem_transformation_counts_each_task_s_steps():
  rng = np.random.default_rng(2)
  tx = optax.chain(pj.gem(0.0, num_tasks=3, max_iter=1), optax.sgd(1.0))
  params = {"w": jnp.zeros((P,))}
  state = tx.init(params)
  update = jax.jit(tx.update)
  g_ok = {"w": jnp.ones((P,))}
  for task, conflicted in ((0, True), (0, False), (2, True), (2, True)):
    g, G = conflicted_problem(rng)
    grad = {"w": jnp.asarray(g, jnp.float32)} if conflicted else g_ok
    refs = {"w": jnp.asarray(np.abs(G) if not conflicted else G, jnp.float32)}  # |G|: no conflict with 1s
    _, state = update(grad, state, params, ref_grads=refs, ref_mask=jnp.ones(K, bool), task=task)
  counters = projection_report.find_state(state)
  assert counters is not None
  np.testing.assert_array_equal(counters.gem_steps, [2, 0, 2])
  np.testing.assert_array_equal(counters.gem_projected, [1, 0, 2])
  np.testing.assert_array_equal(counters.gem_unconverged, [1, 0, 2])
  np.testing.assert_array_equal(counters.gem_violating, [1, 0, 2])
  np.testing.assert_array_equal(counters.gem_max_iterations, [1, 0, 1])
  assert counters.gem_max_violation[0] > 1e-2 and counters.gem_max_violation[1] == 0
  assert counters.gem_max_update_ratio[0] >= 1 and counters.gem_max_update_norm[1] == 0
  with pytest.raises(ValueError):
    pj.gem(0.0, max_iter=0)


def gem_config(**overrides):
  return small_config(**{"method.name": "gem", "method.gem_margin": 0.0, "method.memory_per_task": 20,
                         **overrides})


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_a_run_whose_solver_stops_early_says_so_in_results_json(tmp_path, capsys):
  res = experiment.Experiment(gem_config(**{"method.gem_max_iter": 1})).run(str(tmp_path / "early"))
  on_disk = json.load(open(os.path.join(tmp_path, "early", "results.json")))
  report = on_disk["gem_solver"]
  assert report == res["gem_solver"]
  # With margin 0 and one iteration, every projected step stops before the solver's optimality test.
  assert report["projected_steps"] > 0 and report["unconverged_steps"] == report["projected_steps"]
  assert report["violating_steps"] > 0 and report["max_violation"] > report["violation_tol"]
  assert not report["ok"] and report["max_iter"] == 1
  assert report["per_task"]["steps"] == [10, 10, 10] and report["per_task"]["projected"][0] == 0
  assert sum(report["per_task"]["unconverged"]) == report["unconverged_steps"]
  out = capsys.readouterr().out
  assert "warning: task 2: GEM's QP solver stopped at max_iter=1" in out

  res = experiment.Experiment(gem_config()).run(str(tmp_path / "default"))
  report = res["gem_solver"]
  assert report["ok"] and report["unconverged_steps"] == 0 and report["violating_steps"] == 0
  assert report["projected_steps"] > 0 and report["max_violation"] <= report["violation_tol"]
  assert "warning" not in capsys.readouterr().out


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_replicas_report_each_seed_s_solver(tmp_path):
  cfg = gem_config(**{"method.gem_max_iter": 1, "num_seeds": 2, "scenario.num_tasks": 2})
  summary = run_replicas(cfg, str(tmp_path))
  for run in summary["runs"]:
    seed = json.load(open(os.path.join(tmp_path, f"seed{run['seed']}", "results.json")))
    assert run["gem_solver"] == seed["gem_solver"]
    assert seed["gem_solver"]["unconverged_steps"] > 0 and not seed["gem_solver"]["ok"]


class Stop(Exception):
  pass


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_counters_survive_a_resume_without_double_counting(tmp_path):
  cfg = gem_config(**{"method.gem_max_iter": 1, "checkpoint.every_steps": 5})
  ref = experiment.Experiment(cfg).run(str(tmp_path / "ref"))

  def stop_after_17(step):  # mid task 2; the newest checkpoint is step 15's
    if step == 17:
      raise Stop

  with pytest.raises(Stop):
    experiment.Experiment(cfg).run(str(tmp_path / "cut"), on_step=stop_after_17)
  resumed = experiment.Experiment(cfg).run(str(tmp_path / "cut"))
  assert resumed["gem_solver"] == ref["gem_solver"] and resumed["accuracy_matrix"] == ref["accuracy_matrix"]
