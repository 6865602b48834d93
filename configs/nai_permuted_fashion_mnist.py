"""NAI on Permuted Fashion-MNIST (CPU): 10 tasks, each a fixed pixel permutation of all 10 classes.

Domain-incremental (one shared 10-way head, no task identity at test time: the usual protocol for permuted
benchmarks), so the shared head is part of what must be protected: ``method.nai_include_heads`` is on
(validation ACC 72.4% with it, 70.6% without, at strength 0.1).
MLP 256-256 (ReLU), Adam 1e-3, batch 64, one epoch per task over 10,000 training examples per task (after
holding out 10% of the 60,000 for validation). About a minute on 2 CPU cores. ``method.strength`` was
selected on the validation split (never on test data) from 0.003, 0.01, 0.03, 0.1, 1, 10 (EWC, MAS, SI:
see the issue-4 closing note).
"""

from lwcl.config.files import sibling


def get_config():
  c = sibling(__file__, "nai_split_fashion_mnist").get_config()  # MLP 256-256, Adam 1e-3, batch 64, NAI
  c.scenario.kind = "permuted"
  c.scenario.incremental = "domain"
  c.scenario.num_tasks = 10
  c.scenario.samples_per_task = 10000
  c.method.strength = 0.01
  c.method.nai_include_heads = True
  return c
