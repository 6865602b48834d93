"""The layer-wise depth study's protocol on Fashion-MNIST (issue 15): backprop near convergence on 2 CPU cores.

    bin/run --config=configs/layerwise_fmnist_depth.py:resnet56,local+accelerated --workdir=runs/x

The recipe of configs/_layerwise.py (SGD momentum 0.9, weight decay 5e-4, batch 128, learning rate 0.1,
step decay x0.2) on 15,000 training examples (a quarter of the training set, the first 15,000 of one seeded
shuffle), 12 epochs with the decay every 4 (0.1, 0.02, 0.004), no augmentation, the full 10,000-image test
set, each epoch's test accuracy recorded (``eval.every_epoch``: the curve that shows backprop has levelled
off), checkpoints every 100 steps (a run resumes after any interruption). Linear probes on 1000 examples.
Argument ``resnetD,VARIANT`` as in configs/_layerwise.py (``resnet56,backprop``, ``resnet32,local+convs3``).
"""

from lwcl.config.files import sibling


def get_config(arg: str = "resnet20,local"):
  c = sibling(__file__, "layerwise_fmnist").get_config(arg)
  c.scenario.samples_per_task = 15000
  c.train.epochs_per_task = 12
  c.optimizer.decay_every_epochs = 4
  c.train.log_every_steps = 20
  c.eval.every_epoch = True
  c.checkpoint.every_steps = 100
  if c.layerwise.mode == "greedy":  # 3 stages x 4 epochs, decay every 2
    c.layerwise.greedy_epochs_per_block = 4
    c.optimizer.decay_every_epochs = 2
  return c
