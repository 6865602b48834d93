"""Model functions of a network cut into local blocks: the local losses, the block-by-block custom VJP of
the local step, and :func:`build_fns` (``config.layerwise`` -> :class:`LayerwiseFns` or plain
:class:`~lwcl.core.model_fns.ModelFns`). Modes and sources: :mod:`lwcl.layerwise`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lwcl.core.model_fns import ModelFns, cross_entropy, mask_logits
from lwcl.core.options import Option
from lwcl.layerwise.cuts import block_output_shapes, parse_cuts
from lwcl.models.aux_heads import AUX_HEADS, AuxHead, adaptive_avg_pool
from lwcl.models.network import Network, readout

MODES = ("backprop", "local", "greedy")
LOCAL_STEPS = ("segmented", "autodiff")

# The layerwise.* keys (layerwise.linear_probe.*: lwcl/layerwise/readouts.py).
OPTIONS = (
    Option("layerwise.mode", "backprop", "backprop (end to end, plain training) | local (decoupled) | greedy",
           choices=MODES),
    Option("layerwise.readouts", False, "backprop: also train aux heads on detached features (block_accuracy, "
           "probes)"),
    Option("layerwise.cuts", "block", "local blocks: block | stage | even:K | comma-separated first-block "
           "indices"),
    Option("layerwise.aux_head", "linear", "linear (pool + Dense) | cnn (3x3 convs + BN + ReLU, pool, Dense) "
           "| mlp", choices=AUX_HEADS),
    Option("layerwise.aux_pool", 2, "aux heads average-pool feature maps to aux_pool x aux_pool (DGL: 2)",
           minimum=0),
    Option("layerwise.aux_convs", 2, "cnn head: number of 3x3 convs (>= 1 with aux_head=cnn)", minimum=0),
    Option("layerwise.aux_width", 0, "cnn head: conv channels; 0 = the block's channels", minimum=0),
    Option("layerwise.aux_hidden", (256,), "mlp head: hidden Dense sizes", minimum=1),
    Option("layerwise.local_step", "segmented", "segmented (block-by-block gradients, low memory) | autodiff",
           choices=LOCAL_STEPS),
    Option("layerwise.greedy_epochs_per_block", 0, "greedy: epochs per local block (x K = epochs_per_task); "
           "0 = split", minimum=0),
)


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
  """:class:`~lwcl.core.model_fns.ModelFns` of a network cut into local blocks with auxiliary heads.

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

  @property
  def is_layerwise(self) -> bool:
    return True

  @property
  def is_local(self) -> bool:
    return self.mode in ("local", "greedy")

  @property
  def is_greedy(self) -> bool:
    return self.mode == "greedy"

  @property
  def local_blocks(self) -> int:
    return self.num_blocks

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

  def init_variables(self, rng: jax.Array, image_shape: tuple) -> tuple[Any, Any]:
    """``(params, batch_stats)``: the network's (initialized from ``rng`` as ``ModelFns.init_variables``
    does) plus each auxiliary head's (from ``fold_in(rng, 1 + k)``); traceable (``init`` compiles it)."""
    params, stats = ModelFns.init_variables(self, rng, image_shape)
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

  def _inputs(self, batch: dict, train: bool, rng, augment: bool | None = None):
    augment = train if augment is None else augment
    x = self.preprocess(batch["image"], rng if augment and self.preprocess.augments else None)
    return x, batch["task"], batch.get("label"), batch.get("mask")

  # -- public functions ----------------------------------------------------------------------------

  def logits(self, params, batch_stats, batch: dict, train: bool, rng: jax.Array | None = None,
             augment: bool | None = None):
    """The last head's masked logits float32 ``[B, output_dim]`` and new BatchNorm statistics (the
    network's output, as ``ModelFns.logits``, ``augment`` too; train mode updates the network's statistics
    only)."""
    x, task, _, _ = self._inputs(batch, train, rng, augment)
    new_stats = dict(batch_stats)
    for k in range(self.num_blocks):
      x, logits, new = self._local(k, params, batch_stats, x, task, train, head=k == self.num_blocks - 1)
      new_stats.update(new)
    return logits, new_stats

  def features(self, params, batch_stats, batch: dict) -> jax.Array:
    """The network's read-out before its head in inference mode, float32 ``[B, F]`` (as
    ``ModelFns.features``: ``batch`` needs ``image`` only; the parameters hold the auxiliary heads too)."""
    x = self.preprocess(batch["image"], None)
    for k in range(self.num_blocks):
      x, _ = self._blocks(k, params, batch_stats, x, False)
    return readout(x, self.model.pool).astype(jnp.float32)

  def block_logits(self, params, batch_stats, batch: dict, detach: bool = False, train: bool = False,
                   rng: jax.Array | None = None, augment: bool | None = None) -> list:
    """Every local block head's masked logits: a list of ``K`` float32 ``[B, output_dim]`` arrays, the last
    being the network's output. With ``detach`` each block is fed the previous block's output through
    ``stop_gradient``, so the gradient of a function of the ``k``-th logits reaches only local block ``k``
    and its head (the local counterpart of :meth:`logits`). In inference mode by default; with ``train``,
    BatchNorm on batch statistics (not returned) and the images augmented with ``rng`` as a train step's
    local losses see them (:meth:`local_losses` with the same ``rng``); ``augment`` as in :meth:`logits`."""
    x, task, _, _ = self._inputs(batch, train, rng, augment)
    out = []
    for k in range(self.num_blocks):
      x_in = jax.lax.stop_gradient(x) if detach else x
      x, logits, _ = self._local(k, params, batch_stats, x_in, task, train)
      out.append(logits)
    return out

  def local_outputs(self, params, batch_stats, batch: dict, train: bool, rng: jax.Array | None = None,
                    augment: bool | None = None) -> list:
    """In ``local`` and ``greedy`` training every local block head's masked logits, each block fed the
    previous one's detached output (:meth:`block_logits` with ``detach``), so a method's term on output
    ``k`` trains local block ``k`` and its head alone; in ``backprop`` mode the network's logits (as
    ``ModelFns.local_outputs``)."""
    if not self.is_local:
      return [self.logits(params, batch_stats, batch, train, rng, augment)[0]]
    return self.block_logits(params, batch_stats, batch, detach=True, train=train, rng=rng, augment=augment)

  def local_weights(self, batch: dict) -> jax.Array:
    """float32 ``[len(local_outputs)]``: ``local`` mode weighs every block's term 1, ``greedy`` mode only
    the active block's (``batch['phase'][0]``; its terms must not train the other blocks), ``backprop``
    mode the network's 1."""
    if self.mode == "greedy":
      return jax.nn.one_hot(batch["phase"][0], self.num_blocks, dtype=jnp.float32)
    return jnp.ones((self.num_blocks if self.is_local else 1,), jnp.float32)

  def block_features(self, params, batch_stats, batch: dict, pool: int = 2) -> list:
    """Every local block's output in inference mode, adaptive-average-pooled to ``pool x pool`` and
    flattened (``pool = 0``: not pooled): a list of ``K`` float32 ``[B, F_k]`` arrays."""
    x, task, _, _ = self._inputs(batch, False, None)
    out = []
    for k in range(self.num_blocks):
      x, _ = self._blocks(k, params, batch_stats, x, False)
      f = adaptive_avg_pool(x, pool) if pool > 0 else x
      out.append(f.reshape(f.shape[0], -1).astype(jnp.float32))
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
      :func:`~lwcl.layerwise.greedy.with_phase`); logits are block ``p``'s head's; blocks ``< p`` run in
      inference mode, blocks ``> p`` do not run, and every parameter outside block ``p`` gets an exactly
      zero gradient.
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

def is_layerwise(lw_config) -> bool:
  """Whether a run has local blocks (any mode but plain backprop without read-outs)."""
  return lw_config.mode != "backprop" or bool(lw_config.readouts)


def build_fns(lw_config, model: Network, preprocess, label_masks: np.ndarray, image_shape: tuple,
              num_heads: int, output_dim: int) -> ModelFns:
  """Model functions for ``config.layerwise``: a plain :class:`~lwcl.core.model_fns.ModelFns` for ``backprop``
  without read-outs (nothing changes), otherwise a :class:`LayerwiseFns`.

  Args:
    lw_config: ``config.layerwise``; ``model``: the network; ``preprocess``, ``label_masks``: as
      ``ModelFns``; ``image_shape``: (H, W, C); ``num_heads``, ``output_dim``: the scenario's head layout.
  Raises:
    ConfigError: ``layerwise.cuts`` that do not fit the network (:func:`parse_cuts`); the section's
      values are checked by the config validator (:mod:`lwcl.config.options`, :data:`OPTIONS`).
  """
  if not is_layerwise(lw_config):
    return ModelFns(model, preprocess, label_masks)
  starts = parse_cuts(lw_config.cuts, model, image_shape)
  heads = tuple(AuxHead(lw_config.aux_head, num_heads, output_dim, int(lw_config.aux_pool),
                        int(lw_config.aux_convs), int(lw_config.aux_width),
                        tuple(int(h) for h in lw_config.aux_hidden), getattr(model, "conv_impl", "native"),
                        getattr(model, "dtype", jnp.float32))
                for _ in starts[:-1])
  return LayerwiseFns(model, preprocess, label_masks, mode=lw_config.mode, starts=starts, aux_heads=heads,
                      readouts=bool(lw_config.readouts), local_step=lw_config.local_step,
                      greedy_epochs_per_block=int(lw_config.greedy_epochs_per_block))
