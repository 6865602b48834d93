"""A-GEM protocol on permuted Fashion-MNIST (local IDX files, else TFDS): 17 tasks, MLP 2x256.

Method agem by default; the other methods on the same protocol: --config.method.name=finetune | agem |
gem | lgd (LGD per layer; --config.method.grouping=network for its concatenated ablation).
Settings and sources: configs/_protocols.py.
"""

import importlib.util
import os


def get_config():
  spec = importlib.util.spec_from_file_location("lwcl_config_protocols",
                                                os.path.join(os.path.dirname(__file__), "_protocols.py"))
  protocols = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(protocols)
  return protocols.agem_protocol("fashion_mnist", "permuted", "auto")
