"""lwcl.runs.axis: the axis of a product of replicas names each replica's config and folder."""

from lwcl.runs import orders
from lwcl.runs.axis import ReplicaAxis

import helpers
from helpers import small_config

TINY = {**helpers.TINY, "seed": 3}


def test_axis_of_a_product_names_configs_and_folders_per_replica():
  config = small_config(**TINY, num_orders=2, num_seeds=2)
  all_orders = orders.config_orders(config)
  axis = ReplicaAxis.of_orders(config.seed, all_orders, [3, 4])
  assert axis.size == 4 and axis.describe() == "2 task orders x 2 seeds"
  assert [axis.folder("w", r) for r in range(4)] == ["w/order0/seed3", "w/order0/seed4", "w/order1/seed3",
                                                     "w/order1/seed4"]
  assert axis.label(3) == "task order 1, seed 4" and axis.scalar_name("acc", 2) == "acc_order1_seed3"
  c = axis.config(config, 3)  # the single run of order 1, seed 4
  assert (c.seed, c.num_seeds, c.num_orders, tuple(c.scenario.task_order)) == (4, 0, 0, tuple(all_orders[1]))
  cands = ReplicaAxis.of_candidates(3, "method.strength", [1.0, 10.0], [3, 4])
  assert [cands.folder("w", r) for r in range(4)] == ["w/1/seed3", "w/1/seed4", "w/10/seed3", "w/10/seed4"]
  c = cands.config(config, 2)
  assert (c.seed, c.method.strength, c.eval.split, c.num_seeds) == (3, 10.0, "valid", 0)
