"""A-GEM protocol on permuted Fashion-MNIST (local IDX files, else TFDS): 17 tasks, MLP 2x256.

Method agem by default; the other methods on the same protocol: --config.method.name=finetune | agem |
gem | lgd (LGD per layer; --config.method.grouping=network for its concatenated ablation).
Settings and sources: configs/_protocols.py.
"""

from lwcl.config.files import sibling


def get_config():
  protocols = sibling(__file__, "_protocols")
  return protocols.agem_protocol("fashion_mnist", "permuted", "auto")
