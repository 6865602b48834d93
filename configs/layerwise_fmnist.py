"""Layer-wise training on Fashion-MNIST, small enough for 2 CPU cores (a few minutes per run).

    bin/run --config=configs/layerwise_fmnist.py:resnet20,local+accelerated --workdir=runs/lw_fm_acc

The recipe of configs/_layerwise.py (SGD 0.9, weight decay 5e-4, batch 128, learning rate 0.1) shrunk: 3000
training examples, 6 epochs with the step decay (x0.2) every 4, no augmentation, the full test set; linear
probes on 1000 examples. Argument ``resnetD,VARIANT`` as in configs/_layerwise.py: e.g. ``resnet20,backprop``,
``resnet20,local``, ``resnet20,local+accelerated``, ``resnet20,local+convs1``, ``resnet20,local+convs3``.
"""

from lwcl.config.files import sibling


def get_config(arg: str = "resnet20,local"):
  lw = sibling(__file__, "_layerwise")
  c = lw.default_config()
  c.data.name = "fashion_mnist"
  c.data.source = "auto"
  c.data.normalize = "standardize"
  lw.recipe(c)
  c.scenario.samples_per_task = 3000
  c.train.epochs_per_task = 6
  c.optimizer.decay_every_epochs = 4
  c.train.log_every_steps = 10
  c.layerwise.linear_probe.train_examples = 1000
  lw.apply_variant(c, arg)
  if c.layerwise.mode == "greedy":  # 3 stages x 2 epochs, decay after the first
    c.layerwise.greedy_epochs_per_block = 2
    c.train.epochs_per_task = 6
    c.optimizer.decay_every_epochs = 1
  return c
