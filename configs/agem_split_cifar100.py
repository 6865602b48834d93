"""A-GEM protocol on split CIFAR-100 (TFDS): 17 tasks of 5 classes, reduced ResNet-18, 65 memories per task.

Method agem by default; the other methods on the same protocol: --config.method.name=finetune | agem |
gem | lgd (LGD per layer; --config.method.grouping=network for its concatenated ablation).
Settings and sources: configs/_protocols.py.
"""

from lwcl.config.files import sibling


def get_config():
  protocols = sibling(__file__, "_protocols")
  return protocols.agem_protocol("cifar100", "split", "tfds")
