"""NAI on Split Fashion-MNIST (CPU): 5 tasks of 2 classes, task-incremental (one head per task).

MLP 256-256 (ReLU), Adam 1e-3, batch 64, one epoch per task; 10% of each task's training data held out for
validation (model selection). About half a minute on 2 CPU cores. ``method.strength`` was selected on the
validation split of task order 0 (never on test data) from 0.01, 0.1, 1, 10. Other methods:
``--config.method.name=ewc|mas|si`` with their own ``--config.method.strength`` (the scale differs by
method; validation-selected here: EWC 1e6, the top of its grid 10..1e6, MAS 10, SI 10).
"""

from lwcl.config.files import default_config


def get_config():
  c = default_config(__file__)
  c.scenario.kind = "split"
  c.scenario.incremental = "task"
  c.scenario.task_heads = "multi"
  c.scenario.num_tasks = 5
  c.scenario.classes_per_task = 2
  c.scenario.validation_fraction = 0.1
  c.model.name = "mlp"
  c.model.hidden = (256, 256)
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.train.epochs_per_task = 1
  c.train.batch_size = 64
  c.method.name = "nai"
  c.method.strength = 1.0
  return c
