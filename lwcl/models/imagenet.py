"""ImageNet-scale networks for layer-wise training: ResNet-18 and a VGG-like greedy network.

* ResNet-18 (He et al., CVPR 2016, Table 1): a 7x7 stride-2 convolution of 64 channels, BatchNorm, ReLU
  and 3x3 stride-2 max pooling (:class:`ImageNetStem`), then four stages of two
  :class:`~lwcl.models.resnet.BasicBlock` with 64, 128, 256, 512 channels (``width`` x 1, 2, 4, 8), stride
  2 at the first block of stages 2-4, global average pooling. Every residual block is one block of the
  network's list, so ``layerwise.cuts`` cuts it like the CIFAR ResNets (and ``model.strides='accelerated'``
  moves the downsampling forward).
* VGG-like greedy network (Belilovsky, Eickenberg, Oyallon, *Greedy Layerwise Learning Can Scale to
  ImageNet*, ICML 2019): every block is one 3x3 convolution + BatchNorm + ReLU; a block that starts a
  stage first applies an invertible 2x2 downsampling (space-to-depth, :func:`space_to_depth`: ``[B, H, W,
  C] -> [B, H/2, W/2, 4C]``, no information lost), as the paper does instead of pooling. The widths per
  stage are ``model.conv_stages`` (``configs/layerwise_imagenet.py`` sets the defaults it uses).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lwcl.core.options import Option
from lwcl.models.conv import conv
from lwcl.models.mlp import sow_activation
from lwcl.models.resnet import STRIDES, BasicBlock

# The model.* keys each network here reads (beside model.name and model.conv_impl).
IMAGENET_RESNET18_OPTIONS = (
    Option("model.width", 0, "imagenet_resnet18: width of the first stage (stages: w, w, 2w, 2w, 4w, 4w, 8w, "
           "8w); 0 = 64", minimum=0),
    STRIDES,
)
GREEDY_VGG_OPTIONS = (
    Option("model.conv_stages", ((32,), (64,)), "greedy_vgg: channels of the 3x3 convs of each stage (an "
           "invertible 2x2 downsampling before each stage)", minimum=1),
)


def _bn(train: bool, dtype=jnp.float32) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                      param_dtype=jnp.float32)


def space_to_depth(x: jax.Array) -> jax.Array:
  """Invertible 2x2 downsampling: float ``[B, H, W, C] -> [B, H // 2, W // 2, 4 C]`` (an odd last row or
  column is dropped)."""
  b, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2]
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


class ImageNetStem(nn.Module):
  """7x7 conv (stride 2), BatchNorm, ReLU, 3x3 max pool (stride 2): ``[B, H, W, 3] -> [B, H/4, W/4, F]``,
  computing in ``dtype`` (float32 or bfloat16)."""
  features: int = 64
  conv_impl: str = "native"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv7 = conv(self.conv_impl, self.features, (7, 7), 2, use_bias=False, dtype=self.dtype)
    bn = _bn(train, self.dtype)
    x = nn.relu(bn(conv7(x)))
    sow_activation(self, x, conv7, bn)
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")


class GreedyConvBlock(nn.Module):
  """Optional invertible downsampling, then 3x3 conv + BatchNorm + ReLU: ``[B, H, W, C] -> [B, H', W',
  features]`` (``H' = H / 2`` with ``downsample``), computing in ``dtype`` (float32 or bfloat16)."""
  features: int
  downsample: bool = False
  conv_impl: str = "native"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.downsample:
      x = space_to_depth(x)
    conv3 = conv(self.conv_impl, self.features, (3, 3), use_bias=False, dtype=self.dtype)
    bn = _bn(train, self.dtype)
    x = nn.relu(bn(conv3(x)))
    sow_activation(self, x, conv3, bn)
    return x


def imagenet_resnet18_blocks(width: int, strides, conv_impl: str = "native", dtype=jnp.float32) -> list:
  """Stem plus the 8 residual blocks of ResNet-18 (widths ``width`` x 1, 1, 2, 2, 4, 4, 8, 8), with
  ``strides`` (8 entries, e.g. :func:`~lwcl.models.resnet.standard_strides` ``(2, 4)``), computing in
  ``dtype``."""
  widths = [width * m for m in (1, 1, 2, 2, 4, 4, 8, 8)]
  return [ImageNetStem(width, conv_impl, dtype)] + [BasicBlock(w, int(s), 2, conv_impl, dtype)
                                                   for w, s in zip(widths, strides)]


def greedy_vgg_blocks(stages, conv_impl: str = "native", dtype=jnp.float32) -> list:
  """One :class:`GreedyConvBlock` per width of ``stages`` (tuples of widths); the first block of every
  stage downsamples (the input too: the first stage's first block). ``dtype``: the computation dtype."""
  return [GreedyConvBlock(int(w), i == 0, conv_impl, dtype) for stage in stages for i, w in enumerate(stage)]
