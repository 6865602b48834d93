"""lwcl.engine.replicas and the one-program check of lwcl.engine.build: what the engine trains, and which
differences between replicas one compiled program can take as data."""

import numpy as np
import pytest

from lwcl.engine.build import check_one_program
from lwcl.engine.replicas import One
from lwcl.runs import axis

from helpers import small_config


def _with(config, **overrides):
  c = config.copy_and_resolve_references()
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  c.lock()
  return c


def test_a_single_run_is_the_identity():
  config, one = small_config(), One()
  assert (one.size, one.batched, one.choosers) == (1, False, ())
  assert one.config(config, 0) is config and one.folder("w", 0) == "w" and one.who(0) == ""
  fn = lambda x: x + 1  # noqa: E731
  assert one.vmap(fn, 0) is fn
  tree = {"a": np.arange(3)}
  assert one.stack([tree]) is tree and one.get(tree, 0) is tree
  assert one.scalars("loss", np.float32(0.5)) == {"loss": 0.5}
  with pytest.raises(ValueError, match="2 trees for 1 replicas"):
    one.stack([tree, tree])


def test_replicas_may_differ_only_in_what_the_program_takes_as_data():
  config = small_config(**{"method.name": "ewc"})
  ok = [_with(config, seed=5), _with(config, **{"scenario.task_order": (2, 0, 1)}),
        _with(config, **{"optimizer.learning_rate": 0.5}), _with(config, **{"method.strength": 7.0})]
  check_one_program(config, ok)
  with pytest.raises(ValueError, match=r"replica 1 differs from the program in model\.hidden"):
    check_one_program(config, [config, _with(config, **{"model.hidden": (8,)})])
  with pytest.raises(ValueError, match=r"train\.batch_size"):
    check_one_program(config, [_with(config, **{"train.batch_size": 10})])
  # A hyper-parameter the method keeps on the host (LGD's margin chooses what is compiled) is no data.
  lgd = small_config(**{"method.name": "lgd"})
  with pytest.raises(ValueError, match=r"method\.lgd_margin"):
    check_one_program(lgd, [_with(lgd, **{"method.lgd_margin": 0.3})])
  # The keys that choose the replicas differ only where the replicas say they may.
  seeds = small_config(num_seeds=2)
  replica = axis.seed_config(seeds, 4)
  with pytest.raises(ValueError, match="num_seeds"):
    check_one_program(seeds, [replica])
  check_one_program(seeds, [replica], axis.ReplicaAxis.choosers)
