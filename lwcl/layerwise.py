"""Layer-wise (locally supervised) training: local blocks, auxiliary heads, training modes, read-outs.

A :class:`~lwcl.models.network.Network` (blocks ``f_1 .. f_N`` then the task heads) is cut into ``K``
*local blocks*, each a contiguous run of network blocks (config ``layerwise.cuts``). Local block ``k < K``
gets an auxiliary head ``h_k`` (:class:`~lwcl.models.aux_heads.AuxHead`, parameters ``aux_<k>``); the last
local block's head is the network's own head (global read-out + ``head``), so the network's output is the
same module in every mode. With ``x_k`` the output of local block ``k`` (``x_0`` the preprocessed input),
the local loss is ``L_k = CE(h_k(f_k(stop_gradient(x_{k-1}))), y)``.

Modes (``layerwise.mode``):

* ``backprop``: end to end from the last head (plain training). With ``layerwise.readouts`` the auxiliary
  heads are trained too, on *detached* features (``stop_gradient``), so they read out every depth without
  changing the backbone's gradient; the loss value reported is the end-to-end loss alone (the read-out
  losses enter as ``L - stop_gradient(L)``). Without read-outs :func:`build_fns` returns a plain
  :class:`~lwcl.train.ModelFns`, bit-identical to a run without this module.
* ``local``: decoupled greedy learning (Belilovsky, Eickenberg, Oyallon, *Decoupled Greedy Learning of
  CNNs*, ICML 2020): every local block is updated at every step from its own loss, the loss is
  ``sum_k L_k``. The gradient is computed block by block inside one compiled step (see
  :class:`LayerwiseFns`), so only one local block's activations are alive at a time.
* ``greedy``: sequential (Belilovsky et al., *Greedy Layerwise Learning Can Scale to ImageNet*, ICML
  2019): local block ``k`` is trained for its share of the task's epochs while blocks ``< k`` are frozen
  (BatchNorm in inference mode, parameters and statistics bit-identical); blocks ``> k`` are not run.

Accelerated downsampling and convolution intensity (Ma, Yu, Li, Wang, *Why Layer-Wise Learning is Hard to
Scale-up and a Possible Solution via Accelerated Downsampling*, arXiv 2010.08038) are model settings:
``model.strides='accelerated'`` and ``model.shallow_{blocks,convs,width}`` (``lwcl/models/resnet.py``).

Read-outs (:class:`Readouts`): the test accuracy of every local block's head after each task
(``block_accuracy``), a linear probe on each block's frozen features after the last task
(``linear_probe_accuracy``), and a plot of accuracy against depth.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lwcl.errors import ConfigError
from lwcl.models.aux_heads import AUX_HEADS, AuxHead, adaptive_avg_pool
from lwcl.models.network import Network, readout
from lwcl.models.resnet import Stem
from lwcl.optim import base_optimizer
from lwcl.train import MASKED_LOGIT, ModelFns, cross_entropy, mask_logits

MODES = ("backprop", "local", "greedy")
LOCAL_STEPS = ("segmented", "autodiff")
PLOT_FILE = "block_accuracy.png"


# -- local blocks ----------------------------------------------------------------------------------

def block_output_shapes(model: Network, image_shape: Sequence[int], batch: int = 1) -> list:
  """Shape of every network block's output (``jax.eval_shape``, nothing is computed).

  Args:
    model: the network; ``image_shape``: (H, W, C) of one input; ``batch``: leading dimension.
  Returns:
    A list of ``N`` shape tuples, one per entry of ``model.blocks``.
  """
  x = jax.ShapeDtypeStruct((batch,) + tuple(image_shape), jnp.float32)
  shapes = []
  for block in model.blocks:
    variables = jax.eval_shape(lambda r, a, b=block: b.init(r, a, False), jax.random.PRNGKey(0), x)
    x = jax.eval_shape(lambda v, a, b=block: b.apply(v, a, False), variables, x)
    shapes.append(tuple(x.shape))
  return shapes


def parse_cuts(cuts: str, model: Network, image_shape: Sequence[int]) -> tuple:
  """First network block of every local block, from ``layerwise.cuts``.

  * ``block``: every network block is a local block; a leading ResNet stem joins the first residual
    block (ResNet-20: 9 local blocks, ResNet-110: 54).
  * ``stage``: maximal runs of blocks with the same output channel count (CIFAR ResNets: the 3 stages,
    the stem joining stage 1).
  * ``even:K``: the blocks after the stem split into ``K`` contiguous groups of (nearly) equal length, the
    stem joining the first (ResNet-110, ``even:9``: 9 local blocks of 6 residual blocks).
  * ``i,j,...``: explicit, strictly increasing indices in ``1 .. N-1`` of the network blocks that start
    a new local block (``model.blocks[i]``; index 0 is the stem of a ResNet).

  Returns:
    ``starts``: strictly increasing int tuple, ``starts[0] == 0``; ``K = len(starts)``.
  Raises:
    ConfigError: an unknown preset, bad indices, or more local blocks than network blocks.
  """
  n = len(model.blocks)
  first = 1 if n > 1 and isinstance(model.blocks[0], Stem) else 0
  spec = str(cuts).strip()
  if spec == "block":
    return (0,) + tuple(range(first + 1, n))
  if spec == "stage":
    channels = [s[-1] for s in block_output_shapes(model, image_shape)]
    return (0,) + tuple(i for i in range(1, n) if channels[i] != channels[i - 1])
  if spec.startswith("even:"):
    try:
      k = int(spec[5:])
    except ValueError:
      k = 0
    m = n - first
    if not 1 <= k <= m:
      raise ConfigError(f"layerwise.cuts '{spec}' needs K in 1..{m} (blocks after the stem); fix "
                        "--config.layerwise.cuts")
    return (0,) + tuple(first + (j * m) // k for j in range(1, k))
  try:
    idx = tuple(int(v) for v in spec.strip("()[] ").split(",") if v.strip())
  except ValueError:
    raise ConfigError(f"layerwise.cuts '{spec}' is not block, stage, even:K or comma-separated block "
                      "indices; fix --config.layerwise.cuts") from None
  if any(b <= a for a, b in zip(idx, idx[1:])) or (idx and (idx[0] < 1 or idx[-1] > n - 1)):
    raise ConfigError(f"layerwise.cuts indices must increase strictly within 1..{n - 1} (the network "
                      f"has {n} blocks), got {spec}; fix --config.layerwise.cuts")
  return (0,) + idx


def _after(x: jax.Array, g) -> tuple:
  """``(x, g)`` unchanged in value, but ``x`` computed after every leaf of ``g``.

  ``jax.lax.optimization_barrier`` orders the two on GPU and TPU, but XLA's CPU pipeline expands the barrier
  before scheduling, so a data dependency is added too: ``x + (s - s)`` with ``s`` one element of each
  gradient leaf (exactly ``x`` for finite gradients; XLA does not fold ``s - s`` for floats).
  """
  x, g = jax.lax.optimization_barrier((x, g))
  s = sum(leaf.reshape(-1)[0].astype(x.dtype) for leaf in jax.tree_util.tree_leaves(g))
  return x + (s - s), g


# -- model functions -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerwiseFns(ModelFns):
  """:class:`~lwcl.train.ModelFns` of a network cut into local blocks with auxiliary heads.

  Parameters (and BatchNorm statistics) are the network's (``blocks_<i>``, ``head``) plus ``aux_<k>`` for
  the auxiliary head of local block ``k < K - 1``. ``loss`` has ``ModelFns.loss``'s signature, so the
  runner's train step, the continual methods (projection of the local gradients, importance penalties)
  and checkpointing work unchanged in every mode.

  **Memory of the local step.** Plain reverse-mode differentiation of ``sum_k L_k`` runs every block's
  forward pass first and keeps all their residuals alive until the backward pass, like end-to-end
  backprop. With ``local_step='segmented'`` (default) ``loss`` is a ``jax.custom_vjp`` whose forward rule
  computes, block after block, ``value_and_grad`` of ``L_k`` with respect to block ``k``'s parameters and
  makes ``x_k`` depend on ``grad_k`` (:func:`_after`: ``jax.lax.optimization_barrier`` plus a data
  dependency, which XLA's CPU backend needs), so block ``k + 1``'s forward pass cannot start before block
  ``k``'s backward pass has finished and block ``k``'s activations are dead; the backward rule returns the
  stored gradients times the incoming cotangent. Peak memory is then about that of the largest local
  block (``bin/bench layerwise``). Gradients equal the plain ones (up to float reassociation).

  Attributes:
    mode: ``backprop`` | ``local`` | ``greedy``.
    starts: first network block of each local block (:func:`parse_cuts`).
    aux_heads: ``K - 1`` :class:`~lwcl.models.aux_heads.AuxHead` modules.
    readouts: backprop mode: train the auxiliary heads on detached features.
    local_step: ``segmented`` | ``autodiff`` (plain reverse mode; for memory comparisons).
    greedy_epochs_per_block: greedy: epochs of each local block (0 = the task's steps split evenly).
  """
  mode: str = "local"
  starts: tuple = (0,)
  aux_heads: tuple = ()
  readouts: bool = False
  local_step: str = "segmented"
  greedy_epochs_per_block: int = 0

  # -- structure -----------------------------------------------------------------------------------

  @property
  def num_blocks(self) -> int:
    """``K``, the number of local blocks."""
    return len(self.starts)

  def segment(self, k: int) -> range:
    """Indices of the network blocks of local block ``k``."""
    end = self.starts[k + 1] if k + 1 < self.num_blocks else len(self.model.blocks)
    return range(self.starts[k], end)

  def head_name(self, k: int) -> str:
    """Parameter collection name of local block ``k``'s head: ``aux_<k>``, or ``head`` for the last."""
    return "head" if k == self.num_blocks - 1 else f"aux_{k}"

  def names(self, k: int) -> list:
    """Top-level parameter names owned by local block ``k`` (its network blocks and its head)."""
    return [f"blocks_{i}" for i in self.segment(k)] + [self.head_name(k)]

  def block_of(self, name: str) -> int:
    """The local block owning top-level parameter ``name``; raises KeyError for an unknown name."""
    for k in range(self.num_blocks):
      if name in self.names(k):
        return k
    raise KeyError(name)

  # -- init and pieces -----------------------------------------------------------------------------

  def init(self, rng: jax.Array, image_shape: tuple) -> tuple[Any, Any]:
    """``(params, batch_stats)``: the network's (initialized from ``rng`` as ``ModelFns.init`` does) plus
    each auxiliary head's (from ``fold_in(rng, 1 + k)``)."""
    params, stats = ModelFns.init(self, rng, image_shape)
    params, stats = dict(params), dict(stats)
    shapes = block_output_shapes(self.model, image_shape)
    task = jnp.zeros((1,), jnp.int32)
    for k, head in enumerate(self.aux_heads):
      x = jnp.zeros(shapes[self.segment(k)[-1]], jnp.float32)
      variables = head.init(jax.random.fold_in(rng, 1 + k), x, task, train=False)
      params[self.head_name(k)] = variables["params"]
      if "batch_stats" in variables:
        stats[self.head_name(k)] = variables["batch_stats"]
    return params, stats

  def _apply(self, module, name: str, params, stats, train: bool, *args):
    """Applies one submodule with its own variables; returns ``(out, its new stats or None)``."""
    variables = {"params": params.get(name, {})}
    if name in stats:
      variables["batch_stats"] = stats[name]
    if train and name in stats:
      out, updates = module.apply(variables, *args, train, mutable=["batch_stats"])
      return out, updates["batch_stats"]
    return module.apply(variables, *args, train), None

  def _head(self, k: int, params, stats, x, task, train: bool):
    """Masked logits of local block ``k``'s head on its output ``x``, and the head's new stats."""
    if k == self.num_blocks - 1:
      logits = self.model.head.apply({"params": params["head"]}, readout(x, self.model.pool), task)
      new = None
    else:
      logits, new = self._apply(self.aux_heads[k], self.head_name(k), params, stats, train, x, task)
    return mask_logits(logits, self.label_masks, task), new

  def _blocks(self, k: int, params, stats, x, train: bool):
    """Local block ``k``'s network blocks on ``x``; returns ``(x_k, {name: new stats})``."""
    new = {}
    for i in self.segment(k):
      x, s = self._apply(self.model.blocks[i], f"blocks_{i}", params, stats, train, x)
      if s is not None:
        new[f"blocks_{i}"] = s
    return x, new

  def _local(self, k: int, params, stats, x, task, train: bool, head: bool = True):
    """Local block ``k`` and its head: ``(x_k, masked logits or None, {name: new stats})``."""
    x, new = self._blocks(k, params, stats, x, train)
    logits = None
    if head:
      logits, s = self._head(k, params, stats, x, task, train)
      if s is not None:
        new[self.head_name(k)] = s
    return x, logits, new

  def _inputs(self, batch: dict, train: bool, rng):
    x = self.preprocess(batch["image"], rng if train and self.preprocess.augments else None)
    return x, batch["task"], batch.get("label"), batch.get("mask")

  # -- public functions ----------------------------------------------------------------------------

  def logits(self, params, batch_stats, batch: dict, train: bool, rng: jax.Array | None = None):
    """The last head's masked logits float32 ``[B, output_dim]`` and new BatchNorm statistics (the
    network's output, as ``ModelFns.logits``; train mode updates the network's statistics only)."""
    x, task, _, _ = self._inputs(batch, train, rng)
    new_stats = dict(batch_stats)
    for k in range(self.num_blocks):
      x, logits, new = self._local(k, params, batch_stats, x, task, train, head=k == self.num_blocks - 1)
      new_stats.update(new)
    return logits, new_stats

  def block_logits(self, params, batch_stats, batch: dict) -> list:
    """Every local block head's masked logits in inference mode: a list of ``K`` float32
    ``[B, output_dim]`` arrays, the last being the network's output."""
    x, task, _, _ = self._inputs(batch, False, None)
    out = []
    for k in range(self.num_blocks):
      x, logits, _ = self._local(k, params, batch_stats, x, task, False)
      out.append(logits)
    return out

  def block_features(self, params, batch_stats, batch: dict, pool: int = 2) -> list:
    """Every local block's output in inference mode, adaptive-average-pooled to ``pool x pool`` and
    flattened (``pool = 0``: not pooled): a list of ``K`` float32 ``[B, F_k]`` arrays."""
    x, task, _, _ = self._inputs(batch, False, None)
    out = []
    for k in range(self.num_blocks):
      x, _ = self._blocks(k, params, batch_stats, x, False)
      f = adaptive_avg_pool(x, pool) if pool > 0 else x
      out.append(f.reshape(f.shape[0], -1))
    return out

  def local_losses(self, params, batch_stats, batch: dict, rng=None, train: bool = True) -> list:
    """``[L_1, ..., L_K]`` (float32 scalars), each block fed the previous block's detached output;
    plain reverse-mode differentiable. In ``train`` mode BatchNorm uses batch statistics."""
    return self._detached(params, batch_stats, batch, rng, train)[0]

  def _detached(self, params, batch_stats, batch, rng, train):
    """Local losses, the last head's logits and every block's and head's new stats, in one pass."""
    x, task, labels, weights = self._inputs(batch, train, rng)
    losses, new_stats, logits = [], dict(batch_stats), None
    for k in range(self.num_blocks):
      x, logits, new = self._local(k, params, batch_stats, jax.lax.stop_gradient(x), task, train)
      losses.append(cross_entropy(logits, labels, weights))
      new_stats.update(new)
    return losses, jax.lax.stop_gradient(logits), new_stats

  def loss(self, params, batch_stats, batch: dict, rng: jax.Array | None = None, train: bool = True):
    """The training loss of ``mode``; returns ``(loss, (logits, new_batch_stats))`` like ``ModelFns.loss``.

    * ``backprop``: CE of the last head (the auxiliary heads' detached losses add gradient, not value).
    * ``local``: ``sum_k L_k``; logits are the last head's.
    * ``greedy`` (``train``): ``L_p`` of the active block ``p = batch['phase'][0]`` (int32 ``[B]``, set by
      :func:`with_phase`); logits are block ``p``'s head's; blocks ``< p`` run in inference mode, blocks
      ``> p`` do not run, and every parameter outside block ``p`` gets an exactly zero gradient.
      Outside ``train``, greedy reports ``sum_k L_k`` like ``local``.

    Raises:
      ValueError: greedy training on a batch without ``phase``.
    """
    if self.mode == "backprop":
      return self._backprop_loss(params, batch_stats, batch, rng, train)
    if not train or (self.local_step == "autodiff" and self.mode == "local"):
      losses, logits, new_stats = self._detached(params, batch_stats, batch, rng, train)
      return sum(losses), (logits, new_stats)
    if self.mode == "greedy" and "phase" not in batch:
      raise ValueError("layerwise.mode='greedy' trains on batches with a 'phase' entry (see "
                       "lwcl.layerwise.with_phase); this batch has none")
    x, task, labels, weights = self._inputs(batch, train, rng)
    phase = batch["phase"][0].astype(jnp.int32) if self.mode == "greedy" else jnp.int32(-1)
    weights = jnp.ones(labels.shape, jnp.float32) if weights is None else weights

    def primal(params, batch_stats, x, labels, weights, task, phase):
      value, aux, _ = self._segmented(params, batch_stats, x, labels, weights, task, phase, grads=False)
      return value, aux

    def fwd(params, batch_stats, x, labels, weights, task, phase):
      value, aux, grads = self._segmented(params, batch_stats, x, labels, weights, task, phase, grads=True)
      return (value, aux), grads

    def bwd(grads, cotangent):
      g = cotangent[0]
      return (jax.tree_util.tree_map(lambda a: (a * g).astype(a.dtype), grads),
              None, None, None, None, None, None)

    f = jax.custom_vjp(primal)
    f.defvjp(fwd, bwd)
    return f(params, batch_stats, x, labels, weights, task, phase)

  def _backprop_loss(self, params, batch_stats, batch, rng, train):
    x, task, labels, weights = self._inputs(batch, train, rng)
    new_stats, value = dict(batch_stats), 0.0
    for k in range(self.num_blocks):
      x, new = self._blocks(k, params, batch_stats, x, train)
      new_stats.update(new)
      if k < self.num_blocks - 1:
        logits, s = self._head(k, params, batch_stats, jax.lax.stop_gradient(x), task, train)
        if s is not None:
          new_stats[self.head_name(k)] = s
        aux = cross_entropy(logits, labels, weights)
        value = value + (aux - jax.lax.stop_gradient(aux))
    logits, _ = self._head(self.num_blocks - 1, params, batch_stats, x, task, train)
    return cross_entropy(logits, labels, weights) + value, (logits, new_stats)

  def _segmented(self, params, batch_stats, x, labels, weights, task, phase, grads: bool):
    """Block-by-block local (or greedy) loss; with ``grads`` also each block's parameter gradient.

    Returns ``(loss, (logits, new_batch_stats), grads or None)``.
    """
    K = self.num_blocks
    value, logits_out = jnp.zeros((), jnp.float32), None
    new_stats, all_grads = dict(batch_stats), {}
    for k in range(K):
      own = {n: params[n] for n in self.names(k) if n in params}
      own_stats = {n: batch_stats[n] for n in self.names(k) if n in batch_stats}

      def seg_loss(p, x_in, k=k):
        x_out, logits, new = self._local(k, p, batch_stats, x_in, task, True)
        return cross_entropy(logits, labels, weights), (x_out, logits, new)

      def active(p, x_in, seg_loss=seg_loss, own_stats=own_stats):
        if grads:
          (loss, (x_out, logits, new)), g = jax.value_and_grad(seg_loss, has_aux=True)(p, x_in)
        else:
          (loss, (x_out, logits, new)), g = seg_loss(p, x_in), None
        return x_out, loss, logits, {**own_stats, **new}, g

      if self.mode == "local":
        x, loss, logits, new, g = active(own, x)
        if grads and k < K - 1:
          x, g = _after(x, g)
        logits_out = logits
      else:
        shape = jax.eval_shape(active, own, x)
        zero_g = jax.tree_util.tree_map(jnp.zeros_like, own) if grads else None

        def frozen(p, x_in, k=k, zero_g=zero_g, own_stats=own_stats, shape=shape):
          x_out, _ = self._blocks(k, p, batch_stats, x_in, False)
          return (x_out, jnp.zeros((), jnp.float32), jnp.zeros(shape[2].shape, shape[2].dtype),
                  own_stats, zero_g)

        def future(p, x_in, zero_g=zero_g, own_stats=own_stats, shape=shape):
          del p, x_in
          return (jnp.zeros(shape[0].shape, shape[0].dtype), jnp.zeros((), jnp.float32),
                  jnp.zeros(shape[2].shape, shape[2].dtype), own_stats, zero_g)

        branch = jnp.where(k < phase, 0, jnp.where(k == phase, 1, 2))
        x, loss, logits, new, g = jax.lax.switch(branch, (frozen, active, future), own, x)
        logits_out = logits if logits_out is None else logits_out + logits
      value = value + loss
      new_stats.update(new)
      if grads:
        all_grads.update(g)
    if grads:
      all_grads = {n: all_grads.get(n, jax.tree_util.tree_map(jnp.zeros_like, params[n])) for n in params}
    return value, (jax.lax.stop_gradient(logits_out), new_stats), (all_grads if grads else None)


# -- building --------------------------------------------------------------------------------------

def validate(lw_config) -> None:
  """Checks ``config.layerwise``; raises ConfigError naming the key and the fix."""
  if lw_config.mode not in MODES:
    raise ConfigError(f"unknown layerwise.mode '{lw_config.mode}'; use one of {', '.join(MODES)}")
  if lw_config.aux_head not in AUX_HEADS:
    raise ConfigError(f"unknown layerwise.aux_head '{lw_config.aux_head}'; use one of {', '.join(AUX_HEADS)}")
  if lw_config.local_step not in LOCAL_STEPS:
    raise ConfigError(f"unknown layerwise.local_step '{lw_config.local_step}'; use segmented or autodiff")
  for key in ("aux_pool", "aux_convs", "aux_width", "greedy_epochs_per_block"):
    if lw_config[key] < 0:
      raise ConfigError(f"layerwise.{key} must be >= 0, got {lw_config[key]}; fix --config.layerwise.{key}")
  if lw_config.aux_head == "cnn" and lw_config.aux_convs < 1:
    raise ConfigError("layerwise.aux_convs must be >= 1 for aux_head='cnn'; fix --config.layerwise.aux_convs")
  if any(int(h) < 1 for h in lw_config.aux_hidden):
    raise ConfigError(f"layerwise.aux_hidden sizes must be >= 1, got {tuple(lw_config.aux_hidden)}; fix "
                      "--config.layerwise.aux_hidden")
  probe = lw_config.linear_probe
  if probe.enabled and (probe.train_examples < 1 or probe.steps < 1 or probe.learning_rate <= 0
                        or probe.l2 < 0 or probe.pool < 0):
    raise ConfigError("layerwise.linear_probe needs train_examples >= 1, steps >= 1, learning_rate > 0, "
                      "l2 >= 0 and pool >= 0; fix --config.layerwise.linear_probe.*")


def is_layerwise(lw_config) -> bool:
  """Whether a run has local blocks (any mode but plain backprop without read-outs)."""
  return lw_config.mode != "backprop" or bool(lw_config.readouts)


def build_fns(lw_config, model: Network, preprocess, label_masks: np.ndarray, image_shape: tuple,
              num_heads: int, output_dim: int) -> ModelFns:
  """Model functions for ``config.layerwise``: a plain :class:`~lwcl.train.ModelFns` for ``backprop``
  without read-outs (nothing changes), otherwise a :class:`LayerwiseFns`.

  Args:
    lw_config: ``config.layerwise``; ``model``: the network; ``preprocess``, ``label_masks``: as
      ``ModelFns``; ``image_shape``: (H, W, C); ``num_heads``, ``output_dim``: the scenario's head layout.
  Raises:
    ConfigError: invalid ``layerwise`` values (see :func:`validate`, :func:`parse_cuts`).
  """
  validate(lw_config)
  if not is_layerwise(lw_config):
    return ModelFns(model, preprocess, label_masks)
  starts = parse_cuts(lw_config.cuts, model, image_shape)
  heads = tuple(AuxHead(lw_config.aux_head, num_heads, output_dim, int(lw_config.aux_pool),
                        int(lw_config.aux_convs), int(lw_config.aux_width),
                        tuple(int(h) for h in lw_config.aux_hidden)) for _ in starts[:-1])
  return LayerwiseFns(model, preprocess, label_masks, mode=lw_config.mode, starts=starts, aux_heads=heads,
                      readouts=bool(lw_config.readouts), local_step=lw_config.local_step,
                      greedy_epochs_per_block=int(lw_config.greedy_epochs_per_block))


def check_schedule(fns: ModelFns, epochs_per_task: int) -> None:
  """Greedy: ``greedy_epochs_per_block * K`` must equal ``train.epochs_per_task`` when set.

  Raises:
    ConfigError: the two disagree.
  """
  if isinstance(fns, LayerwiseFns) and fns.mode == "greedy" and fns.greedy_epochs_per_block:
    need = fns.greedy_epochs_per_block * fns.num_blocks
    if need != epochs_per_task:
      raise ConfigError(f"greedy mode trains {fns.num_blocks} local blocks x "
                        f"layerwise.greedy_epochs_per_block={fns.greedy_epochs_per_block} = {need} epochs, "
                        f"but train.epochs_per_task={epochs_per_task}; set --config.train.epochs_per_task="
                        f"{need} (or greedy_epochs_per_block=0 to split the task's epochs evenly)")


def greedy_phase(fns: ModelFns, task_step: int, steps_per_epoch: int, epochs: int) -> int:
  """The local block greedy mode trains at step ``task_step`` of a task (host int).

  With ``greedy_epochs_per_block = E > 0``: ``min(epoch // E, K - 1)``; with 0, the task's
  ``steps_per_epoch * epochs`` steps are split evenly: ``min(task_step * K // total, K - 1)``.
  """
  K = fns.num_blocks
  if fns.greedy_epochs_per_block:
    return min(task_step // steps_per_epoch // fns.greedy_epochs_per_block, K - 1)
  return min(task_step * K // max(1, steps_per_epoch * epochs), K - 1)


def with_phase(fns: ModelFns, batch: dict, task_step: int, steps_per_epoch: int, epochs: int) -> dict:
  """``batch`` plus ``phase`` (int32 ``[B]``, :func:`greedy_phase`) in greedy mode; otherwise ``batch``."""
  if not (isinstance(fns, LayerwiseFns) and fns.mode == "greedy"):
    return batch
  b = len(batch["label"])
  return dict(batch, phase=np.full((b,), greedy_phase(fns, task_step, steps_per_epoch, epochs), np.int32))


class GreedyState(NamedTuple):
  """State of :func:`greedy_transformation`: ``active`` int32 scalar (last trained local block, -1
  before the first step), the method transformation's and the base optimizer's states."""
  active: jax.Array
  method: Any
  base: Any


def greedy_transformation(fns: "LayerwiseFns", method_tx, base_tx) -> optax.GradientTransformationExtraArgs:
  """``method_tx -> base_tx`` for greedy mode: only the active local block moves.

  The active block is the one whose raw gradient is non-zero (the greedy loss gives every other
  parameter an exactly zero gradient). Updates of all other blocks are zeroed after the base optimizer,
  so weight decay and momentum cannot move frozen (or not yet trained) blocks: their parameters stay
  bit-identical. When the active block changes, the base optimizer's state (momentum, schedule count)
  restarts, so every block is trained with a fresh learning-rate schedule as in sequential greedy
  training; the method transformation's state is kept.
  """
  method_tx = optax.with_extra_args_support(method_tx)
  base_tx = optax.with_extra_args_support(base_tx)

  def init(params):
    return GreedyState(jnp.int32(-1), method_tx.init(params), base_tx.init(params))

  def update(grads, state, params=None, **extra):
    K = fns.num_blocks
    moving = jnp.zeros((K,), jnp.int32)
    for name, g in grads.items():
      for leaf in jax.tree_util.tree_leaves(g):
        moving = moving.at[fns.block_of(name)].max(jnp.any(leaf != 0).astype(jnp.int32))
    active = jnp.where(jnp.any(moving), jnp.argmax(moving).astype(jnp.int32), state.active)
    m_updates, m_state = method_tx.update(grads, state.method, params, **extra)
    fresh = base_tx.init(params)
    restart = active != state.active
    base_state = jax.tree_util.tree_map(lambda f, o: jnp.where(restart, f, o), fresh, state.base)
    updates, base_state = base_tx.update(m_updates, base_state, params, **extra)
    updates = {name: jax.tree_util.tree_map(
        lambda u, k=fns.block_of(name): jnp.where(active == k, u, jnp.zeros_like(u)), u_tree)
        for name, u_tree in updates.items()}
    return updates, GreedyState(active, m_state, base_state)

  return optax.GradientTransformationExtraArgs(init, update)


def optimizer(fns: ModelFns, method_tx, opt_config, steps_per_epoch: int, epochs: int):
  """The run's transformation: ``optax.chain(method_tx, base_optimizer(...))`` (unchanged from plain
  training) except in greedy mode, where :func:`greedy_transformation` wraps the two and the base
  optimizer's schedule spans one block's epochs."""
  if isinstance(fns, LayerwiseFns) and fns.mode == "greedy":
    check_schedule(fns, epochs)
    block_epochs = fns.greedy_epochs_per_block or max(1, epochs // fns.num_blocks)
    return greedy_transformation(fns, method_tx, base_optimizer(opt_config, steps_per_epoch, block_epochs))
  return optax.chain(method_tx, base_optimizer(opt_config, steps_per_epoch, epochs))


# -- read-outs -------------------------------------------------------------------------------------

def block_depths(fns: "LayerwiseFns", image_shape: tuple) -> list:
  """Weight layers (conv and dense kernels, projection shortcuts excluded) from the input through the end
  of each local block: a list of ``K`` ints (ResNet-20, ``cuts='block'``: 3, 5, ..., 19)."""
  params = jax.eval_shape(lambda: ModelFns.init(fns, jax.random.PRNGKey(0), image_shape)[0])
  per_block = {}
  for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [getattr(p, "key", str(p)) for p in path]
    if keys[-1] == "kernel" and keys[0].startswith("blocks_") and not any("shortcut" in k for k in keys):
      per_block[keys[0]] = per_block.get(keys[0], 0) + 1
  depths, total = [], 0
  for k in range(fns.num_blocks):
    total += sum(per_block.get(f"blocks_{i}", 0) for i in fns.segment(k))
    depths.append(total)
  return depths


def train_linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                       label_mask: np.ndarray, steps: int, learning_rate: float, l2: float) -> float:
  """Test accuracy of a softmax-regression probe on frozen features.

  Features are standardized with the training set's statistics; the probe (Dense, ``[F, output_dim]``)
  is trained full-batch with Adam for ``steps`` steps on mean cross-entropy + ``l2 * ||W||^2``; outputs
  outside ``label_mask`` (bool ``[output_dim]``, the task's classes) are masked as in the network.

  Args:
    train_x, test_x: float32 ``[N, F]``; train_y, test_y: int32 ``[N]``.
  Returns:
    Accuracy on ``test_x`` (float in [0, 1]).
  """
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  return float(_fit_probe(jnp.asarray((train_x - mean) / std), jnp.asarray(train_y, jnp.int32),
                          jnp.asarray((test_x - mean) / std), jnp.asarray(test_y, jnp.int32),
                          jnp.asarray(label_mask), int(steps), float(learning_rate), float(l2)))


def _probe_logits(w, b, x, mask):
  return jnp.where(mask, x @ w + b, MASKED_LOGIT)


@functools.partial(jax.jit, static_argnums=(5, 6, 7))
def _fit_probe(xtr, ytr, xte, yte, mask, steps, lr, l2):
  opt = optax.adam(lr)
  wb = (jnp.zeros((xtr.shape[1], mask.shape[0]), jnp.float32), jnp.zeros((mask.shape[0],), jnp.float32))

  def loss(wb):
    logits = _probe_logits(wb[0], wb[1], xtr, mask)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, ytr)) + l2 * jnp.sum(wb[0] ** 2)

  def body(_, carry):
    wb, s = carry
    updates, s = opt.update(jax.grad(loss)(wb), s, wb)
    return optax.apply_updates(wb, updates), s

  wb, _ = jax.lax.fori_loop(0, steps, body, (wb, opt.init(wb)))
  return jnp.mean(jnp.argmax(_probe_logits(wb[0], wb[1], xte, mask), -1) == yte)


class Hooks:
  """What an :class:`~lwcl.experiment.Experiment` adds for layer-wise training. For plain runs (no local
  blocks) every hook does nothing, so plain results are unchanged.

  * ``batch``: adds greedy mode's ``phase`` to a training batch.
  * ``initial_record`` / ``after_task``: the block accuracies ``[T, K, T]`` (after task ``i``, head of
    local block ``k``, on task ``j``), and after the last task the linear-probe accuracies ``[K, T]``;
    recorded arrays are checkpointed with the run.
  * ``results``: ``block_accuracy``, ``block_acc`` (final, mean over tasks, ``[K]``),
    ``linear_probe_accuracy``, ``linear_probe_acc`` and a ``layerwise`` description (mode, local blocks,
    depth in weight layers of each block's end).
  * ``write``: ``block_accuracy.png``, accuracy against depth.
  """

  def __init__(self, experiment):
    self.exp = experiment
    self.fns = experiment.fns
    self.active = isinstance(self.fns, LayerwiseFns)
    if not self.active:
      return
    self.config = experiment.config.layerwise
    rep, bat = experiment.parallel.replicated, experiment.parallel.batch
    self.block_eval_step = jax.jit(self._block_eval, in_shardings=(rep, rep, bat), out_shardings=(rep, rep))
    self.features = jax.jit(self.fns.block_features, static_argnums=(3,))
    self.depths = block_depths(self.fns, experiment.scenario.image_shape)

  def _block_eval(self, params, batch_stats, batch):
    logits = self.fns.block_logits(params, batch_stats, batch)
    hits = jnp.stack([(jnp.argmax(l, -1) == batch["label"]).astype(jnp.float32) for l in logits])
    return jnp.sum(hits * batch["mask"], axis=1), jnp.sum(batch["mask"])

  def batch(self, batch: dict, task_step: int, steps_per_epoch: int, epochs: int) -> dict:
    return with_phase(self.fns, batch, task_step, steps_per_epoch, epochs)

  def initial_record(self, num_tasks: int) -> dict:
    if not self.active:
      return {}
    K = self.fns.num_blocks
    record = {"block_R": np.zeros((num_tasks, K, num_tasks), np.float32)}
    if self.config.linear_probe.enabled:
      record["probe"] = np.zeros((K, num_tasks), np.float32)
    return record

  def block_accuracy(self, state, task: int, split: str = "test") -> np.ndarray:
    """Accuracy (fraction) of every local block's head on one task's split, float32 ``[K]``."""
    from lwcl.data.pipeline import eval_batches  # pylint: disable=g-import-not-at-top
    exp = self.exp
    data = getattr(exp.scenario.tasks[task], split)
    correct, count = np.zeros((self.fns.num_blocks,)), 0.0
    for batch in eval_batches(data.images, data.labels, task, exp.eval_batch_size):
      c, n = self.block_eval_step(state.params, state.batch_stats, exp.parallel.put_batch(batch))
      correct, count = correct + np.asarray(c), count + float(n)
    return (correct / max(count, 1.0)).astype(np.float32)

  def probe_accuracy(self, state, task: int, split: str = "test") -> np.ndarray:
    """Linear-probe accuracy of every local block's frozen features on one task, float32 ``[K]``: the
    probe trains on up to ``linear_probe.train_examples`` of the task's training examples (a seeded
    subset) and is tested on its ``split``."""
    exp, probe = self.exp, self.config.linear_probe
    t = exp.scenario.tasks[task]
    rng = np.random.RandomState(exp.config.seed + 7919 * task)
    idx = np.sort(rng.permutation(len(t.train.labels))[: probe.train_examples])
    test = getattr(t, split)
    feats = [self._features(state, t.train.images[idx], task), self._features(state, test.images, task)]
    mask = np.asarray(exp.scenario.label_masks)[task]
    return np.asarray([train_linear_probe(feats[0][k], t.train.labels[idx], feats[1][k], test.labels, mask,
                                          probe.steps, probe.learning_rate, probe.l2)
                       for k in range(self.fns.num_blocks)], np.float32)

  def _features(self, state, images: np.ndarray, task: int) -> list:
    bs = self.exp.eval_batch_size
    chunks = []
    for i in range(0, len(images), bs):
      x = images[i:i + bs]
      batch = {"image": x, "task": np.full((len(x),), task, np.int32)}
      chunks.append([np.asarray(f) for f in self.features(state.params, state.batch_stats, batch,
                                                           int(self.config.linear_probe.pool))])
    return [np.concatenate([c[k] for c in chunks]) for k in range(self.fns.num_blocks)]

  def after_task(self, state, task: int, record: dict, split: str = "test") -> None:
    if not self.active:
      return
    T = self.exp.scenario.num_tasks
    record["block_R"][task] = np.stack([self.block_accuracy(state, j, split) for j in range(T)], axis=1)
    if self.config.linear_probe.enabled and task == T - 1:
      record["probe"] = np.stack([self.probe_accuracy(state, j, split) for j in range(T)], axis=1)

  def results(self, record: dict) -> dict:
    if not self.active:
      return {}
    fns, cfg = self.fns, self.config
    block_R = record["block_R"].astype(np.float64)
    out = {"block_accuracy": block_R.tolist(), "block_acc": block_R[-1].mean(axis=1).tolist(),
           "layerwise": {"mode": fns.mode, "cuts": str(cfg.cuts), "local_blocks": fns.num_blocks,
                         "blocks": [[r[0], r[-1]] for r in map(fns.segment, range(fns.num_blocks))],
                         "depth": self.depths, "aux_head": cfg.aux_head,
                         "strides": str(self.exp.config.model.strides)}}
    if "probe" in record:
      probe = record["probe"].astype(np.float64)
      out["linear_probe_accuracy"] = probe.tolist()
      out["linear_probe_acc"] = probe.mean(axis=1).tolist()
    return out

  def write(self, results: dict, workdir: str) -> None:
    if self.active:
      plot_block_accuracy([(results["layerwise"]["mode"], results)], os.path.join(workdir, PLOT_FILE))


def plot_block_accuracy(runs: Sequence[tuple], path: str, title: str = "") -> None:
  """Saves accuracy against depth, one line per run, to PNG ``path`` (atomically).

  Args:
    runs: ``(label, results)`` pairs; ``results`` hold ``block_acc`` and ``layerwise.depth`` (and
      optionally ``linear_probe_acc``, drawn in a second panel in the same color).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  probes = any("linear_probe_acc" in res for _, res in runs)
  fig, axes = plt.subplots(1, 2 if probes else 1, figsize=(11.5 if probes else 6.4, 4.6), sharey=True,
                           squeeze=False)
  axes = axes[0]
  for i, (label, res) in enumerate(runs):
    depth = res["layerwise"]["depth"]
    style = {"color": f"C{i % 10}", "marker": "os^vDP*Xph"[(i // 10) % 10], "label": label}
    axes[0].plot(depth, 100 * np.asarray(res["block_acc"]), "-", **style)
    if "linear_probe_acc" in res:
      axes[1].plot(depth, 100 * np.asarray(res["linear_probe_acc"]), "--", **style)
  axes[0].set_title("auxiliary head of each local block (last: the network's output)", fontsize=9)
  axes[0].set_ylabel("test accuracy (%)")
  if probes:
    axes[1].set_title("linear probe on each local block's frozen features", fontsize=9)
  for ax in axes:
    ax.set_xlabel("depth (weight layers through the end of the local block)")
    ax.grid(alpha=0.3)
  axes[-1].legend(fontsize=7, loc="lower right")
  fig.suptitle(title or "accuracy against depth", fontsize=10)
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)
