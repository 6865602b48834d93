"""Residual networks: CIFAR ResNets (depth 6n+2) and GEM's reduced ResNet-18.

* CIFAR ResNet: He, Zhang, Ren, Sun, *Deep Residual Learning for Image Recognition*, CVPR 2016, Sec. 4.2:
  a 3x3 stem of 16 channels, three stages of n basic blocks with 16, 32, 64 channels, stride 2 at the
  first block of stages 2 and 3, global average pooling. Shortcuts that change shape use a 1x1 convolution
  + BatchNorm (option B).
* Reduced ResNet-18: Lopez-Paz & Ranzato, GEM (NeurIPS 2017), reference code ``model/common.py``: ResNet-18
  with base width ``nf = 20`` (stages 20, 40, 80, 160; two blocks each; strides 1, 2, 2, 2).

Every residual block is one entry of the model's block list, with an explicit stride, so downsampling can
be moved (layer-wise issue: accelerated downsampling).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from lwcl.errors import ConfigError
from lwcl.models.mlp import sow_activation


def _bn(train: bool, zero_scale: bool = False) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones)


class Stem(nn.Module):
  """3x3 conv (``stride``), BatchNorm, ReLU."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv, bn = nn.Conv(self.features, (3, 3), strides=self.stride, padding="SAME", use_bias=False), _bn(train)
    x = nn.relu(bn(conv(x)))
    sow_activation(self, x, conv, bn)
    return x


class BasicBlock(nn.Module):
  """Two 3x3 convs with BatchNorm and a residual connection. ``[B, H, W, C] -> [B, H/s, W/s, features]``."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    residual = x
    conv0 = nn.Conv(self.features, (3, 3), strides=self.stride, padding="SAME", use_bias=False)
    bn0 = _bn(train)
    y = nn.relu(bn0(conv0(x)))
    sow_activation(self, y, conv0, bn0)
    layers = [nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False), _bn(train)]
    y = layers[1](layers[0](y))
    if residual.shape != y.shape:
      layers += [nn.Conv(self.features, (1, 1), strides=self.stride, use_bias=False, name="shortcut_conv"),
                 _bn(train)]
      residual = layers[3](layers[2](residual))
    out = nn.relu(residual + y)
    sow_activation(self, out, *layers)
    return out


def standard_strides(blocks_per_stage: int, num_stages: int, first_stage_stride: int = 1) -> tuple:
  """Stride of every residual block: ``first_stage_stride`` then 1s in stage 1; 2 then 1s after."""
  strides = []
  for s in range(num_stages):
    strides += [first_stage_stride if s == 0 else 2] + [1] * (blocks_per_stage - 1)
  return tuple(strides)


def resnet_blocks(widths, blocks_per_stage: int, strides, stem_width: int, stem_stride: int) -> list:
  """Stem plus ``len(widths) * blocks_per_stage`` :class:`BasicBlock`\\ s with the given strides.

  Raises:
    ConfigError: if ``strides`` does not have one entry per residual block, or holds a value < 1.
  """
  n = len(widths) * blocks_per_stage
  strides = tuple(int(s) for s in strides)
  if len(strides) != n or min(strides) < 1:
    raise ConfigError(f"model.strides must list one stride >= 1 per residual block ({n}), got "
                      f"{strides}; fix --config.model.strides or use 'standard'")
  blocks = [Stem(stem_width, stem_stride)]
  for i in range(n):
    blocks.append(BasicBlock(int(widths[i // blocks_per_stage]), strides[i]))
  return blocks


def cifar_resnet_depth(depth: int) -> int:
  """Blocks per stage ``n`` of a CIFAR ResNet of depth ``6n + 2``; raises ConfigError otherwise."""
  if depth < 8 or (depth - 2) % 6:
    raise ConfigError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}; fix "
                      "--config.model.depth")
  return (depth - 2) // 6
