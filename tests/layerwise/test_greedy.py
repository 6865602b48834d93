"""lwcl.layerwise.greedy: the greedy schedule freezes earlier blocks bit-identically."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl import layerwise
from lwcl.core.state import TrainState
from lwcl.engine import optim
from lwcl.engine.steps import make_train_step
from lwcl.errors import ConfigError
from lwcl.methods import FineTune

from layerwise_cases import built, lw_config, make_batch, make_fns


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
