"""Parameter groups: which leaves of a parameter pytree form one "layer" for a per-layer rule.

A per-layer method (LGD's projection, A-GEM/GEM per local block) applies its rule independently to each
group of leaves (docs/design.md, "Layers are parameter groups"). A grouping is one of

* ``"layer"``: the leaves under one parent path, i.e. one Flax module (kernel + bias, BatchNorm scale +
  bias);
* ``"block"``: the leaves under one top-level key (one residual block, or the head);
* ``"network"``: all leaves as one group;
* a callable ``f(path, leaf) -> hashable`` labelling each leaf, ``path`` being the tuple of key names
  from the root (e.g. ``('blocks_0', 'Dense_0', 'kernel')``); leaves with equal labels form a group.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

import jax

Grouping = str | Callable[[tuple, jax.Array], Hashable]
GROUPINGS = ("layer", "block", "network")


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def check_grouping(grouping: Grouping) -> None:
  """Raises ValueError unless ``grouping`` is one of :data:`GROUPINGS` or a callable."""
  if not callable(grouping) and grouping not in GROUPINGS:
    raise ValueError(f"grouping must be one of {', '.join(GROUPINGS)} or a callable, got {grouping!r}")


def group_labels(tree: Any, grouping: Grouping) -> list:
  """One hashable label per leaf of ``tree`` (in ``jax.tree_util.tree_leaves`` order).

  Raises:
    ValueError: unknown grouping.
  """
  check_grouping(grouping)
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  paths = [tuple(_key_name(k) for k in path) for path, _ in flat]
  if callable(grouping):
    return [grouping(path, leaf) for path, (_, leaf) in zip(paths, flat)]
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
