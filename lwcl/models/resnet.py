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

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lwcl.core.options import Option
from lwcl.errors import ConfigError
from lwcl.models.conv import conv
from lwcl.models.mlp import sow_activation

STRIDES = Option("model.strides", "standard", "strides of the residual blocks: standard | accelerated "
                 "(Ma et al. 2010.08038) | comma-separated ints, one per block")
STEM_STRIDE = Option("model.stem_stride", 1, "stride of the stem convolution", minimum=1)
_SHARED = (
    STRIDES, STEM_STRIDE,
    Option("model.shallow_blocks", 0, "convolution intensity: the first shallow_blocks residual blocks get "
           "shallow_convs convs of shallow_width channels; 0 = off", minimum=0),
    Option("model.shallow_convs", 2, "convolution intensity: 3x3 convs per shallow block (standard: 2)",
           minimum=1),
    Option("model.shallow_width", 0, "convolution intensity: channels of the shallow blocks; 0 = their "
           "stage's width", minimum=0),
)
# The model.* keys each residual network reads (beside model.name and model.conv_impl).
RESNET_OPTIONS = (
    Option("model.depth", 20, "resnet: depth 6n+2 (20, 32, 44, 56, 110), n residual blocks per stage",
           minimum=8),
    Option("model.width", 0, "resnet: width of the first stage (stages: w, 2w, 4w); 0 = 16", minimum=0),
) + _SHARED
REDUCED_RESNET18_OPTIONS = (
    Option("model.width", 0, "reduced_resnet18: width nf of the first stage (stages: nf, 2nf, 4nf, 8nf); "
           "0 = 20", minimum=0),
) + _SHARED


def _bn(train: bool, dtype=jnp.float32, zero_scale: bool = False) -> nn.BatchNorm:
  """BatchNorm whose output is ``dtype`` (statistics computed and kept in float32, Flax's rule)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                      param_dtype=jnp.float32,
                      scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones)


class Stem(nn.Module):
  """3x3 conv (``stride``), BatchNorm, ReLU, computing in ``dtype`` (float32 or bfloat16)."""
  features: int
  stride: int = 1
  conv_impl: str = "native"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv3 = conv(self.conv_impl, self.features, (3, 3), self.stride, use_bias=False, dtype=self.dtype)
    bn = _bn(train, self.dtype)
    x = nn.relu(bn(conv3(x)))
    sow_activation(self, x, conv3, bn)
    return x


class BasicBlock(nn.Module):
  """3x3 convs with BatchNorm and a residual connection. ``[B, H, W, C] -> [B, H/s, W/s, features]``.

  ``num_convs`` (default 2, the standard basic block) sets the convolution intensity of the block (Ma et
  al., arXiv 2010.08038, controlled experiment): the first conv has the stride; every conv but the last is
  followed by BatchNorm + ReLU; the last by BatchNorm, the residual sum, then ReLU. With 2 convs the
  parameter names are those of the standard block. Convolutions are lowered as ``conv_impl``
  (:mod:`lwcl.models.conv`); the block computes in ``dtype`` (float32 or bfloat16; parameters float32).
  """
  features: int
  stride: int = 1
  num_convs: int = 2
  conv_impl: str = "native"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    residual = x
    dtype = self.dtype
    conv0 = conv(self.conv_impl, self.features, (3, 3), self.stride, use_bias=False, dtype=dtype)
    bn0 = _bn(train, dtype)
    y = conv0(x)
    if self.num_convs == 1:
      layers = [conv0, bn0]
      y = bn0(y)
    else:
      y = nn.relu(bn0(y))
      sow_activation(self, y, conv0, bn0)
      for _ in range(self.num_convs - 2):
        conv_k, bn = conv(self.conv_impl, self.features, (3, 3), use_bias=False, dtype=dtype), _bn(train, dtype)
        y = nn.relu(bn(conv_k(y)))
        sow_activation(self, y, conv_k, bn)
      layers = [conv(self.conv_impl, self.features, (3, 3), use_bias=False, dtype=dtype), _bn(train, dtype)]
      y = layers[1](layers[0](y))
    if residual.shape != y.shape:
      layers += [conv(self.conv_impl, self.features, (1, 1), self.stride, "SAME", False, "shortcut_conv", dtype),
                 _bn(train, dtype)]
      residual = layers[-1](layers[-2](residual))
    out = nn.relu(residual + y)
    sow_activation(self, out, *layers)
    return out


def standard_strides(blocks_per_stage: int, num_stages: int, first_stage_stride: int = 1) -> tuple:
  """Stride of every residual block: ``first_stage_stride`` then 1s in stage 1; 2 then 1s after."""
  strides = []
  for s in range(num_stages):
    strides += [first_stage_stride if s == 0 else 2] + [1] * (blocks_per_stage - 1)
  return tuple(strides)


def accelerated_strides(blocks_per_stage: int, num_stages: int, first_stage_stride: int = 1) -> tuple:
  """Accelerated downsampling (Ma, Yu, Li, Wang, arXiv 2010.08038): the ``num_stages - 1`` stride-2
  transitions of :func:`standard_strides` move to residual blocks ``1 .. num_stages - 1`` (0-based).

  Residual block 0 keeps ``first_stage_stride``. For a CIFAR ResNet (3 stages of ``n`` blocks) the strides
  are ``(1, 2, 2, 1, ..., 1)``: on 32x32 inputs the stem and block 0 run at 32x32, block 1 at 16x16 and
  blocks ``2 .. 3n-1`` at 8x8, instead of ``n`` blocks at 32x32 and ``n`` at 16x16. Channel widths still
  change at the stage boundaries (blocks ``n`` and ``2n``), and the last feature map has the standard
  size, so heads and parameter counts are unchanged. For GEM's reduced ResNet-18 (4 stages of 2) the
  strides are ``(1, 2, 2, 2, 1, 1, 1, 1)``.
  """
  n = blocks_per_stage * num_stages
  strides = [first_stage_stride] + [1] * (n - 1)
  for i in range(1, min(num_stages, n)):
    strides[i] = 2
  return tuple(strides)


def resnet_blocks(widths, blocks_per_stage: int, strides, stem_width: int, stem_stride: int,
                  shallow_blocks: int = 0, shallow_convs: int = 2, shallow_width: int = 0,
                  conv_impl: str = "native", dtype=jnp.float32) -> list:
  """Stem plus ``len(widths) * blocks_per_stage`` :class:`BasicBlock`\\ s with the given strides.

  Convolution intensity (Ma et al., arXiv 2010.08038): the first ``shallow_blocks`` residual blocks get
  ``shallow_convs`` 3x3 convolutions each (instead of 2) and, when ``shallow_width > 0``, that many
  channels (instead of their stage's width; the stem keeps ``stem_width``). Blocks whose input and output
  shapes differ get a 1x1 projection shortcut. ``conv_impl``: the convolutions' lowering
  (:mod:`lwcl.models.conv`); ``dtype``: the computation dtype (float32 or bfloat16).

  Raises:
    ConfigError: if ``strides`` does not have one entry per residual block, or holds a value < 1; if
      ``shallow_blocks`` is negative or exceeds the number of blocks. (``model.shallow_convs >= 1`` and
      ``model.shallow_width >= 0`` are the config validator's, :mod:`lwcl.config.options`.)
  """
  n = len(widths) * blocks_per_stage
  strides = tuple(int(s) for s in strides)
  if len(strides) != n or min(strides) < 1:
    raise ConfigError(f"model.strides must list one stride >= 1 per residual block ({n}), got "
                      f"{strides}; fix --config.model.strides or use 'standard' or 'accelerated'")
  if not 0 <= shallow_blocks <= n:
    raise ConfigError(f"model.shallow_blocks must be in 0..{n} (residual blocks), got {shallow_blocks}; fix "
                      "--config.model.shallow_blocks")
  blocks = [Stem(stem_width, stem_stride, conv_impl, dtype)]
  for i in range(n):
    width, convs = int(widths[i // blocks_per_stage]), 2
    if i < shallow_blocks:
      width, convs = int(shallow_width) or width, int(shallow_convs)
    blocks.append(BasicBlock(width, strides[i], convs, conv_impl, dtype))
  return blocks


def cifar_resnet_depth(depth: int) -> int:
  """Blocks per stage ``n`` of a CIFAR ResNet of depth ``6n + 2``; raises ConfigError otherwise."""
  if depth < 8 or (depth - 2) % 6:
    raise ConfigError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}; fix "
                      "--config.model.depth")
  return (depth - 2) // 6
