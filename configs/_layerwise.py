"""Shared settings of the layer-wise training configs (``configs/layerwise_*.py``); not a config itself.

Recipe (Belilovsky, Eickenberg, Oyallon, *Decoupled Greedy Learning of CNNs*, ICML 2020, CIFAR
experiments): SGD with momentum 0.9, weight decay 5e-4, batch 128, learning rate 0.1 multiplied by 0.2
every 15 epochs, 50 epochs, random crop (4 pixels of padding) + horizontal flip. Single-task runs (one
task with every class, one shared head), so ``acc`` is the test accuracy of the network's output and
``block_acc`` that of every local block's head. Networks: CIFAR ResNets cut at every residual block
(``layerwise.cuts='block'``: ResNet-20/56/110 -> 9/27/54 local blocks) with linear auxiliary heads
(average-pool to 2x2, Dense); accelerated downsampling and convolution intensity as in Ma, Yu, Li, Wang,
arXiv 2010.08038.

Each config file's ``get_config(arg)`` takes ``'resnetD,VARIANT'`` (``--config=FILE:resnet56,local``),
``VARIANT`` being ``+``-joined tokens:

* a mode: ``backprop`` (end to end; the auxiliary heads read out every block from detached features),
  ``local`` (decoupled: every block from its own loss), ``greedy`` (block after block, 3 local blocks =
  the stages, 15 epochs each with the step decay every 5 epochs; 45 epochs);
* ``accelerated``: ``model.strides='accelerated'`` (stride-2 transitions in residual blocks 1 and 2);
* ``convsN``: every stage-1 residual block has N 3x3 convolutions (standard 2); ``widthN``: stage-1 blocks
  have N channels (standard 16): the convolution-intensity knobs of the shallow blocks.
"""

from lwcl.config import files as config_files

MODES = ("backprop", "local", "greedy")


def default_config():
  """``configs/default.py``'s ``get_config()``."""
  return config_files.default_config(__file__)


def recipe(c):
  """The decoupled-greedy training recipe, single task, on ``c`` (in place)."""
  c.scenario.kind = "split"
  c.scenario.num_tasks = 1
  c.scenario.classes_per_task = 0
  c.scenario.incremental = "class"
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "step"
  c.optimizer.decay_factor = 0.2
  c.optimizer.decay_every_epochs = 15
  c.train.batch_size = 128
  c.train.epochs_per_task = 50
  c.train.eval_batch_size = 1000
  c.layerwise.cuts = "block"
  c.layerwise.aux_head = "linear"
  c.layerwise.linear_probe.enabled = True


def apply_variant(c, arg: str, default: str = "resnet20,local"):
  """Sets model depth, mode, strides and intensity from ``'resnetD,VARIANT'`` (see the module doc).

  Raises:
    ValueError: an unknown model or token (the config loader reports it in one line).
  """
  model, _, variant = (arg or default).partition(",")
  model = model.strip().lower()
  if not model.startswith("resnet") or not model[6:].isdigit():
    raise ValueError(f"layer-wise config argument '{arg}': the model must be resnetD (e.g. resnet56)")
  c.model.name = "resnet"
  c.model.depth = int(model[6:])
  blocks_per_stage = max(1, (c.model.depth - 2) // 6)
  tokens = [t.strip() for t in (variant or "local").split("+") if t.strip()]
  modes = [t for t in tokens if t in MODES]
  if len(modes) != 1:
    raise ValueError(f"layer-wise config argument '{arg}': name exactly one mode of {', '.join(MODES)}")
  c.layerwise.mode = modes[0]
  c.layerwise.readouts = modes[0] == "backprop"
  if modes[0] == "greedy":
    c.layerwise.cuts = "stage"
    c.layerwise.greedy_epochs_per_block = 15
    c.train.epochs_per_task = 45
    c.optimizer.decay_every_epochs = 5
  for t in tokens:
    if t in MODES:
      continue
    if t == "accelerated":
      c.model.strides = "accelerated"
    elif t.startswith("convs") and t[5:].isdigit():
      c.model.shallow_blocks, c.model.shallow_convs = blocks_per_stage, int(t[5:])
    elif t.startswith("width") and t[5:].isdigit():
      c.model.shallow_blocks, c.model.shallow_width = blocks_per_stage, int(t[5:])
    else:
      raise ValueError(f"layer-wise config argument '{arg}': unknown token '{t}' (use a mode, accelerated, "
                       "convsN, widthN)")
  return c


def cifar_config(name: str, arg: str):
  """The full recipe on TFDS CIFAR ``name`` (cifar10 | cifar100) with augmentation, variant ``arg``."""
  c = default_config()
  c.data.name = name
  c.data.source = "tfds"
  c.data.normalize = "standardize"
  c.data.augment.random_crop = True
  c.data.augment.crop_padding = 4
  c.data.augment.horizontal_flip = True
  recipe(c)
  return apply_variant(c, arg)
