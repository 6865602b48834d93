"""lwcl.methods.param_groups: parameter groups follow the Flax modules and their order of creation."""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl.core.model_fns import ModelFns
from lwcl.data.pipeline import Preprocessor
from lwcl.methods import param_groups
from lwcl.methods import projection as pj

from helpers import fresh_rng, mlp_params, random_like, small_config

P, KMAX = 120, 8  # fixed shapes: one compilation per test function


def test_group_labels_follow_flax_modules():
  params = mlp_params((5, 4))
  leaves = jax.tree_util.tree_leaves(params)
  assert len(param_groups.parameter_groups(params, "network")) == 1
  layer = param_groups.group_labels(params, "layer")
  assert sorted(set(layer)) == [("blocks_0", "Dense_0"), ("blocks_1", "Dense_0"), ("head",)]
  assert len(param_groups.parameter_groups(params, "block")) == 3 and len(layer) == len(leaves)
  kernels = param_groups.parameter_groups(params, lambda path, leaf: path[-1])
  assert len(kernels) == 2
  with pytest.raises(ValueError):
    param_groups.group_labels(params, "neuron")


def _resnet_params_in_creation_order(depth, aux_head=None):
  """A ResNet's parameter tree (shapes only) and its leaf paths in the order ``init`` creates them,
  read from the unsorted dicts at trace time; with ``aux_head``, layer-wise with auxiliary heads."""
  from lwcl import layerwise  # pylint: disable=g-import-not-at-top
  from lwcl.models import build_model  # pylint: disable=g-import-not-at-top
  overrides = {"model.name": "resnet", "model.depth": depth, "model.width": 2}
  if aux_head:
    overrides.update({"layerwise.mode": "local", "layerwise.aux_head": aux_head, "layerwise.cuts": "even:3"})
  cfg = small_config(**overrides)
  model = build_model(cfg.model, types.SimpleNamespace(num_heads=2, output_dim=3))
  fns = layerwise.build_fns(cfg.layerwise, model, Preprocessor((0.5,), (0.25,)), np.ones((2, 3), bool),
                            (8, 8, 1), 2, 3) if aux_head else ModelFns(model, None, np.ones((2, 3), bool))
  created = []

  def walk(d, prefix=()):
    for k, v in d.items():
      walk(v, prefix + (k,)) if isinstance(v, dict) else created.append(prefix + (k,))

  def init(key):
    params = fns.init_variables(key, (8, 8, 1))[0]  # traced as written (``init`` compiles it: sorted keys)
    walk(params)
    return params

  params = jax.eval_shape(init, jax.random.PRNGKey(0))
  return params, created


def _paths(tree):
  return [tuple(str(k.key) for k in p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def test_definition_order_is_the_order_of_creation():
  params, created = _resnet_params_in_creation_order(32)
  paths = _paths(params)
  order = [paths[i] for i in param_groups.definition_order(params)]
  assert order == created
  tops = list(dict.fromkeys(p[0] for p in order))
  assert tops == [f"blocks_{i}" for i in range(16)] + ["head"]
  assert [p[0] for p in paths].index("blocks_10") < [p[0] for p in paths].index("blocks_2")  # sorted by name
  assert order[:4] == [("blocks_0", "Conv_0", "kernel"), ("blocks_0", "BatchNorm_0", "scale"),
                       ("blocks_0", "BatchNorm_0", "bias"), ("blocks_1", "Conv_0", "kernel")]
  assert [p[1:] for p in order if p[0] == "blocks_6"][-5:] == [  # the first block of stage 2: a shortcut
      ("BatchNorm_1", "scale"), ("BatchNorm_1", "bias"), ("shortcut_conv", "kernel"),
      ("BatchNorm_2", "scale"), ("BatchNorm_2", "bias")]
  # Layer-wise: the auxiliary heads (convs with BatchNorm, then their task heads) after the network's head.
  params, created = _resnet_params_in_creation_order(8, aux_head="cnn")
  paths = _paths(params)
  order = [paths[i] for i in param_groups.definition_order(params)]
  assert order == created
  assert list(dict.fromkeys(p[0] for p in order)) == ["blocks_0", "blocks_1", "blocks_2", "blocks_3", "head",
                                                      "aux_0", "aux_1"]


def test_tensors_grouping_cuts_definition_order():
  params = mlp_params((100, 100))
  paths = _paths(params)
  W1, b1 = ("blocks_0", "Dense_0", "kernel"), ("blocks_0", "Dense_0", "bias")
  W2, b2 = ("blocks_1", "Dense_0", "kernel"), ("blocks_1", "Dense_0", "bias")
  W3, b3 = ("head", "kernel"), ("head", "bias")
  assert [paths[i] for i in param_groups.definition_order(params)] == [W1, b1, W2, b2, W3, b3]
  named = lambda grouping: sorted(sorted(paths[i] for i in g)  # noqa: E731
                                  for g in param_groups.parameter_groups(params, grouping))
  assert named("tensors:5") == sorted([sorted([W1, b1, W2, b2, W3]), [b3]])
  assert named("tensors:2") == named("layer")
  assert named("tensors:6") == named("tensors:100") == named("network")
  assert named("tensors:1") == sorted([p] for p in paths)
  for bad in ("tensors:0", "tensors:x", "tensors:", "tensors:-1", "tensors:2.5"):
    with pytest.raises(ValueError):
      param_groups.group_labels(params, bad)
  # The projection accepts it: tensors:2 is the per-layer projection on this model.
  rng, seed = fresh_rng()
  g = random_like(rng, params)
  refs = random_like(rng, params, KMAX)
  mask = jnp.asarray(np.arange(KMAX) < 4)
  both = jax.jit(lambda g, r: (pj.project_lgd(g, r, mask, "tensors:2", margin=0.5),
                               pj.project_lgd(g, r, mask, "layer", margin=0.5)))(g, refs)
  chex.assert_trees_all_close(*both, rtol=1e-6, atol=1e-7, custom_message=f"seed {seed}")
