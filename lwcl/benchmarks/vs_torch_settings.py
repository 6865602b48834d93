"""The settings ``bin/bench vs-torch`` compares (:mod:`lwcl.benchmarks.vs_torch`): configs and random data
that both sides, lwcl and the PyTorch eager loop (:mod:`lwcl.benchmarks.torch_side`), train on."""

from __future__ import annotations

import os

import numpy as np

from lwcl.benchmarks import projection as proj
from lwcl.config import files as config_files

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs")
OLD_TASKS = 4  # mlp setting: old tasks with full memories; the current task is the next one
RESNET_RECIPE = ("ResNet-20 (He et al. 2016, CIFAR), 32x32x3, one 10-way head, batch 128, SGD 0.1 momentum "
                 "0.9 weight decay 5e-4 (configs/_layerwise.py)")
REHEARSAL = ("the class-incremental ConvNet of configs/rehearsal_split_fashion_mnist.py (the default ConvNet, "
             "one 10-way head), plain SGD; ER: batch {b} and a replay batch of {b} from a full 500-slot "
             "reservoir buffer, the minibatch then offered to the buffer; fine-tuning: batch {b2}, the same "
             "forward and backward work without the buffer")
# heads, outputs per head, tasks of the stream, the current batch's task, image shape, methods; batch:
# ER's minibatch and replay batch (fine-tuning's batch is twice it), where the config's is not used
SETTINGS = {
    "convnet": dict(title="ConvNet (configs/default.py): conv32-pool-conv64-pool-fc128, 5 task heads x 2, "
                    "batch 64, SGD 0.01 momentum 0.9", heads=5, outputs=2, tasks=5, task=1,
                    shape=(28, 28, 1), methods=("finetune", "ewc")),
    "mlp": dict(title=f"GEM-protocol MLP 2x100, one 10-way head, batch 10, SGD 0.1, {OLD_TASKS} old tasks x "
                f"{proj.MEMORY} memories", heads=1, outputs=10, tasks=OLD_TASKS + 1, task=OLD_TASKS,
                shape=(28, 28, 1), methods=("finetune", "agem", "gem", "lgd")),
    "resnet20": dict(title=f"{RESNET_RECIPE}, end-to-end backprop", heads=1, outputs=10, tasks=1, task=0,
                     shape=(32, 32, 3), methods=("finetune",)),
    "resnet20-local": dict(title=f"{RESNET_RECIPE}, local mode: 9 local blocks (one per residual block, "
                           "the stem with the first), linear auxiliary heads (2x2 average pool, Dense), "
                           "stop-gradient between blocks, the sum of the 9 local losses",
                           heads=1, outputs=10, tasks=1, task=0, shape=(32, 32, 3), methods=("finetune",)),
    "rehearsal": dict(title=REHEARSAL.format(b=10, b2=20) + " (the protocol's batch)", heads=1, outputs=10,
                      tasks=5, task=4, shape=(28, 28, 1), methods=("finetune", "er"), batch=10),
    "rehearsal-b64": dict(title=REHEARSAL.format(b=64, b2=128) + " (the default config's batch)", heads=1,
                          outputs=10, tasks=5, task=4, shape=(28, 28, 1), methods=("finetune", "er"), batch=64),
}
TITLES = {"finetune": "fine-tuning", "ewc": "EWC", "agem": "A-GEM", "gem": "GEM", "lgd": "LGD (per layer)",
          "er": "ER"}
BUFFER_SEEN = 4 * 12000  # rehearsal settings: examples offered to the buffer before (4 tasks of the stream)


def config(setting: str, method: str):
  """The experiment config of ``setting`` (``configs/default.py``, the GEM protocol, the rehearsal protocol
  at the setting's batch, or the layer-wise recipe) with ``method``."""
  if setting == "convnet":
    c = config_files.load(os.path.join(CONFIGS, "default.py")).get_config()
  elif setting.startswith("rehearsal"):
    c = config_files.load(os.path.join(CONFIGS, "rehearsal_split_fashion_mnist.py")).get_config(
        "er" if method == "er" else "finetune")
    b = SETTINGS[setting]["batch"]
    c.train.batch_size = b if method == "er" else 2 * b
    c.method.replay_batch = b
  elif setting == "mlp":
    c = config_files.load(os.path.join(CONFIGS, "_protocols.py")).gem_protocol("mnist", "permuted", "idx")
    c.scenario.num_tasks = SETTINGS[setting]["tasks"]
  else:
    mode = "local" if setting.endswith("-local") else "backprop"
    c = config_files.load(os.path.join(CONFIGS, "layerwise_cifar10.py")).get_config(f"resnet20,{mode}")
    c.layerwise.readouts = False  # backprop: the plain network, no read-out heads
    c.layerwise.linear_probe.enabled = False
  c.method.name = method
  return c


def data(setting: str, batch_size: int, seed: int = 0) -> dict:
  """Random uint8 inputs both sides train on: 8 batches of ``batch_size``, ``OLD_TASKS`` x 256 memories
  (mlp setting) and a full replay buffer (``buffer_images``, ``buffer_labels``: the rehearsal settings' 500
  slots)."""
  s, rng = SETTINGS[setting], np.random.default_rng(seed)
  bs, shape = batch_size, s["shape"]
  images = rng.integers(0, 256, (8 * bs,) + shape, dtype=np.uint8)
  labels = rng.integers(0, s["outputs"], 8 * bs).astype(np.int32)
  batches = [{"image": images[i * bs:(i + 1) * bs], "label": labels[i * bs:(i + 1) * bs],
              "task": np.full(bs, s["task"], np.int32)} for i in range(8)]
  mem_images = rng.integers(0, 256, (OLD_TASKS, proj.MEMORY) + shape, dtype=np.uint8)
  mem_labels = rng.integers(0, s["outputs"], (OLD_TASKS, proj.MEMORY)).astype(np.int32)
  slots = config(setting, "er").method.buffer_size if setting.startswith("rehearsal") else 1
  buffer_images = rng.integers(0, 256, (slots,) + shape, dtype=np.uint8)
  buffer_labels = rng.integers(0, s["outputs"], slots).astype(np.int32)
  return {"batches": batches, "images": images, "mem_images": mem_images, "mem_labels": mem_labels,
          "buffer_images": buffer_images, "buffer_labels": buffer_labels}
