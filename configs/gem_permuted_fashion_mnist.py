"""GEM protocol on permuted Fashion-MNIST (local IDX files, else TFDS): 20 tasks, MLP 2x100.

The argument picks the method: gem (default, margin 0.5), gem_m0, agem or finetune
(configs/_protocols.py, ``gem_protocol_method``). LGD on this protocol: --config.method.name=lgd, or the
presets of configs/lgd_*_fashion_mnist.py.
Settings and sources: configs/_protocols.py.
"""

from lwcl.config.files import sibling


def get_config(arg: str = "gem"):
  protocols = sibling(__file__, "_protocols")
  c = protocols.gem_protocol("fashion_mnist", "permuted", "auto")
  protocols.gem_protocol_method(c, arg)
  return c
