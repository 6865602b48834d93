"""Layer-wise training on CIFAR10 (TFDS), the decoupled-greedy recipe (50 epochs); for GPUs.

    bin/run --config=configs/layerwise_cifar10.py:resnet56,local --workdir=runs/lw_cifar10_r56_local

Argument resnetD,VARIANT: D in 20, 56, 110 (any 6n+2); VARIANT a mode (backprop | local | greedy) with
optional +accelerated, +convsN, +widthN (e.g. resnet110,local+accelerated). Settings and
sources: configs/_layerwise.py. Compare several with bin/compare.
"""

from lwcl.config_files import sibling


def get_config(arg: str = "resnet20,local"):
  lw = sibling(__file__, "_layerwise")
  c = lw.default_config()
  c.data.name = "cifar10"
  c.data.source = "tfds"
  c.data.normalize = "standardize"
  c.data.augment.random_crop = True
  c.data.augment.crop_padding = 4
  c.data.augment.horizontal_flip = True
  lw.recipe(c)
  return lw.apply_variant(c, arg)
