"""Shared settings of the episodic-memory benchmark protocols (GEM, A-GEM); not a config file itself.

Each ``configs/gem_*.py`` / ``configs/agem_*.py`` loads this helper from its own folder and calls one of
the functions below, which start from ``configs/default.py`` and change values.

* GEM protocol: Lopez-Paz & Ranzato, *Gradient Episodic Memory for Continual Learning*, NeurIPS 2017,
  Sec. 5, and its ``run_experiments.sh``: 20 tasks, 1000 training examples per task (MNIST variants) or
  2500 (CIFAR-100), one epoch, minibatches of 10, plain SGD with learning rate 0.1, 256 memories per task,
  ``memory_strength`` (margin) 0.5; a fully connected net with two hidden layers of 100 ReLUs on
  MNIST-style data (single 10-way head), GEM's reduced ResNet-18 on CIFAR-100 (20 tasks of 5 classes,
  outputs masked to the task's classes). Pixels scaled to [0, 1] as the reference code does.
* A-GEM protocol: Chaudhry et al., *Efficient Lifelong Learning with A-GEM*, ICLR 2019, Sec. 5, and its
  ``replicate_results_iclr19.sh`` / ``fc_permute_mnist.py``: 20 tasks of which the first 3 are kept for
  cross-validation and the other 17 reported, one epoch, minibatches of 10, SGD (learning rate 0.1 on
  MNIST, 0.03 on CIFAR), a 2x256 MLP with 1000 examples per task and 25 memories per class (250 per task)
  on permuted MNIST, the reduced ResNet-18 with 13 memories per class (65 per task) on split CIFAR-100;
  reference batches of 256 from the episodic memory.
"""

from lwcl.config import files as config_files


def default_config():
  """``configs/default.py``'s ``get_config()``."""
  return config_files.default_config(__file__)


def _mnist_like(c, name: str, source: str, kind: str):
  c.data.name = name
  c.data.source = source
  c.data.normalize = "unit"
  c.scenario.kind = kind
  c.scenario.incremental = "domain"  # one 10-way head shared by all tasks
  c.scenario.max_angle = 180.0  # rotated: task k is rotated by k * 180 / num_tasks degrees
  c.model.name = "mlp"


def _split_cifar100(c):
  c.data.name = "cifar100"
  c.data.source = "tfds"
  c.data.normalize = "unit"
  c.scenario.kind = "split"
  c.scenario.incremental = "task"
  c.scenario.task_heads = "masked"  # one 100-way output masked to the task's classes (GEM's offsets)
  c.scenario.classes_per_task = 5
  c.model.name = "reduced_resnet18"
  c.model.width = 20


def _sgd(c, lr: float, batch_size: int = 10):
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = lr
  c.optimizer.momentum = 0.0
  c.train.epochs_per_task = 1
  c.train.batch_size = batch_size


def gem_protocol(dataset: str, kind: str, source: str):
  """The GEM protocol on ``dataset`` (``mnist``, ``fashion_mnist`` or ``cifar100``) cut by ``kind``
  (``permuted``, ``rotated``; ``split`` for CIFAR-100), method GEM."""
  c = default_config()
  if dataset == "cifar100":
    _split_cifar100(c)
    c.scenario.samples_per_task = 2500
  else:
    _mnist_like(c, dataset, source, kind)
    c.model.hidden = (100, 100)
    c.scenario.samples_per_task = 1000
  c.scenario.num_tasks = 20
  _sgd(c, 0.1)
  c.method.name = "gem"
  c.method.memory_per_task = 256
  c.method.gem_margin = 0.5
  return c


# Arguments of the configs/gem_*.py files: the method run on the GEM protocol.
GEM_PROTOCOL_METHODS = ("gem", "gem_m0", "agem", "finetune")


def gem_protocol_method(c, arg: str) -> None:
  """Sets ``method.*`` of a GEM-protocol config ``c`` to the method ``arg`` names: ``gem`` (margin 0.5,
  the reference code's ``memory_strength``), ``gem_m0`` (GEM with margin 0, the plain QP of the paper's
  Eq. 10-11), ``agem`` (A-GEM with reference batches of 256 from the same 256 memories per task) or
  ``finetune`` (no memory).

  Raises:
    ValueError: ``arg`` is not one of :data:`GEM_PROTOCOL_METHODS` (the config loader reports it in one line).
  """
  arg = (arg or "gem").strip()
  if arg not in GEM_PROTOCOL_METHODS:
    raise ValueError(f"GEM-protocol config argument '{arg}' is not one of {', '.join(GEM_PROTOCOL_METHODS)}")
  if arg == "gem_m0":
    c.method.gem_margin = 0.0
  elif arg != "gem":
    c.method.name = arg


def agem_protocol(dataset: str, kind: str, source: str):
  """The A-GEM protocol (the 17 reported tasks), method A-GEM."""
  c = default_config()
  c.scenario.num_tasks = 17
  if dataset == "cifar100":
    _split_cifar100(c)
    c.scenario.class_order = tuple(range(15, 100))  # the first 3 tasks (15 classes) are for cross-validation
    c.scenario.samples_per_task = 2500
    c.method.memory_per_task = 65
    _sgd(c, 0.03)
  else:
    _mnist_like(c, dataset, source, kind)
    c.model.hidden = (256, 256)
    c.scenario.samples_per_task = 1000
    c.method.memory_per_task = 250
    _sgd(c, 0.1)
  c.method.name = "agem"
  c.method.agem_ref_batch = 256
  return c
