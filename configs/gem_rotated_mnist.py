"""GEM protocol on rotated MNIST (TFDS): 20 tasks rotated by 0, 9, ..., 171 degrees, MLP 2x100.

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
  return protocols.gem_protocol("mnist", "rotated", "tfds")
