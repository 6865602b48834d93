"""GEM protocol on permuted Fashion-MNIST (local IDX files, else TFDS): 20 tasks, MLP 2x100.

Method gem by default; the other methods on the same protocol: --config.method.name=finetune | agem |
gem | lgd (LGD per layer; --config.method.grouping=network for its concatenated ablation).
Settings and sources: configs/_protocols.py.
"""

from lwcl.config_files import sibling


def get_config():
  protocols = sibling(__file__, "_protocols")
  return protocols.gem_protocol("fashion_mnist", "permuted", "auto")
