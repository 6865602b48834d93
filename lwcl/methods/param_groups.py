"""Parameter groups: which leaves of a parameter pytree form one "layer" for a per-layer rule.

A per-layer method (LGD's projection, A-GEM/GEM per local block) applies its rule independently to each
group of leaves (docs/design.md, "Layers are parameter groups"). A grouping is one of

* ``"layer"``: the leaves under one parent path, i.e. one Flax module (kernel + bias, BatchNorm scale +
  bias);
* ``"block"``: the leaves under one top-level key (one residual block, or the head);
* ``"network"``: all leaves as one group;
* ``"tensors:N"``: consecutive runs of ``N`` leaves (parameter tensors) in the network's definition order
  (:func:`definition_order`), the grouping of the LGD authors' code (``tensors:5``; Tang et al., CVPR 2021,
  ``tangshixiang/grad-cl``, ``model/newblockgem_group5_pca_partmargin.py``);
* a callable ``f(path, leaf) -> hashable`` labelling each leaf, ``path`` being the tuple of key names
  from the root (e.g. ``('blocks_0', 'Dense_0', 'kernel')``); leaves with equal labels form a group.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Hashable

import jax

Grouping = str | Callable[[tuple, jax.Array], Hashable]
GROUPINGS = ("layer", "block", "network")
TENSORS_PREFIX = "tensors:"

# Leaf names in a module's definition order: PyTorch's parameter order (``weight`` before ``bias``), which
# is also the order Flax's Dense, Conv and BatchNorm create them in.
_LEAF_RANK = {"kernel": 0, "scale": 0, "embedding": 0, "bias": 1}
_NORM = re.compile(r"(BatchNorm|LayerNorm|GroupNorm|RMSNorm)_(\d+)")
_AUTO = re.compile(r"[A-Z]\w*_\d+")  # a Flax auto-name: the class name and a per-class counter
_TOP = re.compile(r"(blocks|aux)_(\d+)")


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _paths(tree: Any) -> list[tuple]:
  return [tuple(_key_name(k) for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def tensors_per_group(grouping: Grouping) -> int | None:
  """``N`` of a ``'tensors:N'`` grouping; None for any other grouping.

  Raises:
    ValueError: a ``'tensors:'`` grouping whose ``N`` is not an integer ``>= 1``.
  """
  if not isinstance(grouping, str) or not grouping.startswith(TENSORS_PREFIX):
    return None
  n = grouping[len(TENSORS_PREFIX):].strip()
  if not re.fullmatch(r"[0-9]+", n) or int(n) < 1:
    raise ValueError(f"grouping '{grouping}' needs an integer N >= 1 after 'tensors:' (e.g. tensors:5)")
  return int(n)


def check_grouping(grouping: Grouping) -> None:
  """Raises ValueError unless ``grouping`` is one of :data:`GROUPINGS`, ``'tensors:N'`` (``N >= 1``) or a
  callable."""
  if callable(grouping) or grouping in GROUPINGS or tensors_per_group(grouping) is not None:
    return
  raise ValueError(f"grouping must be one of {', '.join(GROUPINGS)}, tensors:N or a callable, got "
                   f"{grouping!r}")


def _natural(name: str) -> tuple:
  """Sort key comparing digit runs as numbers: ``blocks_2`` before ``blocks_10``."""
  return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t)


def _top_rank(name: str) -> tuple:
  """Top level of an lwcl network: ``blocks_<i>`` by ``i``, ``head``, ``aux_<k>`` by ``k``, then the rest."""
  m = _TOP.fullmatch(name)
  if m:
    return (0 if m.group(1) == "blocks" else 2, int(m.group(2))), ()
  return ((1, 0), ()) if name == "head" else ((3, 0), _natural(name))


def _module_order(names: list[str]) -> list[str]:
  """The submodules of one module in definition order (see :func:`definition_order`)."""
  norms = sorted((n for n in names if _NORM.fullmatch(n)), key=lambda n: int(_NORM.fullmatch(n).group(2)))
  layers = [n for n in names if not _NORM.fullmatch(n)]
  layers = (sorted((n for n in layers if _AUTO.fullmatch(n)), key=_natural)
            + sorted((n for n in layers if not _AUTO.fullmatch(n)), key=_natural))
  out = []
  for i, layer in enumerate(layers):
    out += [layer] + norms[i:i + 1]
  return out + norms[len(layers):]


def definition_order(tree: Any) -> list[int]:
  """Indices of ``tree``'s leaves (``jax.tree_util.tree_leaves`` order) in the network's definition order.

  Flax and ``jax.tree_util`` order a parameter dict by key name, so ``blocks_10`` comes before
  ``blocks_2`` and a module's ``BatchNorm_0`` before its ``Conv_0``. The definition order is the order in
  which lwcl's modules create their parameters (the order of the dicts ``Module.init`` returns, before any
  ``jax`` transformation sorts them; PyTorch's ``parameters()`` order for the same network):

  * top level: ``blocks_<i>`` by ``i`` (the feature extractor, :class:`lwcl.models.network.Network`), then
    ``head``, then the layer-wise auxiliary heads ``aux_<k>`` by ``k`` (added after the network by
    :class:`lwcl.layerwise.fns.LayerwiseFns`), then any other key in natural order;
  * inside a module: its own leaves first, weight-like (``kernel``, ``scale``, ``embedding``) before
    ``bias`` before any other (by name), as ``nn.Linear`` / ``nn.Conv2d`` / ``nn.BatchNorm2d`` create
    ``weight`` then ``bias``; then its submodules: Flax's auto-named layers (``Conv_0``, ``Dense_1``) by
    their counter, then explicitly named ones (``shortcut_conv``, ``head``) in natural order, each
    followed by its normalization layer: the ``k``-th ``BatchNorm_k`` (``LayerNorm``, ``GroupNorm``,
    ``RMSNorm``) right after the ``k``-th of those layers (lwcl's modules always create a layer's
    BatchNorm right after it, e.g. ``Conv_0, BatchNorm_0, Conv_1, BatchNorm_1, shortcut_conv,
    BatchNorm_2`` in a residual block); normalization layers beyond the number of layers come last.

  Sequence keys (lists) are in index order. Two auto-named layer types in one module (``Conv_1`` and
  ``Dense_0``) are ordered by name, not by creation: no lwcl module interleaves two such types.

  Args:
    tree: a parameter pytree (e.g. Flax ``params``, or gradients shaped like them).
  Returns:
    A permutation of ``range(num_leaves)``: ``order[j]`` is the index of the ``j``-th leaf to be defined.
  """
  paths = _paths(tree)
  leaves = set(paths)
  children: dict[tuple, list[str]] = {}
  for path in paths:
    for d in range(len(path)):
      names = children.setdefault(path[:d], [])
      if path[d] not in names:
        names.append(path[d])
  position: dict[tuple, int] = {}
  for prefix, names in children.items():
    own = sorted((n for n in names if prefix + (n,) in leaves),
                 key=lambda n: (_LEAF_RANK.get(n, 2), _natural(n)))
    subs = [n for n in names if prefix + (n,) not in leaves]
    subs = sorted(subs, key=_top_rank) if not prefix else _module_order(subs)
    position.update({prefix + (n,): i for i, n in enumerate(own + subs)})
  rank = [tuple(position[path[:d + 1]] for d in range(len(path))) for path in paths]
  return sorted(range(len(paths)), key=lambda i: rank[i])


def group_labels(tree: Any, grouping: Grouping) -> list:
  """One hashable label per leaf of ``tree`` (in ``jax.tree_util.tree_leaves`` order).

  Raises:
    ValueError: unknown grouping (or ``tensors:N`` with a bad ``N``).
  """
  check_grouping(grouping)
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  paths = [tuple(_key_name(k) for k in path) for path, _ in flat]
  if callable(grouping):
    return [grouping(path, leaf) for path, (_, leaf) in zip(paths, flat)]
  n = tensors_per_group(grouping)
  if n is not None:
    labels = [None] * len(paths)
    for j, i in enumerate(definition_order(tree)):
      labels[i] = ("tensors", j // n)
    return labels
  if grouping == "network":
    return [()] * len(paths)
  if grouping == "block":
    return [path[:1] for path in paths]
  return [path[:-1] for path in paths]


def parameter_groups(tree: Any, grouping: Grouping) -> list[list[int]]:
  """The groups of ``tree``'s leaves: lists of leaf indices, in order of first appearance."""
  order: dict = {}
  for i, label in enumerate(group_labels(tree, grouping)):
    order.setdefault(label, []).append(i)
  return list(order.values())
