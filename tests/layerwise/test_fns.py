"""lwcl.layerwise (build_fns, the local loss): block isolation, the local loss, read-outs, segmented steps,
block accuracies and the importance of every local block."""

import dataclasses
import functools
import json
import os
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lwcl import layerwise
from lwcl.core.model_fns import ModelFns
from lwcl.runs import driver

from helpers import small_config
from layerwise_cases import CLASSES, IMAGE, built, lw_config, make_batch, make_fns


def block_norms(grads) -> dict:
  return {name: float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree_util.tree_leaves(tree)))
          for name, tree in grads.items()}


def test_stop_gradient_isolates_blocks():
  fns, params, stats = built(cuts="block")  # 4 local blocks, one per network block
  assert fns.starts == (0, 1, 2, 3) and fns.num_blocks == 4
  batch = make_batch()
  plain = ModelFns(fns.model, fns.preprocess, fns.label_masks)
  net = {n: params[n] for n in params if not n.startswith("aux_")}

  @jax.jit
  def grads(params, net):
    local = [jax.grad(lambda p, k=k: fns.local_losses(p, stats, batch)[k])(params) for k in (2, 3)]
    return local, jax.grad(lambda p: plain.loss(p, stats, batch)[0])(net)

  (g2, g3), g_bp = grads(params, net)
  # Local: block k's loss has exactly zero gradient for every earlier block and head.
  norms = block_norms(g3)
  assert all(norms[n] == 0.0 for n in ("blocks_0", "blocks_1", "blocks_2", "aux_0", "aux_1", "aux_2")), norms
  assert norms["blocks_3"] > 0 and norms["head"] > 0
  norms = block_norms(g2)
  assert all(norms[n] == 0.0 for n in ("blocks_0", "blocks_1", "aux_0", "aux_1", "blocks_3", "head")), norms
  assert norms["blocks_2"] > 0 and norms["aux_2"] > 0
  # Backprop: the output's loss reaches the first block.
  norms = block_norms(g_bp)
  assert all(norms[f"blocks_{i}"] > 0 for i in range(4)), norms


def test_local_loss_is_the_sum_of_separately_computed_block_losses():
  fns, params, stats = built(cuts="block")
  batch = make_batch(1)

  @jax.jit
  def separately(params, stats, batch):
    # One full-network forward pass (BatchNorm on batch statistics, as in training) with every block's
    # output captured; each auxiliary head applied to its local block's last output.
    x = fns.preprocess(batch["image"])
    net = {n: params[n] for n in params if not n.startswith("aux_")}
    logits, inter = fns.model.apply({"params": net, "batch_stats": stats}, x, batch["task"], train=True,
                                    capture_intermediates=True, mutable=["batch_stats", "intermediates"])
    outs = [inter["intermediates"][f"blocks_{i}"]["__call__"][0] for i in range(4)]  # [B, ...] each
    losses = []
    for k in range(fns.num_blocks):
      if k < fns.num_blocks - 1:
        logits_k = fns.aux_heads[k].apply({"params": params[f"aux_{k}"]}, outs[fns.segment(k)[-1]],
                                          batch["task"])
      else:
        logits_k = logits
      losses.append(optax.softmax_cross_entropy_with_integer_labels(logits_k, batch["label"]).mean())
    return losses

  expected = [float(l) for l in separately(params, stats, batch)]
  loss_fn = jax.jit(jax.value_and_grad(fns.loss, has_aux=True), static_argnums=(4,))
  (loss, (logits, new_stats)), grads = loss_fn(params, stats, batch, None, True)
  np.testing.assert_allclose(float(loss), sum(expected), rtol=1e-5)
  chex.assert_shape(logits, (8, CLASSES))
  # The block-by-block gradient equals plain reverse mode through the stop-gradient sum.
  ref = jax.jit(jax.grad(lambda p: sum(fns.local_losses(p, stats, batch))))(params)
  chex.assert_trees_all_close(grads, ref, atol=1e-5, rtol=1e-4)
  # Batch statistics moved for every block.
  assert not np.allclose(new_stats["blocks_1"]["BatchNorm_0"]["mean"], stats["blocks_1"]["BatchNorm_0"]["mean"])
  assert set(new_stats) == set(stats)


def test_backprop_readouts_do_not_change_the_backbone_gradient():
  fns, params, stats = built(mode="backprop", readouts=True, cuts="block")
  assert isinstance(fns, layerwise.LayerwiseFns) and fns.num_blocks == 4
  batch = make_batch(2)
  plain = ModelFns(fns.model, fns.preprocess, fns.label_masks)
  net = {n: params[n] for n in params if not n.startswith("aux_")}

  @jax.jit
  def both(params, net):
    return (jax.value_and_grad(fns.loss, has_aux=True)(params, stats, batch),
            jax.value_and_grad(plain.loss, has_aux=True)(net, stats, batch))

  ((loss, _), grads), ((plain_loss, _), plain_grads) = both(params, net)
  np.testing.assert_allclose(float(loss), float(plain_loss), rtol=1e-6)
  chex.assert_trees_all_close({n: grads[n] for n in net}, plain_grads, atol=1e-6)
  assert block_norms(grads)["aux_0"] > 0
  # Without read-outs, backprop is the plain ModelFns.
  assert type(make_fns(lw_config(mode="backprop"))) is ModelFns


def test_segmented_local_step_frees_block_activations():
  """The block-by-block step needs less temporary memory than plain reverse mode (compile only): an MLP
  of 6 equal blocks keeps one block's activations instead of all six."""
  from lwcl.benchmarks.layerwise import step_memory
  mlp = {"name": "mlp", "hidden": (512,) * 6}
  local = step_memory(0, 512, "local", "block", model=mlp, image_shape=(8, 8, 3))
  autodiff = step_memory(0, 512, "local", "block", "autodiff", model=mlp, image_shape=(8, 8, 3))
  backprop = step_memory(0, 512, "backprop", model=mlp, image_shape=(8, 8, 3))
  assert local["local_blocks"] == 6
  assert local["temp_bytes"] < 0.5 * min(autodiff["temp_bytes"], backprop["temp_bytes"]), (local, autodiff,
                                                                                           backprop)


@pytest.mark.parametrize("mode", ["local", "greedy"])
def test_train_batch_spec_is_the_batch_the_step_is_fed(mode):
  """The batch layout ``bin/bench layerwise --config`` lowers the step with (``dispatch.train_batch_spec``)
  has the keys, shapes and dtypes of the batch ``one_step_dispatches`` feeds the run's train step."""
  from lwcl.engine import dispatch
  from lwcl.engine.build import Setup
  setup = Setup.build(small_config(**{"model.hidden": (32, 32), "layerwise.mode": mode}))
  fed = []
  record = lambda state, batch, lr: (fed.append(batch), (state, {"loss": 0.0}))[1]  # noqa: E731
  recording = dataclasses.replace(setup, steps=dataclasses.replace(setup.steps, train_step=record))
  run = types.SimpleNamespace(state=None, progress=types.SimpleNamespace(task_step=0))
  next(dispatch.one_step_dispatches(recording, run, 0, 1))
  spec = dispatch.train_batch_spec(setup)
  assert ("phase" in spec) == (mode == "greedy")
  assert {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in spec.items()} == \
      {k: (tuple(np.shape(v)), np.dtype(v.dtype)) for k, v in fed[0].items()}


@pytest.mark.e2e  # a whole stream (or several) through the driver: the full suite, not --fast
def test_experiment_reports_block_accuracy_and_probes(tmp_path):
  cfg = small_config(**{"model.hidden": (32, 32, 32), "scenario.num_tasks": 2, "layerwise.mode": "greedy",
                        "layerwise.linear_probe.enabled": True, "layerwise.linear_probe.steps": 50,
                        "layerwise.linear_probe.train_examples": 100})
  workdir = str(tmp_path / "run")
  results = driver.run(cfg, workdir)
  chex.assert_shape(np.asarray(results["block_accuracy"]), (2, 3, 2))
  chex.assert_shape(np.asarray(results["linear_probe_accuracy"]), (3, 2))
  assert results["layerwise"]["depth"] == [1, 2, 3] and results["layerwise"]["mode"] == "greedy"
  # The last block's head is the network's output.
  np.testing.assert_allclose(np.asarray(results["block_accuracy"])[:, -1], results["accuracy_matrix"])
  assert np.asarray(results["linear_probe_accuracy"]).min() > 0.6
  assert os.path.exists(os.path.join(workdir, layerwise.PLOT_FILE))
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["block_acc"] == results["block_acc"]


def test_mas_and_nai_give_every_local_block_and_auxiliary_head_its_own_importance():
  from lwcl import methods  # pylint: disable=g-import-not-at-top
  from lwcl.methods import regularization as reg  # pylint: disable=g-import-not-at-top
  fns, params, stats = built(cuts="block")  # 4 local blocks
  data = make_batch(3, n=6)
  examples, mask = {**data}, np.ones(6, np.float32)
  cfg = small_config(**{"method.name": "mas", "method.importance_batch_size": 3}).method
  omega = jax.jit(methods.MAS(cfg, None, fns).estimate)(params, stats, examples, mask, None)
  norms = block_norms(omega)
  assert all(norms[f"aux_{k}"] > 0 for k in range(3)) and norms["head"] > 0, norms

  # Block 1 and its head: MAS of its own head's output alone, the other heads contribute nothing.
  def own_output(p, ex):
    one = {k: v[None] for k, v in ex.items()}
    return fns.block_logits(p, stats, one, detach=True)[1][0]
  want = reg.mas_importance(own_output, params, examples, mask, batch_size=3)
  for name in ("blocks_1", "aux_1"):
    chex.assert_trees_all_close(omega[name], want[name], rtol=1e-5, atol=1e-8)

  cfg = small_config(**{"method.name": "nai", "method.nai_include_heads": True,
                        "method.importance_batch_size": 3}).method
  omega = jax.jit(methods.NAI(cfg, None, fns).estimate)(params, stats, examples, mask, None)
  norms = block_norms(omega)
  assert all(norms[f"aux_{k}"] > 0 for k in range(3)) and norms["head"] > 0, norms
  off = dict(cfg.to_dict(), nai_include_heads=False)
  omega = jax.jit(methods.NAI(ml_dict(off), None, fns).estimate)(params, stats, examples, mask, None)
  assert block_norms(omega)["aux_0"] == 0.0 and block_norms(omega)["head"] == 0.0


def ml_dict(d):
  import ml_collections  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(d)



def _bf16_pass(fns, params, stats, batch):
  """Loss, logits, gradients and new statistics of a train step's loss, and the inference-mode block logits,
  block features and features."""
  (loss, (logits, new_stats)), grads = jax.value_and_grad(fns.loss, has_aux=True)(params, stats, batch)
  return (loss, logits, grads, new_stats, fns.block_logits(params, stats, batch),
          fns.block_features(params, stats, batch), fns.features(params, stats, batch))


@pytest.mark.parametrize("mode,aux_head", [("local", "cnn"), ("greedy", "linear"), ("backprop", "mlp")])
def test_bfloat16_local_losses_heads_and_gradients_stay_float32(mode, aux_head):
  # mixed precision in every layer-wise mode, traced (dtypes only): the blocks and auxiliary heads compute
  # in bfloat16; losses, logits, features and the gradients of the float32 parameters are float32
  extra = {"aux_head": aux_head, "mode": mode, "readouts": mode == "backprop", "model.dtype": "bfloat16"}
  fns = make_fns(lw_config(**extra))
  assert fns.model.dtype == jnp.bfloat16 and all(h.dtype == jnp.bfloat16 for h in fns.aux_heads)
  params, stats = jax.eval_shape(lambda key: fns.init_variables(key, IMAGE), jax.random.PRNGKey(0))
  assert {leaf.dtype for leaf in jax.tree.leaves((params, stats))} == {jnp.dtype(jnp.float32)}
  batch = dict(make_batch(), phase=np.full(8, 1, np.int32)) if mode == "greedy" else make_batch()
  loss, logits, grads, new_stats, block_logits, block_features, features = jax.eval_shape(
      functools.partial(_bf16_pass, fns), params, stats, batch)
  chex.assert_type([loss, logits, features] + block_logits + block_features, jnp.float32)
  chex.assert_trees_all_equal_shapes_and_dtypes(grads, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(new_stats, stats)


@pytest.mark.parametrize("mode", layerwise.MODES)
def test_a_bfloat16_local_loss_is_close_to_the_float32_loss(mode):
  # compiled, on a small MLP cut into 3 local blocks (cheap): the loss within bfloat16 rounding of the
  # float32 loss (2%; measured: at most 0.06%), finite float32 gradients
  extra = {"model.name": "mlp", "model.hidden": (16, 16, 16), "aux_head": "linear", "mode": mode,
           "readouts": mode == "backprop"}
  batch = dict(make_batch(), phase=np.full(8, 1, np.int32)) if mode == "greedy" else make_batch()
  fns32, params, stats = built(**extra)
  fns = make_fns(lw_config(**extra, **{"model.dtype": "bfloat16"}))
  assert fns.num_blocks == 3
  loss32 = jax.jit(lambda p: fns32.loss(p, stats, batch)[0])(params)
  (loss, _), grads = jax.jit(jax.value_and_grad(lambda p: fns.loss(p, stats, batch), has_aux=True))(params)
  chex.assert_trees_all_equal_shapes_and_dtypes(grads, params)
  chex.assert_tree_all_finite(grads)
  assert loss != loss32  # it did compute in bfloat16
  np.testing.assert_allclose(loss, loss32, rtol=2e-2)
