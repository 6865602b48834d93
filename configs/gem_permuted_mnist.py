"""GEM protocol on permuted MNIST (TFDS): 20 tasks, 1000 examples each, MLP 2x100, batch 10, SGD 0.1.

Method gem by default; the other methods on the same protocol: --config.method.name=finetune | agem |
gem | lgd (LGD per layer; --config.method.grouping=network for its concatenated ablation).
Settings and sources: configs/_protocols.py.
"""

from lwcl.config_files import sibling


def get_config():
  protocols = sibling(__file__, "_protocols")
  return protocols.gem_protocol("mnist", "permuted", "tfds")
