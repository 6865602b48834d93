"""Dotted config keys (``method.strength``) of an ``ml_collections.ConfigDict`` or a nested dict: read, set,
remove, and the closest existing key to a misspelled one. The one implementation every caller uses (config
files, checks, sweeps, results).
"""

from __future__ import annotations

import difflib


def close_key(config, key: str) -> str | None:
  """The dotted key of ``config`` closest to a misspelled ``key`` (``trian.epochs_per_task`` ->
  ``train.epochs_per_task``, ``train.epochs`` -> ``train.epochs_per_task``), or None."""
  node, found = config, []
  for part in key.split("."):
    if not hasattr(node, "keys"):
      return None
    names = list(node.keys())
    match = [part] if part in names else (difflib.get_close_matches(part, names, n=1, cutoff=0.5) or
                                          [n for n in names if n.startswith(part)])
    if not match:
      return None
    found.append(match[0])
    node = node[match[0]]
  return ".".join(found)


def _parent(config, key: str):
  """``(node, leaf)``: the section holding dotted ``key`` and the key's last part.

  Raises:
    KeyError: a section on the way does not exist (names the dotted prefix).
  """
  *parents, leaf = key.split(".")
  node = config
  for i, p in enumerate(parents):
    try:
      node = node[p]
    except (KeyError, AttributeError, TypeError):
      raise KeyError(".".join(parents[: i + 1])) from None
  return node, leaf


def get_key(config, key: str):
  """The value of dotted ``key`` (``'method.strength'``) in a config or nested dict.

  Raises:
    KeyError: no such key (the message names it).
  """
  node, leaf = _parent(config, key)
  try:
    return node[leaf]
  except (KeyError, AttributeError, TypeError):
    raise KeyError(key) from None


def set_key(config, key: str, value) -> None:
  """Sets dotted ``key`` of a config (or nested dict) to ``value``.

  On a locked ``ml_collections.ConfigDict`` the key must exist and ``value`` must have its type (the
  ConfigDict's own checks raise ``KeyError`` / ``TypeError``).

  Raises:
    KeyError: a section on the way does not exist.
  """
  node, leaf = _parent(config, key)
  node[leaf] = value


def pop_key(tree: dict, key: str) -> None:
  """Removes dotted ``key`` from a nested dict when present (a missing section or key is not an error)."""
  try:
    node, leaf = _parent(tree, key)
  except KeyError:
    return
  if isinstance(node, dict):
    node.pop(leaf, None)
