"""GEM protocol on rotated Fashion-MNIST (local IDX files, else TFDS): 20 tasks, MLP 2x100.

Method gem by default; the other methods on the same protocol: --config.method.name=finetune | agem |
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
  return protocols.gem_protocol("fashion_mnist", "rotated", "auto")
