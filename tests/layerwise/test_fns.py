"""Layer-wise training: block isolation, the local loss, greedy freezing, stride presets, read-outs."""

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

from conftest import small_config
from lwcl import layerwise
from lwcl.runs import driver
from lwcl.engine import optim
from lwcl.data.pipeline import Preprocessor
from lwcl.errors import ConfigError
from lwcl.methods import FineTune
from lwcl.models import build_model
from lwcl.models.aux_heads import adaptive_avg_pool
from lwcl.core.model_fns import ModelFns
from lwcl.core.state import TrainState
from lwcl.engine.steps import make_train_step

IMAGE = (16, 16, 3)
CLASSES = 4


def lw_config(**overrides):
  """The small test config as a ConvNet with BatchNorm (3 conv stages of 8 channels, 16x16 -> 2x2, then
  Dense 16: 4 network blocks; cheap to compile) and layer-wise overrides."""
  base = {"model.name": "convnet", "model.conv_stages": ((8,), (8,), (8,)), "model.dense": (16,),
          "model.batch_norm": True, "layerwise.mode": "local"}
  base.update({(k if "." in k else f"layerwise.{k}"): v for k, v in overrides.items()})
  return small_config(**base)


def make_fns(cfg):
  model = build_model(cfg.model, types.SimpleNamespace(num_heads=1, output_dim=CLASSES))
  pre = Preprocessor((0.5,) * 3, (0.25,) * 3)
  return layerwise.build_fns(cfg.layerwise, model, pre, np.ones((1, CLASSES), bool), IMAGE, 1, CLASSES)


@functools.lru_cache(maxsize=None)
def _built(items):
  fns = make_fns(lw_config(**dict(items)))
  params, stats = jax.jit(fns.init, static_argnums=(1,))(jax.random.PRNGKey(0), IMAGE)
  return fns, params, stats


def built(**overrides):
  """``(fns, params, batch_stats)`` of ``lw_config(**overrides)``, initialized once per module."""
  return _built(tuple(sorted(overrides.items())))


def make_batch(seed=0, n=8):
  rng = np.random.RandomState(seed)
  return {"image": rng.randint(0, 256, (n,) + IMAGE).astype(np.uint8),
          "label": rng.randint(0, CLASSES, n).astype(np.int32), "task": np.zeros(n, np.int32)}


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


def test_greedy_freezes_earlier_blocks_bit_identically():
  cfg = lw_config(mode="greedy", cuts="block", **{"optimizer.weight_decay": 5e-4,
                                                  "optimizer.learning_rate": 0.1})
  fns = make_fns(cfg)
  tx = optim.optimizer(fns, FineTune(None, None, fns).transformation(), cfg.optimizer, 3)
  step = jax.jit(make_train_step(fns, tx, FineTune(None, None, fns)))
  params, stats = built(mode="greedy", cuts="block")[1:]
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                     opt_state=tx.init(params), method_state={}, rng=jax.random.PRNGKey(4))
  host = lambda tree: jax.tree_util.tree_map(np.asarray, tree)  # noqa: E731

  def run(state, phase, n, seed):
    for i in range(n):
      batch = make_batch(seed + i)
      state, metrics = step(state, dict(batch, phase=np.full(8, phase, np.int32)))
      assert np.isfinite(float(metrics["loss"]))
    return state

  init = host(state)
  state = run(state, 0, 3, 10)  # block 0 trains (and builds momentum)
  after0 = host(state)
  assert not np.array_equal(after0.params["blocks_0"]["Conv_0"]["kernel"], init.params["blocks_0"]["Conv_0"]["kernel"])
  for name in ("blocks_1", "blocks_2", "blocks_3", "aux_1", "aux_2", "head"):  # not yet trained: untouched
    chex.assert_trees_all_equal(after0.params[name], init.params[name])
  chex.assert_trees_all_equal(after0.batch_stats["blocks_1"], init.batch_stats["blocks_1"])
  state = run(state, 1, 3, 20)  # block 1 trains; block 0 frozen despite momentum and weight decay
  after1 = host(state)
  for name in ("blocks_0", "aux_0"):
    chex.assert_trees_all_equal(after1.params[name], after0.params[name])
  chex.assert_trees_all_equal(after1.batch_stats["blocks_0"], after0.batch_stats["blocks_0"])
  for name in ("blocks_2", "blocks_3", "aux_2", "head"):
    chex.assert_trees_all_equal(after1.params[name], init.params[name])
  chex.assert_trees_all_equal(after1.batch_stats["blocks_2"], init.batch_stats["blocks_2"])
  for name in ("blocks_1", "aux_1"):
    assert not np.array_equal(after1.params[name]["Conv_0" if name == "blocks_1" else "head"]["kernel"],
                              after0.params[name]["Conv_0" if name == "blocks_1" else "head"]["kernel"])
  assert not np.array_equal(after1.batch_stats["blocks_1"]["BatchNorm_0"]["var"],
                            after0.batch_stats["blocks_1"]["BatchNorm_0"]["var"])
  assert int(state.opt_state.active) == 1


def test_greedy_schedule_and_errors():
  fns, params, stats = built(mode="greedy", cuts="block")
  assert [layerwise.greedy_phase(fns, s, 10, 4) for s in (0, 9, 10, 19, 20, 39)] == [0, 0, 1, 1, 2, 3]
  fns2 = dataclasses.replace(fns, greedy_epochs_per_block=2)
  assert [layerwise.greedy_phase(fns2, s, 10, 8) for s in (0, 19, 20, 39, 40, 79)] == [0, 0, 1, 1, 2, 3]
  with pytest.raises(ConfigError, match="epochs_per_task=8"):
    layerwise.check_schedule(fns2, 5)
  assert "phase" in layerwise.with_phase(fns, make_batch(), 0, 10, 3)
  with pytest.raises(ValueError, match="phase"):
    jax.eval_shape(fns.loss, params, stats, make_batch())


def test_cuts_presets_and_config_errors():
  cfg = lw_config(**{"model.name": "resnet", "model.depth": 20})
  model = build_model(cfg.model, types.SimpleNamespace(num_heads=1, output_dim=10))
  shape = (32, 32, 3)
  assert layerwise.parse_cuts("block", model, shape) == (0,) + tuple(range(2, 10))
  assert layerwise.parse_cuts("stage", model, shape) == (0, 4, 7)
  assert layerwise.parse_cuts("even:3", model, shape) == (0, 4, 7)
  assert layerwise.parse_cuts("3,6", model, shape) == (0, 3, 6)
  for bad, match in [("even:10", "even:10"), ("5,3", "increase"), ("0,3", "increase"), ("x", "cuts")]:
    with pytest.raises(ConfigError, match=match):
      layerwise.parse_cuts(bad, model, shape)
  for key, value in [("mode", "sideways"), ("aux_head", "rnn"), ("local_step", "x"), ("aux_pool", -1)]:
    with pytest.raises(ConfigError, match=f"layerwise.{key}"):
      make_fns(lw_config(**{key: value}))


def test_stride_presets_and_intensity_give_expected_feature_maps():
  def shapes(**model):
    cfg = small_config(**{"model.name": "resnet", "model.depth": 20, **{f"model.{k}": v for k, v in model.items()}})
    m = build_model(cfg.model, types.SimpleNamespace(num_heads=1, output_dim=10))
    return m, layerwise.block_output_shapes(m, (32, 32, 3), batch=2)

  _, std = shapes(strides="standard")  # stem, then residual blocks 0..8
  chex.assert_equal(std, [(2, 32, 32, 16)] * 4 + [(2, 16, 16, 32)] * 3 + [(2, 8, 8, 64)] * 3)
  # Accelerated: strides (1, 2, 2, 1, ...): stem and block 0 at 32x32, block 1 at 16x16, the rest at 8x8;
  # widths still change at the stage boundaries (blocks 3 and 6).
  _, acc = shapes(strides="accelerated")
  chex.assert_equal(acc, [(2, 32, 32, 16)] * 2 + [(2, 16, 16, 16), (2, 8, 8, 16)]
                    + [(2, 8, 8, 32)] * 3 + [(2, 8, 8, 64)] * 3)
  _, stem2 = shapes(strides="accelerated", stem_stride=2)
  chex.assert_equal(stem2[0], (2, 16, 16, 16))
  chex.assert_equal(stem2[-1], (2, 4, 4, 64))
  # Convolution intensity: 3 convs of 24 channels in the first 2 residual blocks.
  m, inten = shapes(shallow_blocks=2, shallow_convs=3, shallow_width=24)
  chex.assert_equal(inten[:4], [(2, 32, 32, 16), (2, 32, 32, 24), (2, 32, 32, 24), (2, 32, 32, 16)])
  params = jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,), jnp.int32))
  assert "Conv_2" in params["params"]["blocks_1"] and "Conv_2" not in params["params"]["blocks_3"]
  with pytest.raises(ConfigError, match="shallow_blocks"):
    shapes(shallow_blocks=10)
  chex.assert_shape(adaptive_avg_pool(jnp.ones((2, 7, 7, 3)), 2), (2, 2, 2, 3))


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


def test_bench_measures_the_step_a_config_runs(capsys):
  """``bin/bench layerwise --config`` compiles the step ``bin/run`` would (compile only, on the depth study's
  config at ResNet-8): local and greedy training need less temporary memory than backprop (greedy's batches
  carry the phase), the ratio is taken against the backprop config of the same network, and a bad override
  is one ConfigError before any compile."""
  from lwcl.benchmarks import layerwise as bench
  spec = os.path.join(os.path.dirname(__file__), "..", "configs", "layerwise_fmnist_depth.py:resnet8,")
  rows = bench._config_rows([spec + "local", spec + "greedy", spec + "backprop"], ["model.conv_impl=native"])
  with pytest.raises(ConfigError, match="unknown config key model.conv_implx"):
    bench._config_rows([spec + "local"], ["model.conv_implx=native"])
  local, greedy, backprop = rows
  assert [r["mode"] for r in rows] == ["local", "greedy", "backprop"] and local["local_blocks"] == 3
  assert 0 < local["temp_bytes"] < 0.8 * backprop["temp_bytes"], rows  # 0.72 with jaxlib 0.10.2 on CPU
  assert 0 < greedy["temp_bytes"] < 0.8 * backprop["temp_bytes"], rows  # 0.70
  assert backprop["ratio"] == 1.0 and local["ratio"] == local["temp_bytes"] / backprop["temp_bytes"]
  assert "layerwise_fmnist_depth.py:resnet8,local | local | 3 |" in capsys.readouterr().out


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


def test_layerwise_configs_and_compare_tables():
  from lwcl.cli import compare
  root = os.path.join(os.path.dirname(__file__), "..", "configs")
  c = compare.load_config(f"{root}/layerwise_cifar100.py:resnet110,local+accelerated+convs3",
                          ["train.epochs_per_task=2", "layerwise.readouts=true", "optimizer.learning_rate=1"])
  assert (c.data.name, c.model.depth, c.model.strides, c.layerwise.mode) == ("cifar100", 110, "accelerated", "local")
  assert (c.model.shallow_blocks, c.model.shallow_convs, c.train.epochs_per_task) == (18, 3, 2)
  assert c.layerwise.readouts is True and c.optimizer.learning_rate == 1.0
  assert (c.optimizer.weight_decay, c.train.batch_size, c.scenario.num_tasks) == (5e-4, 128, 1)
  for name in ("layerwise_fmnist", "layerwise_fmnist_depth"):
    g = compare.load_config(f"{root}/{name}.py:resnet20,greedy")
    assert g.layerwise.greedy_epochs_per_block * 3 == g.train.epochs_per_task  # 3 stages
  for bad in (f"{root}/layerwise_fmnist.py:resnet20,sideways", f"{root}/nope.py"):
    with pytest.raises(ConfigError):
      compare.load_config(bad)
  with pytest.raises(ConfigError, match="unknown config key train.epochz"):
    compare.load_config(f"{root}/layerwise_fmnist.py", ["train.epochz=2"])
  assert compare.run_name("configs/layerwise_fmnist.py:resnet20,local+accelerated") == \
      "layerwise_fmnist_resnet20_local-accelerated"
  fake = {"acc": 0.9, "block_acc": [0.5, 0.9], "linear_probe_acc": [0.6, 0.9], "train_seconds": 3.0,
          "layerwise": {"mode": "local", "local_blocks": 2, "depth": [3, 7]},
          "config": {"model": {"name": "resnet", "depth": 8, "strides": "standard"}}}
  md, table_csv = compare.tables(["a", "b"], [fake, {"acc": 0.8, "config": {"model": {"name": "mlp"}}}])
  assert "| a | resnet8 | local | standard | standard | 2 | 90.00 | 50.0 90.0 | 60.0 90.0 | 3 |" in md
  assert table_csv.splitlines()[1].startswith("a,resnet8,local,standard,standard,2,90.00,3.0,50.00,90.00,60.00")


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


def test_compare_tables_report_which_blocks_forget():
  from lwcl.cli import compare
  fake = {"acc": 0.9, "block_acc": [0.5, 0.9], "block_forgetting": [0.25, None], "train_seconds": 3.0,
          "layerwise": {"mode": "local", "local_blocks": 2, "depth": [3, 7]},
          "config": {"model": {"name": "resnet", "depth": 8, "strides": "standard"}}}
  md, table_csv = compare.tables(["a"], [fake])
  assert md.splitlines()[2].endswith("| 3 | 25.0 nan |")
  assert table_csv.splitlines()[1].endswith(",25.00,nan")
