"""Importance penalties (lwcl/methods/regularization.py): every estimator against an independent float64 NumPy
computation on a tiny network, SI on a quadratic with a known path integral, the penalty's gradient, and
strength 0 = fine-tuning bit for bit."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lwcl import methods
from lwcl.config import files as config_files
from lwcl.core.model_fns import ModelFns
from lwcl.data.examples import Examples
from lwcl.data.pipeline import Preprocessor
from lwcl.errors import ConfigError
from lwcl.methods import regularization as reg
from lwcl.models.convnet import ConvStage
from lwcl.models.heads import TaskHeads
from lwcl.models.mlp import DenseBlock
from lwcl.models.network import Network

from helpers import ROOT

RTOL, ATOL = 2e-5, 1e-7


def method_config(**overrides):
  c = config_files.load(os.path.join(ROOT, "configs", "default.py")).get_config().method
  for k, v in overrides.items():
    c[k] = v
  return c


# -- a tiny network and its NumPy twin ---------------------------------------------------------------

# Two task heads of 3 outputs; task 0 may predict outputs 0,1; task 1 outputs 0,2 (masked heads).
LABEL_MASKS = np.array([[True, True, False], [True, False, True]])


def tiny_fns(blocks, image_shape):
  model = Network(blocks, TaskHeads(2, 3, name="head"), "flatten")
  fns = ModelFns(model, Preprocessor((0.0,), (1.0,)), LABEL_MASKS)
  params, batch_stats = fns.init(jax.random.PRNGKey(1), image_shape)
  # Non-zero biases so dead units, bias gradients and normalization are all exercised.
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda p: p + jnp.asarray(0.1 * rng.standard_normal(p.shape), p.dtype), params)
  return fns, params, batch_stats


def tiny_data(n, image_shape, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n,) + image_shape, dtype=np.uint8)
  tasks = rng.integers(0, 2, n).astype(np.int32)
  labels = np.where(tasks == 0, rng.integers(0, 2, n), 2 * rng.integers(0, 2, n)).astype(np.int32)
  return Examples(images, labels, tasks)


def np64(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def softmax(z):
  z = z - z.max()
  e = np.exp(z)
  return e / e.sum()


def mlp_forward(p, image, task):
  """NumPy forward of Network([DenseBlock(5)], heads): (x, z, h, masked logits)."""
  x = image.reshape(-1).astype(np.float64) / 255.0
  z = x @ p["blocks_0"]["Dense_0"]["kernel"] + p["blocks_0"]["Dense_0"]["bias"]
  h = np.maximum(z, 0.0)
  logits = h @ p["head"]["kernel"][task] + p["head"]["bias"][task]
  return x, z, h, np.where(LABEL_MASKS[task], logits, -1e9)


def mlp_backward(p, x, z, dlogits, task):
  """Gradient of a scalar with d/dlogits = ``dlogits`` (NumPy backprop by hand)."""
  g = jax.tree.map(np.zeros_like, p)
  g["head"]["kernel"][task] = np.outer(np.maximum(z, 0.0), dlogits)
  g["head"]["bias"][task] = dlogits
  dz = (p["head"]["kernel"][task] @ dlogits) * (z > 0)
  g["blocks_0"]["Dense_0"]["kernel"] = np.outer(x, dz)
  g["blocks_0"]["Dense_0"]["bias"] = dz
  return g


def assert_tree_close(actual, expected, rtol=RTOL, atol=ATOL):
  chex.assert_trees_all_equal_structs(jax.tree.map(np.asarray, actual), expected)
  jax.tree.map(lambda a, e: np.testing.assert_allclose(np.asarray(a, np.float64), e, rtol=rtol, atol=atol),
               actual, expected)


# -- EWC and MAS -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlp():
  fns, params, batch_stats = tiny_fns([DenseBlock(5)], (2, 2, 1))
  return fns, params, batch_stats, tiny_data(10, (2, 2, 1))


def test_ewc_fisher_matches_numpy_per_example_gradients(mlp):
  fns, params, batch_stats, data = mlp
  p = np64(params)
  sq = []
  for image, label, task in zip(data.images, data.labels, data.tasks):
    x, z, _, logits = mlp_forward(p, image, task)
    dlogits = softmax(logits) - np.eye(3)[label]  # d(-log p_y)/d logits
    sq.append(jax.tree.map(np.square, mlp_backward(p, x, z, dlogits, task)))
  expected = jax.tree.map(lambda *g: np.mean(g, 0), *sq)

  # Through the method (end_task on the host, chunks of 4: 10 examples padded to 12).
  method = methods.EWC(method_config(name="ewc", importance_samples=0, importance_batch_size=4), None, fns)
  state = method.init_state(params, batch_stats)
  state = method.end_task(state, params, batch_stats, 0, data)
  assert_tree_close(state.omega, expected)
  assert_tree_close(state.anchor, p, rtol=0, atol=0)

  # The pure estimator, with another chunk size and an explicit mask that drops the last 3 examples.
  def nll(prm, ex):
    logits, _ = fns.logits(prm, batch_stats, {k: v[None] for k, v in ex.items()}, train=False)
    return -jax.nn.log_softmax(logits[0])[ex["label"]]

  ex = {"image": data.images, "label": data.labels, "task": data.tasks}
  mask = np.r_[np.ones(7), np.zeros(3)].astype(np.float32)
  got = jax.jit(lambda prm: reg.fisher_importance(nll, prm, ex, mask, batch_size=3))(params)
  assert_tree_close(got, jax.tree.map(lambda *g: np.mean(g[:7], 0), *sq))


def test_ewc_sampled_fisher_is_finite_and_differs(mlp):
  fns, params, batch_stats, data = mlp
  method = methods.EWC(method_config(name="ewc", ewc_fisher="sampled", importance_batch_size=4), None, fns)
  omega = method.task_importance(None, params, batch_stats, 0, data)
  assert all(np.all(np.isfinite(leaf)) and np.all(np.asarray(leaf) >= 0) for leaf in jax.tree.leaves(omega))
  empirical = methods.EWC(method_config(name="ewc", importance_batch_size=4), None, fns).task_importance(
      None, params, batch_stats, 0, data)
  assert not np.allclose(omega["head"]["bias"], empirical["head"]["bias"])


def test_mas_matches_numpy(mlp):
  fns, params, batch_stats, data = mlp
  p = np64(params)
  grads = []
  for image, task in zip(data.images, data.tasks):
    x, z, _, logits = mlp_forward(p, image, task)
    f = np.where(LABEL_MASKS[task], logits, 0.0)
    grads.append(jax.tree.map(np.abs, mlp_backward(p, x, z, 2.0 * f, task)))  # d||f||^2/df = 2f
  expected = jax.tree.map(lambda *g: np.mean(g, 0), *grads)
  method = methods.MAS(method_config(name="mas", importance_samples=0, importance_batch_size=4), None, fns)
  assert_tree_close(method.task_importance(None, params, batch_stats, 0, data), expected)


def test_importance_samples_caps_the_examples(mlp):
  fns, params, batch_stats, data = mlp
  method = methods.MAS(method_config(name="mas", importance_samples=6, importance_batch_size=4), None, fns)
  examples, mask = method.importance_examples(data, 0)
  assert examples["image"].shape[0] == 8 and mask.sum() == 6


# -- NAI -------------------------------------------------------------------------------------------

def nai_expected_mlp(p, data, rule, normalize="layer_mean"):
  """NumPy NAI for Network([Dense(5), Dense(4)], heads)."""
  h1s, h2s = [], []
  for image in data.images:
    x = image.reshape(-1).astype(np.float64) / 255.0
    h1 = np.maximum(x @ p["blocks_0"]["Dense_0"]["kernel"] + p["blocks_0"]["Dense_0"]["bias"], 0)
    h2 = np.maximum(h1 @ p["blocks_1"]["Dense_0"]["kernel"] + p["blocks_1"]["Dense_0"]["bias"], 0)
    h1s.append(h1)
    h2s.append(h2)
  norm = {"layer_mean": np.mean, "layer_max": np.max, "none": lambda v: 1.0}[normalize]
  i1 = np.mean(h1s, 0) / norm(np.mean(h1s, 0))
  i2 = np.mean(h2s, 0) / norm(np.mean(h2s, 0))
  out = jax.tree.map(np.zeros_like, p)
  out["blocks_0"]["Dense_0"]["kernel"] = np.broadcast_to(i1, (4, 5)).copy()  # pixels count as 0
  out["blocks_0"]["Dense_0"]["bias"] = i1
  k2 = np.broadcast_to(i2, (5, 4))
  out["blocks_1"]["Dense_0"]["kernel"] = np.maximum(k2, i1[:, None]) if rule == "max" else k2.copy()
  out["blocks_1"]["Dense_0"]["bias"] = i2
  return out, i2, np.asarray(h2s)


@pytest.fixture(scope="module")
def mlp2():
  fns, params, batch_stats = tiny_fns([DenseBlock(5), DenseBlock(4)],
                                      (2, 2, 1))
  return fns, params, batch_stats, tiny_data(9, (2, 2, 1), seed=3)


@pytest.mark.parametrize("rule,normalize", [("output", "layer_mean"), ("max", "layer_mean"),
                                            ("output", "layer_max"), ("max", "none")])
def test_nai_mlp_matches_numpy(mlp2, rule, normalize):
  fns, params, batch_stats, data = mlp2
  expected, _, _ = nai_expected_mlp(np64(params), data, rule, normalize)
  method = methods.NAI(method_config(name="nai", nai_weight_rule=rule, nai_normalize=normalize,
                                 importance_samples=0, importance_batch_size=4), None, fns)
  assert_tree_close(method.task_importance(None, params, batch_stats, 0, data), expected)


def test_nai_heads_included(mlp2):
  fns, params, batch_stats, data = mlp2
  p = np64(params)
  expected, i2, h2s = nai_expected_mlp(p, data, "max")
  probs_sum, count = np.zeros((2, 3)), np.zeros(2)
  for h2, t in zip(h2s, data.tasks):
    logits = np.where(LABEL_MASKS[t], h2 @ p["head"]["kernel"][t] + p["head"]["bias"][t], -1e9)
    probs_sum[t] += softmax(logits)
    count[t] += 1
  mean = probs_sum / count[:, None]
  imp = np.where(LABEL_MASKS, mean / (mean.sum(1, keepdims=True) / 2), 0.0)  # 2 allowed outputs per task
  expected["head"]["kernel"] = np.maximum(imp[:, None, :], i2[None, :, None])
  expected["head"]["bias"] = imp
  method = methods.NAI(method_config(name="nai", nai_weight_rule="max", nai_include_heads=True,
                                 importance_samples=0, importance_batch_size=4), None, fns)
  assert_tree_close(method.task_importance(None, params, batch_stats, 0, data), expected)


def conv3x3_same(x, kernel, bias):
  """NumPy 'SAME' cross-correlation (Flax nn.Conv): x [H, W, Ci], kernel [3, 3, Ci, Co]."""
  h, w, _ = x.shape
  xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
  out = np.zeros((h, w, kernel.shape[-1]))
  for i in range(h):
    for j in range(w):
      out[i, j] = np.einsum("abc,abco->o", xp[i:i + 3, j:j + 3], kernel) + bias
  return out


@pytest.mark.parametrize("rule", ["output", "max"])
def test_nai_convnet_matches_numpy(rule):
  fns, params, batch_stats = tiny_fns([ConvStage((3,)), DenseBlock(4)],
                                      (4, 4, 1))
  data = tiny_data(6, (4, 4, 1), seed=5)
  p = np64(params)
  conv, dense = p["blocks_0"]["Conv_0"], p["blocks_1"]["Dense_0"]
  a1s, a2s = [], []
  for image in data.images:
    a1 = np.maximum(conv3x3_same(image.astype(np.float64) / 255.0, conv["kernel"], conv["bias"]), 0)
    pooled = a1.reshape(2, 2, 2, 2, 3).max(axis=(1, 3))  # 2x2 max pool
    a2 = np.maximum(pooled.reshape(-1) @ dense["kernel"] + dense["bias"], 0)
    a1s.append(a1.mean(axis=(0, 1)))  # mean over spatial positions
    a2s.append(a2)
  i1 = np.mean(a1s, 0) / np.mean(np.mean(a1s, 0))
  i2 = np.mean(a2s, 0) / np.mean(np.mean(a2s, 0))
  expected = jax.tree.map(np.zeros_like, p)
  expected["blocks_0"]["Conv_0"] = {"kernel": np.broadcast_to(i1, (3, 3, 1, 3)).copy(), "bias": i1}
  k2 = np.broadcast_to(i2, (12, 4))
  if rule == "max":  # flattened [2, 2, 3] input: index d is channel d % 3
    k2 = np.maximum(k2, np.tile(i1, 4)[:, None])
  expected["blocks_1"]["Dense_0"] = {"kernel": k2.copy(), "bias": i2}
  method = methods.NAI(method_config(name="nai", nai_weight_rule=rule, importance_samples=0,
                                 importance_batch_size=4), None, fns)
  assert_tree_close(method.task_importance(None, params, batch_stats, 0, data), expected)


def test_nai_needs_activation_hooks():
  def forward(params, batch):
    return jnp.zeros((batch["task"].shape[0], 2)), {}
  with pytest.raises(ValueError, match="records no activations"):
    reg.nai_importance(forward, {"w": jnp.ones(2)}, {"task": jnp.zeros(3, jnp.int32)})


# -- SI --------------------------------------------------------------------------------------------

def test_si_path_integral_on_a_quadratic():
  """L(theta) = 1/2 sum a (theta - c)^2 under SGD: g_t = a r^t d0 with r = 1 - lr a, d0 = theta0 - c, so
  the path integral is sum_t lr g_t^2 = lr a^2 d0^2 (1 - r^(2T)) / (1 - r^2) and delta = d0 (r^T - 1)."""
  a, c, theta0 = np.array([0.5, 1.0, 2.0]), np.array([1.0, -2.0, 0.5]), np.array([0.0, 1.0, -1.0])
  lr, steps, xi = 0.05, 40, 1e-3
  method = methods.SI(method_config(name="si", si_xi=xi), None, None)
  params = {"w": jnp.asarray(theta0, jnp.float32)}
  state = method.init_state(params, {})
  step = jax.jit(method.after_step)
  for _ in range(steps):
    g = {"w": jnp.asarray(a, jnp.float32) * (params["w"] - jnp.asarray(c, jnp.float32))}
    new = jax.tree.map(lambda p, gg: p - lr * gg, params, g)
    state, params = step(state, params, new, g, None), new
  r, d0 = 1 - lr * a, theta0 - c
  path = lr * a**2 * d0**2 * (1 - r**(2 * steps)) / (1 - r**2)
  np.testing.assert_allclose(state.path["w"], path, rtol=1e-4)
  # The path integral is the loss decrease up to the discretization factor (1 - lr a / 2).
  loss_drop = 0.5 * a * d0**2 * (1 - r**(2 * steps))
  np.testing.assert_allclose(path * (1 - lr * a / 2), loss_drop, rtol=1e-12)

  state = method.end_task(state, params, {}, 0, None)
  delta = d0 * (r**steps - 1)
  omega1 = path / (delta**2 + xi)
  np.testing.assert_allclose(state.omega["w"], omega1, rtol=1e-4)
  np.testing.assert_array_equal(state.path["w"], 0.0)
  np.testing.assert_array_equal(state.anchor["w"], params["w"])

  # Second task: a fresh path from the new anchor; importances add up.
  theta1, c2 = np.asarray(params["w"], np.float64), np.zeros(3)
  for _ in range(steps):
    g = {"w": jnp.asarray(a, jnp.float32) * params["w"]}
    new = jax.tree.map(lambda p, gg: p - lr * gg, params, g)
    state, params = step(state, params, new, g, None), new
  state = method.end_task(state, params, {}, 1, None)
  d1 = theta1 - c2
  path2 = lr * a**2 * d1**2 * (1 - r**(2 * steps)) / (1 - r**2)
  np.testing.assert_allclose(state.omega["w"], omega1 + path2 / ((d1 * (r**steps - 1))**2 + xi),
                             rtol=1e-4)


# -- the penalty -----------------------------------------------------------------------------------

def random_tree(seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda shape: jnp.asarray(rng.standard_normal(shape), jnp.float32),
                      {"a": {"kernel": (3, 4), "bias": (4,)}, "b": (2, 2, 5)},
                      is_leaf=lambda x: isinstance(x, tuple))


def test_penalty_gradient_equals_grad_of_quadratic():
  params, anchor, grads = random_tree(0), random_tree(1), random_tree(2)
  omega = jax.tree.map(jnp.abs, random_tree(3))
  tx = reg.importance_penalty(0.7)
  state = tx.init(params)
  updates, _ = jax.jit(tx.update)(grads, state, params, omega=omega, anchor=anchor)
  quadratic = lambda p: 0.35 * sum(jax.tree.leaves(jax.tree.map(  # noqa: E731  (0.7 / 2) sum omega (p - a)^2
      lambda x, o, a: jnp.sum(o * jnp.square(x - a)), p, omega, anchor)))
  want = jax.grad(quadratic)(params)
  chex.assert_trees_all_close(updates, jax.tree.map(jnp.add, grads, want), rtol=1e-6)
  # float64 NumPy: strength * omega * (params - anchor).
  expected = jax.tree.map(lambda g, o, p, a: np.float64(g) + 0.7 * np.float64(o) * (np.float64(p) - np.float64(a)),
                          grads, omega, params, anchor)
  assert_tree_close(updates, expected, rtol=1e-5, atol=1e-6)
  # The strength extra argument overrides the constructor's; a chained SGD sees the penalized gradient.
  chain = optax.chain(reg.importance_penalty(0.0), optax.with_extra_args_support(optax.sgd(0.1)))
  upd, _ = chain.update(grads, chain.init(params), params, omega=omega, anchor=anchor,
                        strength=jnp.float32(0.7))
  chex.assert_trees_all_close(upd, jax.tree.map(lambda u: -0.1 * u, updates), rtol=1e-6)


def test_penalty_state_is_not_frozen_into_compiled_code():
  params, anchor = random_tree(0), random_tree(1)
  tx, traces = reg.importance_penalty(1.0), []

  @jax.jit
  def step(omega, anchor, strength):
    traces.append(1)
    zeros = jax.tree.map(jnp.zeros_like, params)
    return tx.update(zeros, tx.init(params), params, omega=omega, anchor=anchor, strength=strength)[0]

  ones = jax.tree.map(jnp.ones_like, params)
  u1 = step(ones, anchor, jnp.float32(1.0))
  u2 = step(jax.tree.map(lambda o: 2 * o, ones), anchor, jnp.float32(1.0))
  u3 = step(ones, anchor, jnp.float32(3.0))
  assert len(traces) == 1
  chex.assert_trees_all_close(u2, jax.tree.map(lambda u: 2 * u, u1))
  chex.assert_trees_all_close(u3, jax.tree.map(lambda u: 3 * u, u1), rtol=1e-6)


def test_accumulate():
  a, b = {"w": jnp.array([1.0, 5.0])}, {"w": jnp.array([3.0, 2.0])}
  np.testing.assert_array_equal(reg.accumulate(a, b, "sum")["w"], [4.0, 7.0])
  np.testing.assert_array_equal(reg.accumulate(a, b, "max")["w"], [3.0, 5.0])
  with pytest.raises(ValueError):
    reg.accumulate(a, b, "mean")


# -- configuration ---------------------------------------------------------------------------------

def test_registered_and_bad_config_values(mlp):
  fns = mlp[0]
  for name, cls in [("ewc", methods.EWC), ("mas", methods.MAS), ("si", methods.SI), ("nai", methods.NAI)]:
    assert isinstance(methods.build_method(method_config(name=name), None, fns), cls)
  bad = [("ewc", {"strength": -1.0}, "method.strength"), ("mas", {"accumulate": "mean"}, "method.accumulate"),
         ("si", {"si_xi": 0.0}, "method.si_xi"), ("nai", {"nai_normalize": "l2"}, "method.nai_normalize"),
         ("ewc", {"importance_batch_size": 0}, "method.importance_batch_size"),
         ("ewc", {"ewc_fisher": "true"}, "method.ewc_fisher")]
  for name, override, key in bad:
    with pytest.raises(ConfigError, match=key) as err:
      methods.build_method(method_config(name=name, **override), None, fns)
    assert "\n" not in str(err.value)


def test_nai_max_rule_refuses_residual_networks():
  from lwcl.models.resnet import BasicBlock  # pylint: disable=g-import-not-at-top
  fns = ModelFns(Network([BasicBlock(4)], TaskHeads(1, 2, name="head"), "avg"),
                 Preprocessor((0.0,), (1.0,)), np.ones((1, 2), bool))
  with pytest.raises(ConfigError, match="nai_weight_rule"):
    methods.NAI(method_config(name="nai", nai_weight_rule="max"), None, fns)
  methods.NAI(method_config(name="nai", nai_weight_rule="output"), None, fns)
