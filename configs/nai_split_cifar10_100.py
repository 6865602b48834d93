"""NAI on split CIFAR-10/100 (GPU): 11 tasks, task-incremental (one 10-way head per task).

Task 1 is CIFAR-10 (all ten classes), tasks 2-11 are CIFAR-100 in ten groups of ten classes
(``data.name='cifar10+cifar100'`` puts CIFAR-10 at classes 0-9 and CIFAR-100 at 10-109). The stream of
HAT (Serra et al. 2018) and NAI (Kim & Lee 2021, Sec. 4). Everything else as ``nai_split_cifar100.py``;
note the learning-rate schedule is constant here, so the first task being ten times larger than the
others does not matter. Task orders: ``--config.num_orders=5``.
"""

from lwcl.config.files import sibling


def get_config():
  c = sibling(__file__, "nai_split_cifar100").get_config()
  c.data.name = "cifar10+cifar100"
  c.scenario.num_tasks = 11
  c.scenario.classes_per_task = 10
  return c
