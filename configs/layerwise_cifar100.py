"""Layer-wise training on CIFAR100 (TFDS), the decoupled-greedy recipe (50 epochs); for GPUs.

    bin/run --config=configs/layerwise_cifar100.py:resnet56,local --workdir=runs/lw_cifar100_r56_local

Argument resnetD,VARIANT: D in 20, 56, 110 (any 6n+2); VARIANT a mode (backprop | local | greedy) with
optional +accelerated, +convsN, +widthN (e.g. resnet110,local+accelerated). Settings and
sources: configs/_layerwise.py. Compare several with bin/compare.
"""

from lwcl.config.files import sibling


def get_config(arg: str = "resnet20,local"):
  return sibling(__file__, "_layerwise").cifar_config("cifar100", arg)
