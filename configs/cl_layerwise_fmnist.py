"""Continual learning inside layer-wise training: Split Fashion-MNIST with a ResNet-20 trained in
``local`` mode (every residual block from its own auxiliary head, stop-gradient between blocks), under a
continual method. CPU-sized: about 2-4 minutes per run on 2 cores.

    bin/run --config=configs/cl_layerwise_fmnist.py:ewc --workdir=runs/cl_lw_ewc
    bin/compare --out=runs/cl_lw configs/cl_layerwise_fmnist.py:finetune configs/cl_layerwise_fmnist.py:ewc \\
        configs/cl_layerwise_fmnist.py:nai configs/cl_layerwise_fmnist.py:lgd

Stream: 5 tasks of 2 classes, task-incremental (one head per task, and one per task in every auxiliary
head), 2000 training examples per task, 2 epochs, SGD 0.05 with momentum 0.9, batch 64. Network: CIFAR
ResNet-20 (16-32-64 channels) cut at every residual block (9 local blocks, linear auxiliary heads), so
``results.json`` holds every block head's accuracy matrix (``block_accuracy[:, k, :]``) and each head's
forgetting (``block_forgetting``), and ``block_forgetting.png`` plots forgetting against depth: which
blocks forget.

Episodic-memory methods keep 64 examples per task (GEM's 256 would make every step ~16 times as costly
as fine-tuning's on a CPU). Argument: the method, ``finetune`` | ``ewc`` | ``nai`` | ``lgd`` (``mas``, ``si``,
``agem``, ``gem`` also
work). Strengths are not tuned: they are only low enough for SGD 0.05 to stay stable (EWC 1, NAI 1, MAS 1,
SI 0.1; EWC 100 made the loss NaN in task 2); select them on the validation split with
``--config.sweep.*`` before comparing methods. In local mode every block's
importance (EWC: Fisher of the sum of local losses; MAS: its own head's output) and every block's
reference gradient (LGD, A-GEM, GEM: its own local loss on the memory) come from that block's own
auxiliary head (docs/design.md, "Continual methods in layer-wise modes").
"""

from lwcl.config.files import default_config

STRENGTHS = {"ewc": 1.0, "nai": 1.0, "mas": 1.0, "si": 0.1}
METHODS = ("finetune", "ewc", "nai", "lgd", "mas", "si", "agem", "gem")


def get_config(method: str = "finetune"):
  if method not in METHODS:
    raise ValueError(f"unknown method '{method}'; use one of {', '.join(METHODS)}")
  c = default_config(__file__)
  c.scenario.kind = "split"
  c.scenario.incremental = "task"
  c.scenario.task_heads = "multi"
  c.scenario.num_tasks = 5
  c.scenario.classes_per_task = 2
  c.scenario.samples_per_task = 2000
  c.model.name = "resnet"
  c.model.depth = 20
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.05
  c.optimizer.momentum = 0.9
  c.train.epochs_per_task = 2
  c.train.batch_size = 64
  c.train.log_every_steps = 20
  c.layerwise.mode = "local"
  c.layerwise.cuts = "block"
  c.layerwise.aux_head = "linear"
  c.method.name = method
  c.method.strength = STRENGTHS.get(method, c.method.strength)
  c.method.importance_samples = 500
  if method in ("lgd", "agem", "gem"):
    c.method.memory_per_task = 64  # 4 old tasks x 64 memories per step on a CPU
  return c
