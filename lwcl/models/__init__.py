"""Models: MLP, ConvNet, CIFAR ResNets, reduced ResNet-18, ImageNet ResNet-18, the greedy VGG-like network,
all as :class:`Network` (blocks + task heads).

``build_model(config.model, scenario)`` is the one factory.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from lwcl.core.options import Option, pick
from lwcl.errors import ConfigError, LwclError
from lwcl.models import convnet, imagenet, mlp, resnet
from lwcl.models.conv import CONV_IMPL, resolve_conv_impl
from lwcl.models.convnet import convnet_blocks
from lwcl.models.heads import TaskHeads
from lwcl.models.imagenet import greedy_vgg_blocks, imagenet_resnet18_blocks
from lwcl.models.mlp import mlp_blocks
from lwcl.models.network import Network
from lwcl.models.resnet import accelerated_strides, cifar_resnet_depth, resnet_blocks, standard_strides
from lwcl.platform import targets


def _strides(model_config, blocks_per_stage: int, num_stages: int) -> tuple:
  s = str(model_config.strides).strip()
  if s == "standard":
    return standard_strides(blocks_per_stage, num_stages)
  if s == "accelerated":
    return accelerated_strides(blocks_per_stage, num_stages)
  try:
    return tuple(int(v) for v in s.strip("()[] ").split(",") if v.strip())
  except ValueError:
    raise ConfigError(f"model.strides '{s}' is neither a preset ('standard', 'accelerated') nor "
                      "comma-separated integers; fix --config.model.strides") from None


def _intensity(model_config) -> dict:
  """Convolution-intensity knobs of the shallow residual blocks (absent keys: the standard network)."""
  get = lambda key, default: int(model_config.get(key, default))  # noqa: E731
  return {"shallow_blocks": get("shallow_blocks", 0), "shallow_convs": get("shallow_convs", 2),
          "shallow_width": get("shallow_width", 0)}


def _resnet(model_config, impl, platforms, dtype):
  del platforms
  n = cifar_resnet_depth(model_config.depth)
  width = model_config.width or 16
  widths = (width, 2 * width, 4 * width)
  return resnet_blocks(widths, n, _strides(model_config, n, 3), width, model_config.stem_stride,
                       **_intensity(model_config), conv_impl=impl, dtype=dtype), "avg"


def _reduced_resnet18(model_config, impl, platforms, dtype):
  del platforms
  nf = model_config.width or 20
  widths = (nf, 2 * nf, 4 * nf, 8 * nf)
  return resnet_blocks(widths, 2, _strides(model_config, 2, 4), nf, model_config.stem_stride,
                       **_intensity(model_config), conv_impl=impl, dtype=dtype), "avg"


@dataclasses.dataclass(frozen=True)
class Model:
  """One entry of :data:`MODELS`.

  Attributes:
    build: ``(config.model, conv_impl, platforms, dtype) -> (blocks, pool)``: the network's blocks (flax
      modules called as ``block(x, train)``) and how the last block's features reach the heads
      (``'flatten'`` | ``'avg'``, :class:`~lwcl.models.network.Network`); ``conv_impl`` is the resolved
      lowering, ``platforms`` the platforms the program is built for (:mod:`lwcl.platform.targets`; for a
      block with a lowering of its own per platform, e.g. the ConvNet's max pool), ``dtype`` the
      computation dtype of ``model.dtype`` (:data:`DTYPES`), passed as ``dtype=`` to every Flax layer
      (parameters stay float32).
    options: the ``model.*`` keys it reads beside ``model.name``, ``model.conv_impl`` and ``model.dtype``
      (:class:`~lwcl.core.options.Option`; a key several models read is declared by each with its meaning
      there, with equal default and bounds).
    doc: one line: what the network is.
  """
  build: Callable
  options: tuple
  doc: str


# name -> Model: ``model.name``'s choices and build_model's dispatch (docs/adding.md: adding a model).
MODELS = {
    "mlp": Model(lambda c, impl, platforms, dtype: (mlp_blocks(c.hidden, dtype), "flatten"), mlp.OPTIONS,
                 "fully connected ReLU layers (GEM's MLP: two of 100)"),
    "convnet": Model(lambda c, impl, platforms, dtype: (convnet_blocks(c.conv_stages, c.dense, c.batch_norm, impl,
                                                                       platforms, dtype), "flatten"),
                     convnet.OPTIONS, "3x3 conv stages with 2x2 max pooling, then Dense layers"),
    "resnet": Model(_resnet, resnet.RESNET_OPTIONS, "CIFAR ResNet of depth 6n+2 (He et al. 2016)"),
    "reduced_resnet18": Model(_reduced_resnet18, resnet.REDUCED_RESNET18_OPTIONS,
                              "reduced ResNet-18 of GEM / A-GEM (nf = 20)"),
    "imagenet_resnet18": Model(lambda c, impl, platforms, dtype: (
        imagenet_resnet18_blocks(c.width or 64, _strides(c, 2, 4), impl, dtype), "avg"),
        imagenet.IMAGENET_RESNET18_OPTIONS, "ImageNet ResNet-18 (7x7 stem, max pool)"),
    "greedy_vgg": Model(lambda c, impl, platforms, dtype: (greedy_vgg_blocks(c.conv_stages, impl, dtype), "avg"),
                        imagenet.GREEDY_VGG_OPTIONS,
                        "VGG-like network of Belilovsky et al.'s greedy training (invertible downsampling)"),
}

# model.dtype -> the computation dtype of every layer (Flax's ``dtype``). Parameters, optimizer state and
# BatchNorm statistics are float32 under both (``param_dtype``), and so are the logits (TaskHeads casts
# them), hence every loss, importance, Gram matrix and QP; bfloat16 makes activations and matmuls bfloat16.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# The model.* keys every model reads.
OPTIONS = (
    Option("model.name", "convnet", "the network: " + " | ".join(MODELS), choices=tuple(MODELS)),
    CONV_IMPL,
    Option("model.dtype", "float32", "computation dtype: float32 | bfloat16 (mixed precision: activations and "
           "matmuls bfloat16; parameters, optimizer state, logits, losses and methods' maths float32)",
           choices=tuple(DTYPES)),
)


def build_model(model_config, scenario, steps_per_dispatch: int = 1, platforms=None) -> Network:
  """Builds the network a config's ``model`` section names, with heads sized for the scenario.

  Args:
    model_config: ``config.model``: ``name`` and that model's keys (see ``configs/default.py``).
    scenario: the :class:`~lwcl.data.scenarios.Scenario` (for ``num_heads`` and ``output_dim``).
    steps_per_dispatch: ``train.steps_per_dispatch``; with ``model.conv_impl='auto'`` it picks the
      convolutions' lowering (:func:`lwcl.models.conv.resolve_conv_impl`).
    platforms: the platform or platforms the network's programs are built for
      (:func:`lwcl.platform.targets.target_platforms`; default: the default backend's): ``auto`` and the
      ConvNet's pool take their CPU lowerings only for the CPU alone.
  Returns:
    An unbound :class:`Network` (its ``conv_impl`` attribute: the lowering chosen; ``dtype``: the
    computation dtype of ``model.dtype``, :data:`DTYPES`); call ``init(rng, x, task, train=False)``.
  Raises:
    ConfigError: unknown model name, ``model.conv_impl`` or ``model.dtype``, ``model.conv_impl=onednn``
      with ``model.dtype=bfloat16``, or an inconsistent architecture.
  """
  entry = pick(MODELS, "model.name", model_config.name)
  dtype = pick(DTYPES, "model.dtype", model_config.get("dtype", "float32"))
  head = TaskHeads(scenario.num_heads, scenario.output_dim, dtype, name="head")
  platforms = targets.target_platforms(platforms)
  impl = resolve_conv_impl(model_config.get("conv_impl", "auto"), steps_per_dispatch, platforms, dtype)
  blocks, pool = entry.build(model_config, impl, platforms, dtype)
  return Network(blocks, head, pool, impl, dtype)


def input_problem(model: Network, image_shape: tuple) -> str | None:
  """Why ``model`` cannot take images of ``image_shape`` ``(H, W, C)`` (e.g. too small for its pooling: a
  layer left with no input), as ``'<error type>: <its first line>'``; None when it can. Its initialisation
  is traced (``jax.eval_shape``: nothing is computed or allocated)."""
  x = jax.ShapeDtypeStruct((1,) + tuple(int(d) for d in image_shape), jnp.float32)
  task = jax.ShapeDtypeStruct((1,), jnp.int32)
  try:
    jax.eval_shape(lambda k, x, t: model.init(k, x, t, train=False), jax.random.PRNGKey(0), x, task)
  except LwclError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (Flax, jax.lax and NumPy raise many kinds)
    text = " ".join(str(e).split("\n", 1)[0].split())
    return f"{type(e).__name__}: {text[:160]}"
  return None
