"""A-GEM, GEM, LGD (lwcl.methods.projection) against independent references, and their methods (lwcl.episodic).

References: GEM against quadprog (its primal, and its dual as the GEM reference code states it); LGD
against a generic QP solver (qpsolvers) of its primal ``min ||x - g||^2 s.t. U x = 0, <gbar, x> >= 0``
with ``U`` from NumPy's SVD. Inputs are drawn fresh on every run (the seed is in every failure message).
"""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import qpsolvers
import quadprog

from lwcl.core.model_fns import REPLICA_AXIS, ModelFns, replica_max
from lwcl.core.state import TrainState
from lwcl.data.pipeline import Preprocessor
from lwcl.engine.steps import make_train_step
from lwcl.errors import ConfigError
from lwcl.methods import build_method, param_groups
from lwcl.methods import memory as memory_lib
from lwcl.methods import projection as pj
from lwcl.models.heads import TaskHeads
from lwcl.models.mlp import mlp_blocks
from lwcl.models.network import Network

from helpers import ROOT, fresh_rng, mlp_params, random_like, small_config

P, KMAX = 120, 8  # fixed shapes: one compilation per test function


def draw(rng, case: str):
  """Random old gradients (KMAX rows, the first K real) and a current gradient, of one degenerate kind."""
  K = int(rng.integers(1, KMAX + 1))
  G = rng.standard_normal((K, P)) + rng.standard_normal(P) * rng.uniform(0, 2)
  if case == "collinear":
    G = G[:1] * rng.uniform(0.2, 3.0, (K, 1))
  elif case == "zero":
    G[rng.random(K) < 0.4] = 0.0
  g = rng.standard_normal(P) - rng.uniform(0, 3) * G.mean(0)
  full = np.zeros((KMAX, P))
  full[:K] = G
  mask = np.arange(KMAX) < K
  return g, G, full, mask


def gem_primal_reference(g, G, margin):
  """quadprog on GEM's primal: min ||x - g'||^2 s.t. G x >= 0, g' = g + margin sum_k g_k (the dual's
  ``v >= margin`` substituted); g itself when no constraint is violated."""
  if not np.any(G @ g < 0):
    return g
  keep = np.any(G != 0, axis=1)
  gp = g + margin * G.sum(0)
  return quadprog.solve_qp(np.eye(g.size), gp, G[keep].T, np.zeros(int(keep.sum())))[0]


def gem_dual_reference(g, G, margin):
  """GEM's reference code (``project2cone2``) without its ridge: quadprog on the dual."""
  if not np.any(G @ g < 0):
    return g
  v = quadprog.solve_qp(G @ G.T, -(G @ g), np.eye(len(G)), np.full(len(G), margin))[0]
  return G.T @ v + g


def lgd_reference(g, G, threshold=0.0, top_k=0, floor=0.0):
  gbar = G.mean(0)
  _, s, vt = np.linalg.svd(G - gbar, full_matrices=False)
  keep = s > max(threshold, floor) * s[0] if s[0] > 0 else np.zeros(len(s), bool)
  if top_k:
    keep &= np.arange(len(s)) < top_k
  U = vt[keep]
  x = qpsolvers.solve_qp(np.eye(g.size), -g, G=-gbar[None], h=np.zeros(1),
                         A=U if len(U) else None, b=np.zeros(len(U)) if len(U) else None,
                         solver="quadprog")
  return x, U, gbar


@pytest.mark.parametrize("dtype,rtol", [(jnp.float64, 1e-6), (jnp.float32, 5e-6)])
def test_gem_matches_quadprog(dtype, rtol):
  rng, seed = fresh_rng()
  with jax.enable_x64(dtype == jnp.float64):
    project = jax.jit(lambda g, G, m, margin: pj.project_gem({"w": g}, {"w": G}, margin, m)["w"])
    for trial in range(48):
      case = ["random", "collinear", "zero", "random"][trial % 4]
      g, G, full, mask = draw(rng, case)
      margin = [0.0, 0.5][trial % 2]
      out = np.asarray(project(jnp.asarray(g, dtype), jnp.asarray(full, dtype), jnp.asarray(mask),
                               jnp.asarray(margin, dtype)), np.float64)
      ref = gem_primal_reference(g, G, margin)
      scale = np.linalg.norm(g + margin * G.sum(0))
      assert np.linalg.norm(out - ref) <= rtol * scale, (seed, trial, case, margin)
      if case == "random" and len(G) <= P // 2 and dtype == jnp.float64:  # full row rank: the dual is PD
        np.testing.assert_allclose(out, gem_dual_reference(g, G, margin), atol=rtol * scale,
                                   err_msg=f"seed {seed}")
      # Every constraint holds (to the solver's tolerance).
      assert np.all(G @ out >= -1e-4 * np.linalg.norm(G, axis=1) * scale), (seed, trial)


def test_gem_leaves_unviolated_and_maskless_gradients_unchanged():
  rng, seed = fresh_rng()
  G = rng.standard_normal((KMAX, P))
  g = G.sum(0) * 3 + 0.1 * rng.standard_normal(P)
  while np.any(G @ g < 0):  # make every constraint hold
    g += G[np.argmin(G @ g)]
  project = jax.jit(lambda g_, G_, m_: pj.project_gem({"w": g_}, {"w": G_}, 0.5, m_)["w"])
  out = project(jnp.asarray(g), jnp.asarray(G), jnp.ones(KMAX, bool))
  np.testing.assert_array_equal(np.asarray(out), np.asarray(jnp.asarray(g)), err_msg=f"seed {seed}")
  # Padding rows that violate are ignored; an all-False mask returns g.
  out = project(jnp.asarray(g), jnp.asarray(-np.tile(g, (KMAX, 1))), jnp.zeros(KMAX, bool))
  np.testing.assert_array_equal(np.asarray(out), np.asarray(jnp.asarray(g)))


@pytest.mark.parametrize("dtype,rtol", [(jnp.float64, 1e-6), (jnp.float32, 2e-5)])
def test_lgd_matches_constrained_solver(dtype, rtol):
  rng, seed = fresh_rng()
  floor = float(np.sqrt(32 * jnp.finfo(dtype).eps))
  with jax.enable_x64(dtype == jnp.float64):
    project = jax.jit(lambda g, G, m, t, k: pj.project_lgd({"w": g}, {"w": G}, m, threshold=t, top_k=k)["w"],
                      static_argnums=(3, 4))
    for trial in range(30):
      threshold, top_k = [(0.0, 0), (0.6, 0), (0.0, 2)][trial % 3]
      g, G, full, mask = draw(rng, "random")
      out = np.asarray(project(jnp.asarray(g, dtype), jnp.asarray(full, dtype), jnp.asarray(mask),
                               threshold, top_k), np.float64)
      ref, U, gbar = lgd_reference(g, G, threshold, top_k, floor)
      assert np.linalg.norm(out - ref) <= rtol * np.linalg.norm(g), (seed, trial, threshold, top_k)
      # Invariants: orthogonal to the kept task-specific directions, consistent with the shared gradient;
      # with the whole residual span kept, consistent with every old gradient.
      tol = 1e-4 * np.linalg.norm(g) * np.linalg.norm(G, axis=1).max()
      assert np.all(np.abs(U @ out) <= tol) and gbar @ out >= -tol, (seed, trial)
      if threshold == 0.0 and top_k == 0:
        assert np.all(G @ out >= -tol), (seed, trial)


def test_lgd_degenerate_cases():
  rng, seed = fresh_rng()
  g = rng.standard_normal(P)
  a = rng.standard_normal(P)
  one = np.zeros((KMAX, P))
  one[0] = -(g + 0.5 * rng.standard_normal(P))  # conflicting single old task
  mask1 = np.arange(KMAX) < 1
  jitted = jax.jit(lambda g_, G_, m_: pj.project_lgd({"w": g_}, {"w": G_}, m_)["w"])

  def lgd(g_, G_, m_):
    return np.asarray(jitted(jnp.asarray(g_, jnp.float32), jnp.asarray(G_, jnp.float32), jnp.asarray(m_)))

  # One old task: A-GEM with that task's gradient.
  agem = np.asarray(pj.project_agem({"w": jnp.asarray(g)}, {"w": jnp.asarray(one[0])})["w"])
  np.testing.assert_allclose(lgd(g, one, mask1), agem, rtol=1e-5, atol=1e-6, err_msg=f"seed {seed}")
  # No old task: g unchanged.
  np.testing.assert_array_equal(lgd(g, one, np.zeros(KMAX, bool)), np.asarray(jnp.asarray(g)))
  # gbar inside the residual span (g_1 = a, g_2 = 3a): Pgbar = 0, the result is Pg, orthogonal to a.
  two = np.zeros((KMAX, P))
  two[0], two[1] = a, 3 * a
  out = lgd(g, two, np.arange(KMAX) < 2)
  pg = g - (a @ g) / (a @ a) * a
  np.testing.assert_allclose(out, pg, rtol=1e-4, atol=1e-5, err_msg=f"seed {seed}")
  # No conflict (g along every old gradient's shared part, orthogonal to the residuals): unchanged.
  same = np.zeros((KMAX, P))
  same[:3] = g
  np.testing.assert_allclose(lgd(g, same, np.arange(KMAX) < 3), g, rtol=1e-6, atol=1e-6)


def test_lgd_margin_follows_the_authors_rule():
  rng, seed = fresh_rng()
  G = rng.standard_normal((3, P)) + rng.standard_normal(P)
  full = np.zeros((KMAX, P))
  full[:3] = G
  mask = np.arange(KMAX) < 3
  s = G.sum(0)
  _, sv, vt = np.linalg.svd(G - G.mean(0), full_matrices=False)
  U = vt[sv > 1e-10 * sv[0]]
  with jax.enable_x64(True):
    project = jax.jit(lambda g: pj.project_lgd({"w": g}, {"w": jnp.asarray(full)}, jnp.asarray(mask),
                                               margin=0.5)["w"])
    # Strong conflict (the margin is inactive) and weak conflict (the margin pushes along s).
    for strength, margin_active in ((2.0, False), (0.2, True)):
      pg_s = s - U.T @ (U @ s)
      g = -strength * pg_s + 0.05 * rng.standard_normal(P)
      out = np.asarray(project(jnp.asarray(g)))
      # project5cone5 (reference code), with scipy's orth replaced by an SVD basis.
      pg, ps = g - U.T @ (U @ g), s - U.T @ (U @ s)
      ratio = (s @ pg) / (s @ ps)
      assert s @ pg < 0 and (ratio > -0.5) == margin_active, seed
      ref = g - min(ratio, -0.5) * s - U.T @ (U @ g) + ratio * (U.T @ (U @ s))
      np.testing.assert_allclose(out, ref, rtol=1e-8, atol=1e-9 * np.linalg.norm(g), err_msg=f"seed {seed}")


def test_agem_rule():
  rng, seed = fresh_rng()
  g, r = rng.standard_normal(P), rng.standard_normal(P)
  r = r if g @ r < 0 else -r
  out = np.asarray(pj.project_agem({"w": jnp.asarray(g)}, {"w": jnp.asarray(r)})["w"])
  np.testing.assert_allclose(out, g - (g @ r) / (r @ r) * r, rtol=1e-5, atol=1e-6, err_msg=f"seed {seed}")
  assert abs(out @ r) <= 1e-4 * np.linalg.norm(g) * np.linalg.norm(r)
  for ref, mask in ((-r, True), (r, False), (np.zeros(P), True)):
    same = pj.project_agem({"w": jnp.asarray(g)}, {"w": jnp.asarray(ref)}, mask=mask)["w"]
    np.testing.assert_array_equal(np.asarray(same), np.asarray(jnp.asarray(g)))


def test_network_grouping_equals_layer_grouping_on_one_layer_model():
  rng, seed = fresh_rng()
  params = {"dense": {"kernel": jnp.zeros((7, 5)), "bias": jnp.zeros((5,))}}
  g = random_like(rng, params)
  refs = random_like(rng, params, KMAX)
  mask = jnp.asarray(np.arange(KMAX) < 5)
  g = jax.tree_util.tree_map(lambda x, r: x - 2 * r[:5].mean(0), g, refs)
  for fn in (lambda grouping: pj.project_gem(g, refs, 0.5, mask, grouping),
             lambda grouping: pj.project_lgd(g, refs, mask, grouping),
             lambda grouping: pj.project_agem(g, jax.tree_util.tree_map(lambda r: r[0], refs),
                                              grouping=grouping)):
    both = jax.jit(lambda: (fn("network"), fn("layer")))()  # noqa: B023
    chex.assert_trees_all_close(*both, rtol=1e-5, atol=1e-6)


def test_layer_grouping_projects_each_layer_independently():
  rng, seed = fresh_rng()
  params = mlp_params((6,))
  g = random_like(rng, params)
  refs = random_like(rng, params, KMAX)
  g = jax.tree_util.tree_map(lambda x, r: x - 2 * r.mean(0), g, refs)
  mask = jnp.asarray(np.arange(KMAX) < 6)
  for project in (lambda g_, r_, grouping: pj.project_gem(g_, r_, 0.0, mask, grouping),
                  lambda g_, r_, grouping: pj.project_lgd(g_, r_, mask, grouping)):
    def both_ways(g, refs, project=project):
      return project(g, refs, "layer"), {n: project(g[n], refs[n], "network") for n in g}
    layered, alone = jax.jit(both_ways)(g, refs)
    chex.assert_trees_all_close(layered, alone, rtol=1e-5, atol=1e-6, custom_message=f"seed {seed}")


def test_optax_transformations_and_validation():
  rng, _ = fresh_rng()
  params = {"w": jnp.zeros((P,))}
  g = {"w": jnp.asarray(rng.standard_normal(P), jnp.float32)}
  refs = {"w": -g["w"][None].repeat(KMAX, 0)}
  mask = jnp.asarray(np.arange(KMAX) < 2)
  for tx, r, m in ((pj.gem(0.0), refs, mask), (pj.lgd(), refs, mask),
                   (pj.agem(), jax.tree_util.tree_map(lambda x: x[:1], refs), mask[:1])):
    chain = optax.chain(tx, optax.sgd(1.0))
    state = chain.init(params)
    updates, _ = jax.jit(chain.update)(g, state, params, ref_grads=r, ref_mask=m)
    # The only old gradient is -g: the projection removes g entirely.
    np.testing.assert_allclose(updates["w"], 0.0, atol=1e-5)
  with pytest.raises(ValueError):
    pj.gem(-1.0)
  with pytest.raises(ValueError):
    pj.lgd(threshold=1.5)
  with pytest.raises(ValueError):
    pj.agem("rows")


def _tiny_setup(name, max_tasks=4, **method):
  cfg = small_config(**{"method.name": name, "method.memory_per_task": 6, "method.agem_ref_batch": 8,
                        **{f"method.{k}": v for k, v in method.items()}})
  scenario = types.SimpleNamespace(max_tasks=max_tasks, image_shape=(6, 6, 1))
  model = Network(mlp_blocks((8,)), TaskHeads(max_tasks, 3, name="head"))
  fns = ModelFns(model, Preprocessor((0.5,), (0.25,)), np.ones((max_tasks, 3), bool))
  return build_method(cfg.method, scenario, fns), fns


def _init(fns, rng):
  """Random parameters of the model's shapes (no compiled initializer: keeps the tests fast)."""
  params, stats = jax.eval_shape(lambda key: fns.init(key, (6, 6, 1)), jax.random.PRNGKey(0))
  fill = lambda x: jnp.asarray(0.3 * rng.standard_normal(x.shape), x.dtype)  # noqa: E731
  return jax.tree_util.tree_map(fill, params), jax.tree_util.tree_map(fill, stats)


@pytest.mark.parametrize("name", ["agem", "gem", "lgd"])
def test_one_compilation_for_the_whole_stream(name):
  rng, seed = fresh_rng()
  chex.clear_trace_counter()
  method, fns = _tiny_setup(name)
  tx = optax.chain(method.transformation(), optax.sgd(0.1))
  step_fn = make_train_step(fns, tx, method)
  traces = chex.assert_max_traces(n=1)(lambda state, batch: step_fn(state, batch))
  step = jax.jit(traces, donate_argnums=(0,))
  params, stats = _init(fns, rng)
  state = TrainState(jnp.zeros((), jnp.int32), params, stats, tx.init(params),
                     method.init_state(params, stats), jax.random.PRNGKey(1))
  for task in range(4):
    for _ in range(3):
      batch = {"image": rng.integers(0, 256, (4, 6, 6, 1)).astype(np.uint8),
               "label": rng.integers(0, 3, 4).astype(np.int32), "task": np.full(4, task, np.int32)}
      state, metrics = step(state, batch)
      assert np.isfinite(float(metrics["loss"])), seed
  assert step._cache_size() == 1
  np.testing.assert_array_equal(state.method_state.memory.count, [12, 12, 12, 12])


def test_old_task_gradients_match_per_task_gradients():
  rng, seed = fresh_rng()
  methods = [_tiny_setup("gem", memory_grad_chunk=chunk)[0] for chunk in (0, 1, 2, 3)]
  fns = methods[0].fns
  params, stats = _init(fns, rng)
  mem = methods[0].init_state(params, stats).memory
  for task, n in [(0, 4), (1, 9)]:
    mem = memory_lib.add(mem, jnp.asarray(rng.integers(0, 256, (n, 6, 6, 1)), jnp.uint8),
                         jnp.asarray(rng.integers(0, 3, n), jnp.int32), task)
  batch = {"task": jnp.full((4,), 2, jnp.int32)}

  def compute(mem, params):
    outs = [m.step_args(m.init_state(params, stats).replace(memory=mem), params, stats, batch, jax.random.PRNGKey(0))
            for m in methods]
    expect = []
    for k, n in [(0, 4), (1, 6)]:  # task 0 stored 4 examples, task 1 the last 6 of its 9
      b = {key: v[k, :n] for key, v in memory_lib.task_batches(mem, 3).items()}
      expect.append(jax.grad(lambda p, b=b: fns.loss(p, stats, b, None, False)[0])(params))
    return outs, expect

  outs, expect = jax.jit(compute)(mem, params)
  np.testing.assert_array_equal(outs[0]["ref_mask"], [True, True, False])
  for out in outs[1:]:
    chex.assert_trees_all_close(out["ref_grads"], outs[0]["ref_grads"], rtol=1e-5, atol=1e-7)
  for k in (0, 1):
    got = jax.tree_util.tree_map(lambda x, k=k: x[k], outs[0]["ref_grads"])
    chex.assert_trees_all_close(got, expect[k], rtol=1e-5, atol=1e-7)
  assert not any(np.any(x[2]) for x in jax.tree_util.tree_leaves(outs[0]["ref_grads"])), seed


def test_old_task_gradients_under_replicas_skip_unseen_slots():
  """Under the replicas' vmap, ``memory_grad_chunk >= 1`` keeps one real loop over the old tasks' slots (its
  predicate is one scalar, not one per replica, which would run every replica's longest trip and select
  the results), and its gradients match one vmap over every slot (chunk 0)."""
  rng, seed = fresh_rng()
  methods = [_tiny_setup("lgd", memory_grad_chunk=chunk)[0] for chunk in (0, 1, 2)]
  fns = methods[0].fns
  params, stats = _init(fns, rng)
  mems = []
  for r in range(3):  # three replicas, each its own memory; every replica trains task 2 (2 old tasks of K=3)
    mem = methods[0].init_state(params, stats).memory
    for task in (0, 1):
      n = 3 + r + task
      mem = memory_lib.add(mem, jnp.asarray(rng.integers(0, 256, (n, 6, 6, 1)), jnp.uint8),
                           jnp.asarray(rng.integers(0, 3, n), jnp.int32), task)
    mems.append(mem)
  mems = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *mems)
  batch = {"task": jnp.full((3, 4), 2, jnp.int32)}

  def args(method):
    one = lambda mem, b: method.old_task_grads(method.init_state(params, stats).replace(memory=mem),  # noqa: E731
                                               params, stats, b)
    return jax.vmap(one, axis_name=REPLICA_AXIS)

  outs = [jax.jit(args(m))(mems, batch) for m in methods]
  for out in outs[1:]:
    np.testing.assert_array_equal(out["ref_mask"], outs[0]["ref_mask"])
    chex.assert_trees_all_close(out["ref_grads"], outs[0]["ref_grads"], rtol=1e-5, atol=1e-7)
    assert not any(np.any(x[:, 2]) for x in jax.tree_util.tree_leaves(out["ref_grads"])), seed
  for m in methods[1:]:
    loops = [e for e in jax.make_jaxpr(args(m))(mems, batch).eqns if e.primitive.name == "while"]
    assert len(loops) == 1 and loops[0].params["cond_jaxpr"].jaxpr.outvars[0].aval.shape == (), seed


def test_replica_max_is_unbatched_inside_the_replicas_vmap_and_the_value_outside():
  x = jnp.asarray([1, 3, 2], jnp.int32)
  out = jax.vmap(lambda v: replica_max(v) + 0 * v, axis_name=REPLICA_AXIS)(x)
  np.testing.assert_array_equal(out, [3, 3, 3])
  assert int(replica_max(jnp.int32(5))) == 5


@pytest.mark.parametrize("key,value", [("memory_per_task", 0), ("grouping", "rows"), ("gem_margin", -1.0),
                                       ("lgd_threshold", 1.5), ("lgd_top_k", -1), ("agem_ref_batch", 0)])
def test_bad_method_config_is_a_config_error(key, value):
  name = {"gem_margin": "gem", "agem_ref_batch": "agem"}.get(key, "lgd")
  with pytest.raises(ConfigError, match=f"method.{key}"):
    _tiny_setup(name, **{key: value})


def test_layerwise_local_mode_uses_local_losses_and_projects_per_local_block():
  from lwcl import layerwise  # pylint: disable=g-import-not-at-top
  rng, seed = fresh_rng()
  cfg = small_config(**{"method.name": "gem", "method.memory_per_task": 6, "layerwise.mode": "local"})
  model = Network(mlp_blocks((8, 8)), TaskHeads(4, 3, name="head"))
  fns = layerwise.build_fns(cfg.layerwise, model, Preprocessor((0.5,), (0.25,)), np.ones((4, 3), bool),
                            (6, 6, 1), 4, 3)
  method = build_method(cfg.method, types.SimpleNamespace(max_tasks=4, image_shape=(6, 6, 1)), fns)
  params, stats = _init(fns, rng)
  groups = [{jax.tree_util.keystr(p[:1]) for i, (p, _) in enumerate(jax.tree_util.tree_flatten_with_path(
      params)[0]) if i in g} for g in param_groups.parameter_groups(params, method.grouping)]
  assert sorted(map(sorted, groups)) == [["['aux_0']", "['blocks_0']"], ["['blocks_1']", "['head']"]]
  with pytest.raises(ConfigError, match="method.grouping"):
    _tiny_setup("gem", grouping="local_block")

  mem = method.init_state(params, stats).memory
  for task in (0, 1):
    mem = memory_lib.add(mem, jnp.asarray(rng.integers(0, 256, (6, 6, 6, 1)), jnp.uint8),
                         jnp.asarray(rng.integers(0, 3, 6), jnp.int32), task)

  def compute(mem, params):
    args = method.step_args(method.init_state(params, stats).replace(memory=mem), params, stats,
                            {"task": jnp.full((4,), 2, jnp.int32)}, None)
    b = {key: v[0] for key, v in memory_lib.task_batches(mem, 3).items()}
    first = jax.grad(lambda p: fns.local_losses(p, stats, b, None, False)[0])(params)
    return args, first

  args, first = jax.jit(compute)(mem, params)
  # Block 0 (and its auxiliary head) gets the gradient of its own local loss L_0 on task 0's memory.
  for name in ("blocks_0", "aux_0"):
    chex.assert_trees_all_close(jax.tree_util.tree_map(lambda x: x[0], args["ref_grads"][name]), first[name],
                                rtol=1e-5, atol=1e-7, custom_message=f"seed {seed}")


PROTOCOL_CONFIGS = ["gem_permuted_mnist", "gem_rotated_mnist", "gem_permuted_fashion_mnist",
                    "gem_rotated_fashion_mnist", "gem_split_cifar100", "agem_permuted_mnist",
                    "agem_permuted_fashion_mnist", "agem_split_cifar100"]


# What may differ between configs of one protocol: the data set and how the stream is cut (the model and
# its sizes follow the data set: an MLP for MNIST-like data, GEM's reduced ResNet-18 for CIFAR-100).
DATA_KEYS = ("data.", "scenario.kind", "scenario.incremental", "scenario.task_heads", "scenario.classes_per_task",
             "scenario.class_order", "scenario.samples_per_task", "scenario.max_angle", "model.",
             "method.memory_per_task", "optimizer.learning_rate")


def _protocol_config(name):
  """configs/<name>.py loaded as ``--config`` loads it (lwcl.config.files), locked and value-checked."""
  import os  # pylint: disable=g-import-not-at-top

  from lwcl.config import files as config_files  # pylint: disable=g-import-not-at-top
  from lwcl.config import values as config_values  # pylint: disable=g-import-not-at-top
  c = config_files.load(os.path.join(ROOT, "configs", f"{name}.py")).get_config()
  c.lock()
  config_values.check_values(c)
  return c


def _flat(d, prefix=""):
  return {k2: v2 for k, v in d.items()
          for k2, v2 in (_flat(v, f"{prefix}{k}.").items() if isinstance(v, dict) else [(prefix + k, v)])}


def test_protocol_configs_share_their_protocol_and_differ_only_in_the_data():
  configs = {name: _protocol_config(name) for name in PROTOCOL_CONFIGS}
  for protocol in ("gem", "agem"):
    members = {n: _flat(c.to_dict()) for n, c in configs.items() if n.split("_")[0] == protocol}
    assert len(members) >= 3
    first = next(iter(members.values()))
    for name, flat in members.items():
      assert flat["method.name"] == protocol, name
      differ = {k for k in first if flat[k] != first[k]}
      assert all(k.startswith(DATA_KEYS) for k in differ), (name, sorted(differ))
  # Both protocols: the same epochs and minibatches, plain SGD without momentum.
  for name, c in configs.items():
    assert (c.train.epochs_per_task, c.train.batch_size, c.optimizer.name, c.optimizer.momentum) == \
        (configs["gem_split_cifar100"].train.epochs_per_task, configs["gem_split_cifar100"].train.batch_size,
         "sgd", 0.0), name
  # A-GEM reports the tasks after its cross-validation tasks: its CIFAR-100 class order starts after them,
  # and the reported tasks use every remaining class.
  agem, gem = configs["agem_split_cifar100"], configs["gem_split_cifar100"]
  cv_tasks = gem.scenario.num_tasks - agem.scenario.num_tasks
  assert cv_tasks > 0
  assert tuple(agem.scenario.class_order) == tuple(range(cv_tasks * agem.scenario.classes_per_task, 100))
  assert len(agem.scenario.class_order) == agem.scenario.num_tasks * agem.scenario.classes_per_task


def _lgd_margin_reference(g, G, margin, push):
  """The conflict-case push in float64 (reference code ``project5cone5`` with an SVD basis): ``Pg``, minus
  its conflicting part along ``P gbar``, plus ``max(0, <v, Pg> / <v, Pv> + margin) v`` with ``v`` the sum
  (``push='sum'``) or the mean of the old gradients."""
  gbar = G.mean(0)
  _, sv, vt = np.linalg.svd(G - gbar, full_matrices=False)
  U = vt[sv > 1e-10 * sv[0]]
  proj = lambda x: x - U.T @ (U @ x)  # noqa: E731
  pg, pb = proj(g), proj(gbar)
  if gbar @ pg >= 0:
    return pg
  v = G.sum(0) if push == "sum" else gbar
  return pg - (pb @ pg) / (pb @ pb) * pb + max(0.0, (v @ pg) / (v @ proj(v)) + margin) * v


def test_lgd_single_task_push_hand_computed():
  # Two groups ({'a'}, {'b'}), one real old task (slot 0) and a masked-off slot; s = g_1 per group.
  s_a, s_b = np.array([2.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
  ref = {"a": {"w": np.stack([s_a, -9 * np.ones(3)])}, "b": {"w": np.stack([s_b, 5 * np.ones(3)])}}
  project = jax.jit(lambda g, r, m, single: pj.project_lgd(g, r, m, "layer", margin=0.5,
                                                           single_task_push=single), static_argnums=3)
  mask = jnp.asarray([True, False])
  # Group a: <s, g> = 4, <s, s> = 4: no conflict, g + max(-1, 0.5) s = g + (1, 0, 0).
  # Group b: weak conflict, <s, g> = -0.2: g + max(0.2, 0.5) s = g + (0, 0.5, 0).
  g = {"a": {"w": np.array([2.0, 1.0, -1.0])}, "b": {"w": np.array([3.0, -0.2, 1.0])}}
  with jax.enable_x64(True):
    on = project(g, ref, mask, True)
    off = project(g, ref, mask, False)
  np.testing.assert_allclose(on["a"]["w"], [3.0, 1.0, -1.0], rtol=1e-12)
  np.testing.assert_allclose(on["b"]["w"], [3.0, 0.3, 1.0], rtol=1e-12)
  # Without the one-task rule there is no push without a conflict; with a conflict both rules agree.
  np.testing.assert_allclose(off["a"]["w"], g["a"]["w"], rtol=1e-12)
  np.testing.assert_allclose(off["b"]["w"], on["b"]["w"], rtol=1e-12)
  # Strong conflict, <s, g> = -3 in group b: g + max(3, 0.5) s removes the conflict exactly.
  g["b"]["w"] = np.array([3.0, -3.0, 1.0])
  with jax.enable_x64(True):
    on = project(g, ref, mask, True)
  np.testing.assert_allclose(on["b"]["w"], [3.0, 0.0, 1.0], rtol=1e-12, atol=1e-15)
  # Two old tasks: the one-task rule is off (slot 1 is real now), the conflict-case rule applies.
  both = jnp.asarray([True, True])
  with jax.enable_x64(True):
    np.testing.assert_allclose(project(g, ref, both, True)["a"]["w"], project(g, ref, both, False)["a"]["w"])
    # margin 0: the one-task rule is A-GEM, the equation's single-task case.
    zero = pj.project_lgd(g, ref, mask, "layer", margin=0.0, single_task_push=True)
    agem = pj.project_agem(g, jax.tree_util.tree_map(lambda r: r[0], ref), grouping="layer")
  chex.assert_trees_all_close(zero, agem, rtol=1e-12)


def test_lgd_push_mean_and_sum_match_float64_reference():
  rng, seed = fresh_rng()
  K = 3
  G = rng.standard_normal((K, P)) + 2 * rng.standard_normal(P)
  full = np.zeros((KMAX, P))
  full[:K] = G
  mask = jnp.asarray(np.arange(KMAX) < K)
  _, sv, vt = np.linalg.svd(G - G.mean(0), full_matrices=False)
  U = vt[sv > 1e-10 * sv[0]]
  pb = G.mean(0) - U.T @ (U @ G.mean(0))
  with jax.enable_x64(True):
    project = jax.jit(lambda g, push: pj.project_lgd({"w": g}, {"w": jnp.asarray(full)}, mask, margin=0.5,
                                                     push=push, single_task_push=True)["w"], static_argnums=1)
    # Strong conflict (no push for either), weak conflict (both push), no conflict (unchanged).
    for strength in (3.0, 0.1, -1.0):
      g = -strength * pb / np.linalg.norm(pb) * np.linalg.norm(G.mean(0)) + 0.05 * rng.standard_normal(P)
      outs = {}
      for push in ("sum", "mean"):
        outs[push] = np.asarray(project(jnp.asarray(g), push))
        ref = _lgd_margin_reference(g, G, 0.5, push)
        np.testing.assert_allclose(outs[push], ref, rtol=1e-9, atol=1e-10 * np.linalg.norm(g),
                                   err_msg=f"seed {seed}, strength {strength}, push {push}")
      differ = np.linalg.norm(outs["sum"] - outs["mean"]) > 1e-6 * np.linalg.norm(g)
      assert differ == (strength == 0.1), seed
  with pytest.raises(ValueError):
    pj.lgd(push="median")


@pytest.mark.parametrize("key,value", [("grouping", "tensors:x"), ("grouping", "tensors:0"),
                                       ("grouping", "tensors:1.5"), ("grouping", "tensors:"),
                                       ("lgd_push", "median"), ("lgd_single_task_push", "yes")])
def test_bad_lgd_authors_keys_are_config_errors(key, value):
  cfg = small_config(**{"method.name": "lgd"})
  method_cfg = dict(cfg.method)
  method_cfg[key] = value
  with pytest.raises(ConfigError, match=f"method.{key}"):
    build_method(types.SimpleNamespace(**method_cfg),
                 types.SimpleNamespace(max_tasks=4, image_shape=(6, 6, 1)), _tiny_setup("lgd")[1])


def test_lgd_authors_rule_in_the_train_step():
  rng, seed = fresh_rng()
  method, fns = _tiny_setup("lgd", max_tasks=3, lgd_margin=0.5, lgd_push="mean", lgd_single_task_push=True,
                            grouping="tensors:5", lgd_top_k=3)
  assert method.grouping == "tensors:5" and method.push == "mean" and method.single_task_push
  tx = optax.chain(method.transformation(), optax.sgd(0.1))
  step = jax.jit(make_train_step(fns, tx, method), donate_argnums=(0,))
  params, stats = _init(fns, rng)
  state = TrainState(jnp.zeros((), jnp.int32), params, stats, tx.init(params),
                     method.init_state(params, stats), jax.random.PRNGKey(1))
  for task in range(3):
    for _ in range(2):
      batch = {"image": rng.integers(0, 256, (4, 6, 6, 1)).astype(np.uint8),
               "label": rng.integers(0, 3, 4).astype(np.int32), "task": np.full(4, task, np.int32)}
      state, metrics = step(state, batch)
      assert np.isfinite(float(metrics["loss"])), seed
  assert step._cache_size() == 1


@pytest.mark.parametrize("name", ["lgd_permuted_fashion_mnist", "lgd_rotated_fashion_mnist"])
def test_lgd_preset_configs(name):
  import os  # pylint: disable=g-import-not-at-top

  from lwcl.config import files as config_files  # pylint: disable=g-import-not-at-top
  module = config_files.load(os.path.join(ROOT, "configs", f"{name}.py"))
  presets = {arg: module.get_config(arg) for arg in ("equation", "authors", "authors_mean")}
  for c in presets.values():
    c.lock()
    assert c.method.name == "lgd" and c.model.name == "mlp" and c.model.hidden == (100, 100)
    assert c.train.batch_size == 10 and c.train.epochs_per_task == 1 and c.scenario.samples_per_task == 1000
    assert c.optimizer.learning_rate == 0.1 and c.optimizer.momentum == 0.0
    assert c.method.memory_per_task == 256
    assert c.scenario.kind == name.split("_")[1]
  m = presets["equation"].method
  assert (m.grouping, m.lgd_margin, m.lgd_top_k, m.lgd_threshold) == ("auto", 0.0, 0, 0.0)
  assert not m.lgd_single_task_push
  for arg, push in (("authors", "sum"), ("authors_mean", "mean")):
    m = presets[arg].method
    assert (m.grouping, m.lgd_margin, m.lgd_push, m.lgd_single_task_push, m.lgd_top_k) == (
        "tensors:5", 0.5, push, True, 3)
  with pytest.raises(ValueError, match="equation"):
    module.get_config("paper")
