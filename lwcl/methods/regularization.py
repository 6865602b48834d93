"""Importance-regularized continual learning: EWC, MAS, SI and NAI (docs/design.md, "Importance penalties").

Task ``t`` minimizes ``L_t(theta) + (strength / 2) * sum_i omega_i (theta_i - anchor_i)^2``, where
``anchor`` is the parameters at the end of the previous task and ``omega`` the importances of the earlier
tasks, accumulated (summed, or element-wise max). The penalty enters as its gradient
``strength * omega * (theta - anchor)``, added by the optax transformation :func:`importance_penalty` in
front of the base optimizer. ``omega``, ``anchor`` and ``strength`` live in the method state (checkpointed
with the run) and reach the compiled train step as extra arguments at every step, so one compilation
serves the whole task stream and a different strength needs no recompilation.

Estimators of one task's importance, each a pure, jit-compatible function whose result is a pytree shaped
like the parameters (float32):

* :func:`fisher_importance` (EWC, Kirkpatrick et al., *Overcoming catastrophic forgetting in neural
  networks*, PNAS 2017, Eq. 3): diagonal Fisher, the mean of squared per-example gradients of the
  log-likelihood (``jax.vmap`` over examples).
* :func:`mas_importance` (MAS, Aljundi et al., *Memory Aware Synapses*, ECCV 2018, Eq. 4): mean over
  examples of ``|d ||f(x)||_2^2 / d theta|``.
* SI (Zenke, Poole, Ganguli, *Continual Learning Through Synaptic Intelligence*, ICML 2017, Eq. 4-5):
  :func:`si_path_step` accumulates ``-g * delta_theta`` inside the train step; :func:`si_importance` turns
  the task's path integral into ``omega = w / ((theta_end - theta_start)^2 + xi)``.
* :func:`nai_importance` (NAI, Kim & Lee, *Continual Learning with Neuron Activation Importance*,
  arXiv 2107.12657, ICIAP 2021; this project's reading, docs/design.md): a neuron's importance is its mean
  post-nonlinearity activation over the task's data (and spatial positions), divided by its layer's mean;
  each weight and bias inherits the importance of the neuron it feeds (option: max of its input and output
  neurons). Activations come from the models' ``sow_activation`` hooks (``intermediates`` collection).

This module is pure maths: it knows nothing of the runner. The methods ``ewc``, ``mas``, ``si`` and
``nai`` that use it (their state, config keys and end-of-task updates) are in
:mod:`lwcl.methods.importance` (the family's state and bases) and one module each
(:mod:`lwcl.methods.ewc`, ...).
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from lwcl.core.model_fns import MASKED_LOGIT
from lwcl.models.mlp import ACTIVATION_PREFIX

ACCUMULATE = ("sum", "max")
NAI_NORMALIZE = ("layer_mean", "layer_max", "none")
NAI_WEIGHT_RULES = ("output", "max")
HEAD = "head"  # name of the task heads' parameter subtree (lwcl.models.build_model)

PyTree = Any


# -- the penalty -----------------------------------------------------------------------------------

def importance_penalty(strength: float = 1.0) -> optax.GradientTransformationExtraArgs:
  """Adds the gradient of the quadratic importance penalty to the updates.

  ``update(updates, state, params, *, omega, anchor, strength=None, **ignored)`` returns
  ``updates + s * omega * (params - anchor)`` (leaf by leaf, in each update's dtype), the gradient of
  ``(s / 2) * sum omega (params - anchor)^2``; ``s`` is the ``strength`` extra argument when given (a
  float32 scalar, e.g. from the method state, so changing it needs no recompilation), else the
  constructor's ``strength``. ``omega`` and ``anchor`` are pytrees shaped like ``params``, passed at every
  step and never closed over. Other extra arguments (for transformations chained beside it) are ignored.
  The state is ``optax.EmptyState``.

  Args:
    strength: the default penalty strength (lambda of EWC, c of SI), >= 0; the ``strength`` extra argument
      of ``update`` replaces it (the methods pass their state's).
  Raises:
    ValueError: ``strength`` < 0; or, from ``update``, ``params`` not given.
  """
  default = float(strength)
  if not default >= 0.0:
    raise ValueError(f"importance_penalty strength must be >= 0, got {strength}")

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, omega, anchor, strength=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("importance_penalty needs params: call update(updates, state, params, ...)")
    s = default if strength is None else strength
    new = jax.tree.map(lambda g, o, p, a: (g + s * o * (p - a)).astype(g.dtype),
                       updates, omega, params, anchor)
    return new, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def accumulate(total: PyTree, new: PyTree, rule: str = "sum") -> PyTree:
  """Combines the importances of earlier tasks with a new task's: ``'sum'`` or element-wise ``'max'``.

  Raises:
    ValueError: unknown ``rule``.
  """
  if rule == "sum":
    return jax.tree.map(jnp.add, total, new)
  if rule == "max":
    return jax.tree.map(jnp.maximum, total, new)
  raise ValueError(f"unknown accumulation rule '{rule}'; use one of {', '.join(ACCUMULATE)}")


# -- estimators ------------------------------------------------------------------------------------

def _chunked_sum(fn: Callable, examples: PyTree, mask: jax.Array, batch_size: int) -> PyTree:
  """``sum_k fn(chunk_k, mask_k)`` over chunks of ``batch_size`` examples (the last padded, mask 0)."""
  n = mask.shape[0]
  k = max(1, -(-n // batch_size))
  pad = k * batch_size - n

  def split(x):
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape((k, batch_size) + x.shape[1:])

  chunks, masks = jax.tree.map(split, examples), split(mask)
  first = jax.tree.map(lambda x: x[0], chunks)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, first, masks[0]))

  def body(total, xs):
    return jax.tree.map(jnp.add, total, fn(*xs)), None

  total, _ = jax.lax.scan(body, zeros, (chunks, masks))
  return total


def _count_and_mask(examples: PyTree, mask) -> tuple[jax.Array, jax.Array]:
  n = jax.tree.leaves(examples)[0].shape[0]
  mask = jnp.ones((n,), jnp.float32) if mask is None else jnp.asarray(mask, jnp.float32)
  return mask, jnp.maximum(jnp.sum(mask), 1.0)


def _masked_mean_of_per_example(per_example_fn: Callable, transform: Callable, params: PyTree,
                                examples: PyTree, mask, batch_size: int) -> PyTree:
  """``mean_n transform(grad per_example_fn(params, example_n))`` over the examples with mask 1."""
  mask, count = _count_and_mask(examples, mask)
  grad_fn = jax.vmap(jax.grad(per_example_fn), in_axes=(None, 0))

  def chunk(xs, m):
    grads = grad_fn(params, xs)
    return jax.tree.map(lambda g: jnp.tensordot(m, transform(g).astype(jnp.float32), axes=1), grads)

  total = _chunked_sum(chunk, examples, mask, batch_size)
  return jax.tree.map(lambda s: s / count, total)


def fisher_importance(nll_fn: Callable, params: PyTree, examples: PyTree, mask=None, *,
                      batch_size: int = 64) -> PyTree:
  """EWC's diagonal Fisher information (Kirkpatrick et al. 2017, Eq. 3; docs/design.md).

  ``F_i = (1 / N) sum_n (d nll(theta, x_n) / d theta_i)^2`` with per-example gradients from
  ``jax.vmap(jax.grad(nll_fn))``. With the true labels in ``nll_fn`` this is the empirical Fisher; with
  labels drawn from the model's predictive distribution, a Monte-Carlo estimate of the true Fisher.

  Args:
    nll_fn: ``nll_fn(params, example) -> scalar``, the negative log-likelihood of ONE example (leaves
      without the batch axis).
    params: the parameters (pytree of float arrays).
    examples: pytree of arrays with a leading example axis ``N`` (e.g. ``{'image': [N, H, W, C], ...}``).
    mask: float ``[N]`` (1 = counted, 0 = padding), or None for all.
    batch_size: examples per vmapped chunk (bounds memory: ``batch_size`` copies of the gradient).
  Returns:
    float32 pytree shaped like ``params``; all zeros when no example is counted.
  """
  return _masked_mean_of_per_example(nll_fn, jnp.square, params, examples, mask, batch_size)


def mas_importance(output_fn: Callable, params: PyTree, examples: PyTree, mask=None, *,
                   batch_size: int = 64) -> PyTree:
  """MAS importance (Aljundi et al. 2018, Eq. 4): ``(1 / N) sum_n |d ||f(x_n)||_2^2 / d theta|``.

  Args:
    output_fn: ``output_fn(params, example) -> f(x)``, the network's output vector for ONE example (for a
      task-incremental model: the logits of the task's outputs, the others set to 0).
    params, examples, mask, batch_size: as in :func:`fisher_importance`.
  Returns:
    float32 pytree shaped like ``params``.
  """
  def sq_norm(p, example):
    return jnp.sum(jnp.square(output_fn(p, example)))

  return _masked_mean_of_per_example(sq_norm, jnp.abs, params, examples, mask, batch_size)


def si_path_step(path: PyTree, params_before: PyTree, params_after: PyTree, grads: PyTree) -> PyTree:
  """One step of SI's path integral (Zenke et al. 2017, Eq. 4): ``w += -g * (theta_after - theta_before)``.

  ``grads`` is the gradient of the task loss alone (not of the penalty), as in the paper. All arguments
  are pytrees shaped like the parameters; returns the new ``path`` (same dtypes).
  """
  return jax.tree.map(lambda w, b, a, g: (w - g * (a - b)).astype(w.dtype),
                      path, params_before, params_after, grads)


def si_importance(path: PyTree, params_start: PyTree, params_end: PyTree, xi: float) -> PyTree:
  """SI's per-task importance (Zenke et al. 2017, Eq. 5): ``w / ((theta_end - theta_start)^2 + xi)``.

  Args:
    path: the task's path integral ``w`` (from :func:`si_path_step`).
    params_start, params_end: the parameters at the start and at the end of the task.
    xi: damping ``> 0`` (Zenke et al. use 1e-3).
  Returns:
    pytree shaped like the parameters. Not clipped: a parameter whose moves raised the loss gets a
    negative contribution, as in the paper.
  """
  return jax.tree.map(lambda w, s, e: w / (jnp.square(e - s) + xi), path, params_start, params_end)


def _activations(intermediates: dict, prefix: tuple = ()) -> list:
  """``[(path, array)]`` of the ``sow_activation`` entries, in the order the forward pass sowed them.

  ``path`` is the tuple of module names ending with the ``'activation:<layers>'`` key. A module sowing
  several times (called twice) yields the concatenation along the batch axis.
  """
  out = []
  for key, value in intermediates.items():
    if isinstance(key, str) and key.startswith(ACTIVATION_PREFIX):
      values = value if isinstance(value, tuple) else (value,)
      out.append((prefix + (key,), values[0] if len(values) == 1 else jnp.concatenate(values, 0)))
    elif isinstance(value, dict) or isinstance(value, flax.core.FrozenDict):
      out.extend(_activations(dict(value), prefix + (key,)))
  return out


def _normalize(values: jax.Array, rule: str, valid: jax.Array | None = None) -> jax.Array:
  """Divides a layer's neuron means by their mean (``layer_mean``) or max (``layer_max``) over the layer
  (over the ``valid`` entries when given); a layer whose statistic is 0 gets importance 0."""
  if rule == "none":
    return values
  valid = jnp.ones_like(values, bool) if valid is None else valid
  v = jnp.where(valid, values, 0.0)
  if rule == "layer_mean":
    stat = jnp.sum(v, -1, keepdims=True) / jnp.maximum(jnp.sum(valid, -1, keepdims=True), 1)
  elif rule == "layer_max":
    stat = jnp.max(v, -1, keepdims=True)
  else:
    raise ValueError(f"unknown NAI normalization '{rule}'; use one of {', '.join(NAI_NORMALIZE)}")
  return jnp.where(stat > 0, v / jnp.where(stat > 0, stat, 1.0), 0.0)


def _input_importance(prev: jax.Array | None, in_dim: int, where: str) -> jax.Array:
  """The importance of a kernel's ``in_dim`` inputs from the previous layer's neuron importance ``prev``
  ``[C]``: the same neurons (``in_dim == C``) or a flattened ``[H, W, C]`` map (index ``d`` is channel
  ``d % C``). Without a previous layer (the input is the image) zeros, so the 'max' rule keeps the output's
  importance."""
  if prev is None:
    return jnp.zeros((in_dim,), jnp.float32)
  c = prev.shape[0]
  if in_dim % c:
    raise ValueError(f"NAI weight rule 'max': {where} has {in_dim} inputs, not a multiple of the {c} "
                     "neurons of the previous layer; the network is not sequential (use 'output')")
  return jnp.tile(prev, in_dim // c)


def _inherit(leaf: jax.Array, out_imp: jax.Array, in_imp: jax.Array | None) -> jax.Array:
  """A parameter's importance: its output neuron's (last axis), or for kernels under the 'max' rule the
  max of input (axis -2) and output neuron importance."""
  imp = jnp.broadcast_to(out_imp, leaf.shape)
  if in_imp is not None and leaf.ndim >= 2:
    imp = jnp.maximum(imp, jnp.broadcast_to(in_imp[:, None], leaf.shape))
  return imp.astype(jnp.float32)


def nai_importance(forward_fn: Callable, params: PyTree, examples: PyTree, mask=None, *,
                   batch_size: int = 256, normalize: str = "layer_mean", weight_rule: str = "output",
                   include_heads: bool = False) -> PyTree:
  """NAI's parameter importance for one task (Kim & Lee 2021, arXiv 2107.12657; docs/design.md).

  A neuron is a unit (Dense) or an output channel (Conv) after its nonlinearity, as recorded by the
  models' ``sow_activation`` hooks. Its task importance is its mean activation over the examples (and over
  spatial positions), divided by the mean (``normalize='layer_mean'``) or max (``'layer_max'``) over the
  neurons of its layer, or left as is (``'none'``). Every parameter of the layers that produce a neuron
  (kernel slice, bias, BatchNorm scale and bias) inherits its importance (``weight_rule='output'``); with
  ``'max'`` a kernel weight takes the max of its output neuron's and its input neuron's importance (the
  previous sown layer in forward order; the first layer's inputs, pixels, count as 0) -- this needs a
  sequential network (MLP, ConvNet). The task heads (``params['head']``) get 0 unless ``include_heads``:
  then a head output's activation is its softmax probability, averaged over the examples that use that
  head and normalized over the outputs the task may predict. Layer-wise auxiliary heads (``aux_<k>``,
  whose classifier is ``params['aux_<k>']['head']``) are heads too: with ``include_heads`` and their
  logits from ``forward_fn``, their classifier gets importance the same way (by the ``'output'`` rule;
  hidden layers of ``mlp``/``cnn`` auxiliary heads record no activations and get 0).

  Args:
    forward_fn: ``forward_fn(params, batch) -> (logits, intermediates)`` for a batch (leading axis ``B``):
      masked logits ``[B, output_dim]`` (``MASKED_LOGIT`` where the task may not predict) -- or a dict
      ``{head name: masked logits}`` naming the top-level parameter entry of each head (``'head'``,
      ``'aux_0'``, ...) -- and the ``intermediates`` collection
      (``model.apply(..., mutable=['intermediates'])['intermediates']``).
    params: the parameters; ``examples``: pytree with leading axis ``N`` that includes ``'task'`` int32
      ``[N]`` when ``include_heads``; ``mask``: float ``[N]`` or None; ``batch_size``: examples per chunk.
    normalize, weight_rule, include_heads: see above.
  Returns:
    float32 pytree shaped like ``params``; parameters that feed no recorded neuron get 0.
  Raises:
    ValueError: unknown option; the model records no activations; an activation names layers that have
      no parameters, or whose sizes do not match (checked while tracing).
  """
  if normalize not in NAI_NORMALIZE:
    raise ValueError(f"unknown NAI normalization '{normalize}'; use one of {', '.join(NAI_NORMALIZE)}")
  if weight_rule not in NAI_WEIGHT_RULES:
    raise ValueError(f"unknown NAI weight rule '{weight_rule}'; use one of {', '.join(NAI_WEIGHT_RULES)}")
  mask, count = _count_and_mask(examples, mask)
  params = flax.core.unfreeze(params)
  paths: list = []  # activation paths in forward order, recorded while tracing
  head_names: list = []  # heads with logits, recorded while tracing

  def chunk(xs, m):
    logits, intermediates = forward_fn(params, xs)
    by_head = logits if isinstance(logits, dict) else {HEAD: logits}
    acts = _activations(flax.core.unfreeze(intermediates))
    if not acts:
      raise ValueError("the model records no activations; NAI needs the sow_activation hooks of "
                       "lwcl.models (intermediates entries named 'activation:<layers>')")
    if not paths:
      paths.extend(p for p, _ in acts)
    sums = []
    for _, a in acts:
      a = a.astype(jnp.float32)
      per_example = jnp.mean(a.reshape(a.shape[0], -1, a.shape[-1]), axis=1)  # over spatial positions
      sums.append(jnp.tensordot(m, per_example, axes=1))
    out = {"acts": sums}
    if include_heads:
      if not head_names:
        head_names.extend(by_head)
      out["heads"] = [_head_output_sums(_classifier(params, name), by_head[name], xs["task"], m)
                      for name in head_names]
    return out

  total = _chunked_sum(chunk, examples, mask, batch_size)
  neurons = [_normalize(s / count, normalize) for s in total["acts"]]

  omega = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  prev = None
  for path, imp in zip(paths, neurons):
    scope_params, scope_omega = params, omega
    for name in path[:-1]:
      scope_params, scope_omega = scope_params[name], scope_omega[name]
    layers = path[-1][len(ACTIVATION_PREFIX):].split("+")
    where = "/".join(path)
    for layer in layers:
      if layer not in scope_params:
        raise ValueError(f"activation {where} names layer '{layer}', which has no parameters")
      for leaf_name, leaf in scope_params[layer].items():
        if leaf.shape[-1] != imp.shape[0]:
          raise ValueError(f"activation {where} has {imp.shape[0]} neurons but {layer}/{leaf_name} has "
                           f"shape {leaf.shape}")
        in_imp = None
        if weight_rule == "max" and leaf.ndim >= 2:
          in_imp = _input_importance(prev, leaf.shape[-2], f"{'/'.join(path[:-1])}/{layer}/{leaf_name}")
        scope_omega[layer][leaf_name] = _inherit(leaf, imp, in_imp)
    prev = imp

  for name, (out_sum, out_count, out_valid) in zip(head_names, total.get("heads", [])):
    mean = out_sum / jnp.maximum(out_count, 1.0)[:, None]  # [H, out]
    imp = _normalize(mean, normalize, out_valid > 0)
    heads, head_omega = _classifier(params, name), _classifier(omega, name)
    kernel = heads["kernel"]  # [H, D, out]
    head_imp = jnp.broadcast_to(imp[:, None, :], kernel.shape)
    if weight_rule == "max" and name == HEAD:
      in_imp = _input_importance(prev, kernel.shape[1], f"{HEAD}/kernel")
      head_imp = jnp.maximum(head_imp, in_imp[None, :, None])
    head_omega["kernel"] = head_imp.astype(jnp.float32)
    head_omega["bias"] = jnp.broadcast_to(imp, heads["bias"].shape).astype(jnp.float32)
  return omega


def _classifier(tree: dict, name: str) -> dict:
  """The ``TaskHeads`` parameters (``kernel`` ``[H, D, out]``, ``bias`` ``[H, out]``) of head ``name``:
  ``tree['head']``, or an auxiliary head's ``tree['aux_<k>']['head']``."""
  node = tree[name]
  return node if name == HEAD else node[HEAD]


def _head_output_sums(heads: dict, logits: jax.Array, task: jax.Array, m: jax.Array) -> tuple:
  """Per head slot ``[H, out]``: masked sums of softmax probabilities, example counts ``[H]``, and how many
  examples may predict each output (``[H, out]``), over one chunk."""
  num_heads = heads["kernel"].shape[0]
  slot = jnp.clip(task, 0, num_heads - 1) if num_heads > 1 else jnp.zeros_like(task)
  use = jax.nn.one_hot(slot, num_heads) * m[:, None]  # [B, H]
  probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
  return use.T @ probs, jnp.sum(use, 0), use.T @ (logits > MASKED_LOGIT / 2).astype(jnp.float32)
