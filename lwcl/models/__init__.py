"""Models: MLP, ConvNet, CIFAR ResNets, reduced ResNet-18, ImageNet ResNet-18, the greedy VGG-like network,
all as :class:`Network` (blocks + task heads).

``build_model(config.model, scenario)`` is the one factory.
"""

from __future__ import annotations

from lwcl.errors import ConfigError
from lwcl.models.conv import resolve_conv_impl
from lwcl.models.convnet import convnet_blocks
from lwcl.models.heads import TaskHeads
from lwcl.models.imagenet import greedy_vgg_blocks, imagenet_resnet18_blocks
from lwcl.models.mlp import mlp_blocks
from lwcl.models.network import Network
from lwcl.models.resnet import accelerated_strides, cifar_resnet_depth, resnet_blocks, standard_strides

MODELS = ("mlp", "convnet", "resnet", "reduced_resnet18", "imagenet_resnet18", "greedy_vgg")


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


def build_model(model_config, scenario, steps_per_dispatch: int = 1) -> Network:
  """Builds the network a config's ``model`` section names, with heads sized for the scenario.

  Args:
    model_config: ``config.model``: ``name`` and that model's keys (see ``configs/default.py``).
    scenario: the :class:`~lwcl.data.scenarios.Scenario` (for ``num_heads`` and ``output_dim``).
    steps_per_dispatch: ``train.steps_per_dispatch``; with ``model.conv_impl='auto'`` it picks the
      convolutions' lowering (:func:`lwcl.models.conv.resolve_conv_impl`).
  Returns:
    An unbound :class:`Network` (its ``conv_impl`` attribute: the lowering chosen); call
    ``init(rng, x, task, train=False)``.
  Raises:
    ConfigError: unknown model name or ``model.conv_impl``, or an inconsistent architecture.
  """
  name = model_config.name
  head = TaskHeads(scenario.num_heads, scenario.output_dim, name="head")
  impl = resolve_conv_impl(model_config.get("conv_impl", "auto"), steps_per_dispatch)
  if name == "mlp":
    return Network(mlp_blocks(model_config.hidden), head, "flatten", impl)
  if name == "convnet":
    return Network(convnet_blocks(model_config.conv_stages, model_config.dense,
                                  model_config.batch_norm, impl), head, "flatten", impl)
  if name == "resnet":
    n = cifar_resnet_depth(model_config.depth)
    width = model_config.width or 16
    widths = (width, 2 * width, 4 * width)
    return Network(resnet_blocks(widths, n, _strides(model_config, n, 3), width, model_config.stem_stride,
                                 **_intensity(model_config), conv_impl=impl), head, "avg", impl)
  if name == "reduced_resnet18":
    nf = model_config.width or 20
    widths = (nf, 2 * nf, 4 * nf, 8 * nf)
    return Network(resnet_blocks(widths, 2, _strides(model_config, 2, 4), nf, model_config.stem_stride,
                                 **_intensity(model_config), conv_impl=impl), head, "avg", impl)
  if name == "imagenet_resnet18":
    width = model_config.width or 64
    return Network(imagenet_resnet18_blocks(width, _strides(model_config, 2, 4), impl), head, "avg", impl)
  if name == "greedy_vgg":
    return Network(greedy_vgg_blocks(model_config.conv_stages, impl), head, "avg", impl)
  raise ConfigError(f"unknown model.name '{name}'; use one of {', '.join(MODELS)}")
