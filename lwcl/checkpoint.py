"""Checkpointing of the whole run state with orbax's ``CheckpointManager``.

A checkpoint holds two items: ``state``, a pytree of arrays (train state, accuracy matrix so far, initial
accuracies, learning curves, progress counters) saved with ``StandardSave``, and ``meta``, JSON (the
experiment's result-relevant config, the task index and step inside the task, timing). Orbax writes each
checkpoint to a temporary folder and renames it when complete, so a run killed while saving leaves the
previous checkpoint intact; a checkpoint is never written over.
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.serialization
import orbax.checkpoint as ocp

from lwcl.errors import CheckpointError

# Layout of the saved state. 1: method states as dicts, read-out arrays beside the accuracy matrix (lwcl
# before the methods package); 2: typed method states, ``record.readouts``.
FORMAT_VERSION = 2


def config_differences(a: dict, b: dict, prefix: str = "") -> list:
  """Dotted keys present in both config dicts whose values differ.

  A key present in only one of them is not a difference: it was added to (or removed from) lwcl after the
  other was written, and its default keeps the earlier behaviour. Tuples and lists compare equal.
  """
  keys = []
  for k in sorted(set(a) & set(b)):
    va, vb = a[k], b[k]
    if isinstance(va, dict) and isinstance(vb, dict):
      keys += config_differences(va, vb, f"{prefix}{k}.")
    elif _plain(va) != _plain(vb):
      keys.append(prefix + k)
  return keys


def _plain(v):
  return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


class RunCheckpointer:
  """Saves and restores one experiment's run state under ``directory``.

  Args:
    directory: the checkpoint folder (created when missing).
    keep: how many checkpoints to keep (older ones are removed after a newer one is complete).
    config: the result-relevant part of the experiment's config, as a JSON-compatible dict; stored with
      every checkpoint, and a checkpoint whose stored config differs in a common key is refused.
  """

  def __init__(self, directory: str, keep: int, config: dict):
    self.directory = os.path.abspath(directory)
    self.config = config
    options = ocp.CheckpointManagerOptions(max_to_keep=max(1, keep), create=True,
                                           enable_async_checkpointing=False)
    try:
      self.manager = ocp.CheckpointManager(self.directory, options=options)
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"cannot open checkpoint folder {self.directory} ({e}); check permissions "
                            "or choose another --workdir") from None

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None."""
    return self.manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves ``state`` (a pytree; flax dataclasses and optax states are converted with
    ``flax.serialization.to_state_dict``) and ``meta`` at ``step``; blocks until written."""
    meta = dict(meta, config=self.config, format=FORMAT_VERSION)
    tree = flax.serialization.to_state_dict(state)
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                     meta=ocp.args.JsonSave(meta)))
    self.manager.wait_until_finished()

  def restore(self, target: Any) -> tuple[Any, dict] | None:
    """Restores the newest checkpoint into the structure of ``target``.

    Args:
      target: a pytree with the structure, shapes and dtypes of the saved state (e.g. a freshly
        initialized run state).
    Returns:
      ``(state, meta)``, or None when there is no checkpoint.
    Raises:
      CheckpointError: the checkpoint belongs to another experiment, is in another format version
        (:data:`FORMAT_VERSION`), or is corrupt or incompatible.
    """
    step = self.latest_step()
    if step is None:
      return None
    path = os.path.join(self.directory, str(step))
    try:
      meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"checkpoint {path} is corrupt ({type(e).__name__}); move it away to resume "
                            "from an older one, or use a new --workdir") from None
    found = meta.get("format", 1)
    if found != FORMAT_VERSION:
      raise CheckpointError(f"{self.directory} holds a checkpoint in format {found}, written by "
                            f"{'an older' if found < FORMAT_VERSION else 'a newer'} lwcl; this version "
                            f"reads format {FORMAT_VERSION}. Finish that run with the lwcl version that "
                            "started it, or use a new --workdir")
    diff = config_differences(meta.get("config") or {}, self.config)
    if diff or "config" not in meta:
      raise CheckpointError(f"{self.directory} holds a checkpoint of a different experiment (config "
                            f"differs in {', '.join(diff[:5]) or 'unknown keys'}); use a new --workdir or "
                            "the original config")
    abstract = flax.serialization.to_state_dict(target)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))["state"]
      state = flax.serialization.from_state_dict(target, restored)
    except Exception as e:  # pylint: disable=broad-except
      msg = str(e).splitlines()[0][:200] if str(e) else ""
      raise CheckpointError(f"checkpoint {path} is corrupt or incompatible with this version of lwcl "
                            f"({type(e).__name__}: {msg}); move it away to resume from an older one, or "
                            "use a new --workdir") from None
    return state, meta

  def close(self) -> None:
    self.manager.close()


def read_json(path: str) -> dict | None:
  """A JSON file's content, or None if it does not exist or is not valid JSON."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None
