"""The small layer-wise ConvNet the tests of lwcl.layerwise share (tests/layerwise/): its config, its
functions, one initialization per test process, and batches."""

import functools
import types

import jax
import numpy as np

from lwcl import layerwise
from lwcl.data.pipeline import Preprocessor
from lwcl.models import build_model

from helpers import small_config

IMAGE = (16, 16, 3)
CLASSES = 4


def lw_config(**overrides):
  """The small test config as a ConvNet with BatchNorm (3 conv stages of 8 channels, 16x16 -> 2x2, then
  Dense 16: 4 network blocks; cheap to compile) and layer-wise overrides."""
  base = {"model.name": "convnet", "model.conv_stages": ((8,), (8,), (8,)), "model.dense": (16,),
          "model.batch_norm": True, "layerwise.mode": "local"}
  base.update({(k if "." in k else f"layerwise.{k}"): v for k, v in overrides.items()})
  return small_config(**base)


def make_fns(cfg):
  model = build_model(cfg.model, types.SimpleNamespace(num_heads=1, output_dim=CLASSES))
  pre = Preprocessor((0.5,) * 3, (0.25,) * 3)
  return layerwise.build_fns(cfg.layerwise, model, pre, np.ones((1, CLASSES), bool), IMAGE, 1, CLASSES)


@functools.lru_cache(maxsize=None)
def _built(items):
  fns = make_fns(lw_config(**dict(items)))
  params, stats = jax.jit(fns.init, static_argnums=(1,))(jax.random.PRNGKey(0), IMAGE)
  return fns, params, stats


def built(**overrides):
  """``(fns, params, batch_stats)`` of ``lw_config(**overrides)``, initialized once per test process."""
  return _built(tuple(sorted(overrides.items())))


def make_batch(seed=0, n=8):
  rng = np.random.RandomState(seed)
  return {"image": rng.randint(0, 256, (n,) + IMAGE).astype(np.uint8),
          "label": rng.randint(0, CLASSES, n).astype(np.int32), "task": np.zeros(n, np.int32)}
