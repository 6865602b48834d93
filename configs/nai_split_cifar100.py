"""NAI on Split CIFAR-100 (GPU): 10 tasks of 10 classes, task-incremental (one 10-way head per task).

The conv net of this line of work (HAT, NAI): conv32-conv32-pool-conv64-conv64-pool-conv128-conv128-pool,
fc256, ReLU, no BatchNorm; Adam 1e-3, batch 64. 10% of each task's training data is held out for
validation: select ``method.strength`` (and compare EWC/MAS/SI, ``--config.method.name``) on it. The
strength here is the Fashion-MNIST selection's, not tuned for CIFAR. CIFAR-100 comes from TFDS
(``data.data_dir``; downloaded on first use).
"""

from lwcl.config.files import default_config


def get_config():
  c = default_config(__file__)
  c.data.name = "cifar100"
  c.data.source = "tfds"
  c.data.normalize = "standardize"
  c.scenario.kind = "split"
  c.scenario.incremental = "task"
  c.scenario.task_heads = "multi"
  c.scenario.num_tasks = 10
  c.scenario.classes_per_task = 10
  c.scenario.validation_fraction = 0.1
  c.model.name = "convnet"
  c.model.conv_stages = ((32, 32), (64, 64), (128, 128))
  c.model.dense = (256,)
  c.model.batch_norm = False
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.train.epochs_per_task = 20
  c.train.batch_size = 64
  c.checkpoint.every_steps = 2000
  c.method.name = "nai"
  c.method.strength = 1.0
  c.method.importance_samples = 2000
  return c
