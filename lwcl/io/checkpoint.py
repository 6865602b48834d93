"""Checkpointing of the whole run state with orbax's ``CheckpointManager``.

A checkpoint holds two items: ``state``, a pytree of arrays (train state, accuracy matrix so far, initial
accuracies, learning curves, progress counters) saved with ``StandardSave``, and ``meta``, JSON (the
experiment's result-relevant config, the task index and step inside the task, timing). Orbax writes each
checkpoint to a temporary folder and renames it when complete, so a run killed while saving leaves the
previous checkpoint intact; a checkpoint is never written over.

What a restore trusts is checked: ``meta`` carries the SHA-256 of the saved state (:func:`state_checksum`),
recomputed on the restored state, and the SHA-256 of ``meta`` itself (:func:`meta_checksum`, over every other
key of ``meta``, the state's checksum included), recomputed on the restored ``meta`` before anything in it is
used. A damaged byte anywhere (a flipped bit that orbax or JSON reads without complaint: ``"task": 0``
read as ``"task": 1``) is refused as corrupt, naming the newest older checkpoint that is intact. ``meta``
also carries the data set's fingerprint (:func:`lwcl.data.sources.dataset_fingerprint`), so a run resumed
on other data is refused as a different experiment. A checkpoint of an older format (before format 5 the
metadata was not covered) is refused with one line: its metadata cannot be verified.
A checkpoint lacking an entry of the state this lwcl records (e.g. a class-incremental run's Task-IL
accuracy matrix, from an lwcl that did not record it) is refused as an older lwcl's, never resumed with the
entry empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from lwcl.core.options import Option
from lwcl.data import sources
from lwcl.errors import CheckpointError
from lwcl.io import safe_files

OPTIONS = (
    Option("checkpoint.every_steps", 500, "steps between checkpoints (also at every task end); 0 = task ends "
           "only", minimum=0),
    Option("checkpoint.keep", 2, "checkpoints kept (the newest)", minimum=1),
)

# Layout of the saved state. 1: method states as dicts, read-out arrays beside the accuracy matrix (lwcl
# before the methods package); 2: typed method states, ``record.readouts``; 3: ``record.epoch_acc`` and
# ``record.method_report`` (GEM's solver counts in its optimizer state), the state's checksum in ``meta``.
# 4: the method states of SI and GEM hold their float hyper-parameters (si_xi, gem_margin; issue 28).
# Within 4, class-incremental runs add ``record.task_il_R`` (the Task-IL accuracy matrix); other runs' states
# are unchanged. A checkpoint lacking an entry the run's state has is refused as written by an older lwcl
# (:meth:`RunCheckpointer.restore`; orbax itself fails on the tree's structure, or restores the entry as None).
# 5: ``meta`` carries its own checksum, ``meta_sha256`` (issue 32): format 4's metadata (task, step) was unchecked.
FORMAT_VERSION = 5
# Entries of the run state added within a format version, in words (for the message refusing a checkpoint
# that lacks one).
ADDED_ENTRIES = {"record.task_il_R": "the Task-IL accuracy matrix of class-incremental runs"}


def config_differences(a: dict, b: dict, prefix: str = "", defaults: dict | None = None) -> list:
  """Dotted keys whose values differ between two config dicts. Tuples and lists compare equal.

  A key present in only one of them was added to (or removed from) lwcl after the other was written: the
  config without it ran as the key's default, which keeps the earlier behaviour. With ``defaults`` (``{dotted
  key: default}``, every declared option's: :func:`lwcl.config.options.defaults`) such a key is a
  difference when its value is not its default (e.g. a checkpoint written before ``optimizer.grad_clip_value``
  existed, resumed with ``--config.optimizer.grad_clip_value=1``: its steps ran unclipped); otherwise, and
  for a key ``defaults`` lacks, it is not.
  """
  keys = []
  for k in sorted(set(a) | set(b)):
    key = prefix + k
    if k in a and k in b:
      va, vb = a[k], b[k]
      if isinstance(va, dict) and isinstance(vb, dict):
        keys += config_differences(va, vb, f"{key}.", defaults)
      elif _plain(va) != _plain(vb):
        keys.append(key)
    elif defaults:
      keys += [p for p, v in _leaves(a[k] if k in a else b[k], key)
               if p in defaults and _plain(v) != _plain(defaults[p])]
  return keys


def _leaves(value, key: str) -> list:
  """``[(dotted key, value)]`` of the leaves of a config entry (``value`` itself when not a dict)."""
  if not isinstance(value, dict):
    return [(key, value)]
  return [leaf for k in sorted(value) for leaf in _leaves(value[k], f"{key}.{k}")]


def _plain(v):
  return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def _local(leaf):
  """A leaf this process can copy to the host (a replicated array of a multi-process run: its own copy)."""
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and leaf.is_fully_replicated:
    return leaf.addressable_data(0)
  return leaf


def state_checksum(tree: Any) -> str:
  """SHA-256 (64 hex digits) of a state pytree as saved: every leaf's key path, dtype, shape and bytes, in
  ``jax.tree_util`` order.

  Args:
    tree: a pytree of arrays (the ``flax.serialization.to_state_dict`` of a run state); device arrays are
      copied to the host.
  Returns:
    str: the hex digest; equal trees (same structure, dtypes, shapes, bytes) give equal digests.
  """
  digest = hashlib.sha256()
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  host = jax.device_get([_local(leaf) for _, leaf in flat])  # one transfer for all leaves
  for (path, _), leaf in zip(flat, host):
    a = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|".encode())
    digest.update(a.tobytes())
  return digest.hexdigest()


def meta_checksum(meta: dict) -> str:
  """SHA-256 (64 hex digits) of a checkpoint's metadata: every key but ``meta_sha256``, as canonical JSON
  (sorted keys, no spaces; tuples as lists), so the dict saved and the dict JSON reads back agree.

  Args:
    meta: the metadata dict (JSON-compatible values: numbers, non-finite ones included, strings, booleans,
      None, lists, dicts).
  Returns:
    str: the hex digest.
  Raises:
    TypeError: a value JSON cannot hold (an object).
  """
  body = {k: v for k, v in meta.items() if k != "meta_sha256"}
  text = json.dumps(body, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


class RunCheckpointer:
  """Saves and restores one experiment's run state under ``directory``.

  Args:
    directory: the checkpoint folder (created when missing).
    keep: how many checkpoints to keep (older ones are removed after a newer one is complete).
    config: the result-relevant part of the experiment's config, as a JSON-compatible dict; stored with
      every checkpoint, and a checkpoint whose stored config differs is refused (:func:`config_differences`).
    data_fingerprint: the fingerprint of the data set the run trains and tests on
      (:func:`lwcl.data.sources.dataset_fingerprint`), or None (not stored, not checked); stored with every
      checkpoint, and a checkpoint that stores another one is refused.
    defaults: every option's default (``{dotted key: value}``, :func:`lwcl.config.options.defaults`): a key
      the stored config lacks (written before lwcl had it) must hold its default here, or the checkpoint is
      refused; None: such keys are not compared.
  Raises:
    CheckpointError: the folder cannot be opened or created, or ``directory`` is a file.
    LwclError: ``directory`` is a symbolic link (:mod:`lwcl.io.safe_files`; orbax would write through it).
  """

  def __init__(self, directory: str, keep: int, config: dict, data_fingerprint: str | None = None,
               defaults: dict | None = None):
    self.directory = os.path.abspath(directory)
    self.config = config
    self.defaults = defaults
    self.data_fingerprint = data_fingerprint
    safe_files.refuse_link(self.directory)
    if os.path.exists(self.directory) and not os.path.isdir(self.directory):
      raise CheckpointError(f"{self.directory} is a file, not a folder, where lwcl keeps this run's checkpoints; "
                            "move the file away or pass another --workdir")
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
    ``flax.serialization.to_state_dict``) and ``meta`` (a JSON-compatible dict) at ``step``, with the
    state's :func:`state_checksum`, the data fingerprint and, last, :func:`meta_checksum` in ``meta``;
    blocks until written.

    Raises:
      LwclError: the step's folder or orbax's temporary folder for it (``<step>.orbax-checkpoint-tmp...``)
        is a symbolic link (orbax would write into, or remove, its target); nothing is written.
    """
    for name in sorted(os.listdir(self.directory)):
      if name == str(step) or name.startswith(f"{step}.orbax-checkpoint-tmp"):
        safe_files.refuse_link(os.path.join(self.directory, name))
    tree = flax.serialization.to_state_dict(state)
    meta = dict(meta, config=self.config, format=FORMAT_VERSION, state_sha256=state_checksum(tree))
    if self.data_fingerprint is not None:
      meta["data_fingerprint"] = self.data_fingerprint
    meta["meta_sha256"] = meta_checksum(meta)
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                     meta=ocp.args.JsonSave(meta)))
    self.manager.wait_until_finished()

  def restore(self, target: Any) -> tuple[Any, dict] | None:
    """Restores the newest checkpoint into the structure of ``target`` and verifies it.

    Args:
      target: a pytree with the structure, shapes and dtypes of the saved state (e.g. a freshly
        initialized run state).
    Returns:
      ``(state, meta)``, or None when there is no checkpoint.
    Raises:
      CheckpointError: the checkpoint belongs to another experiment (another config, or other data), is in
        another format version (:data:`FORMAT_VERSION`; older ones are not covered by a metadata checksum),
        lacks an entry of ``target`` (written by an lwcl that did not record it: :data:`ADDED_ENTRIES`), or is
        corrupt (unreadable; the restored metadata's :func:`meta_checksum` or the restored state's
        :func:`state_checksum` differs from the one saved with it; or incompatible). A corrupt
        checkpoint's message names the newest older checkpoint that restores intact, if any; nothing is
        moved or deleted.
    """
    step = self.latest_step()
    if step is None:
      return None
    try:
      meta = self._meta(step)
      self._check_identity(meta)
      return self._state(step, meta, target), meta
    except _Corrupt as e:
      raise CheckpointError(f"checkpoint {self._path(step)} is corrupt ({e}); {self._fallback(step, target)}"
                            ) from None

  def _path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _meta(self, step: int) -> dict:
    """Step ``step``'s metadata, its checksum verified when it has one (:meth:`_check_identity` refuses a
    checkpoint of this format without one); raises :class:`_Corrupt`."""
    try:
      meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # pylint: disable=broad-except
      raise _Corrupt(f"its metadata is unreadable: {type(e).__name__}") from None
    if not isinstance(meta, dict):
      raise _Corrupt(f"its metadata is not a JSON object but {type(meta).__name__}")
    if "meta_sha256" in meta:
      try:
        intact = meta_checksum(meta) == meta["meta_sha256"]
      except (TypeError, ValueError):
        intact = False
      if not intact:
        raise _Corrupt("metadata checksum mismatch")
    return meta

  def _check_identity(self, meta: dict) -> None:
    """Refuses a checkpoint of another format version, config or data set (raises CheckpointError), and one
    of this format whose metadata has no checksum (raises :class:`_Corrupt`)."""
    found = meta.get("format", 1)
    if not isinstance(found, int) or isinstance(found, bool):
      raise _Corrupt(f"its format is {found!r}, not a version number")
    if found != FORMAT_VERSION:
      raise CheckpointError(f"{self.directory} holds a checkpoint in format {found}, written by "
                            f"{'an older' if found < FORMAT_VERSION else 'a newer'} lwcl; this version "
                            f"reads format {FORMAT_VERSION}. Finish that run with the lwcl version that "
                            "started it, or use a new --workdir")
    if "meta_sha256" not in meta:  # format 5 always writes it: a damaged key
      raise _Corrupt("its metadata has no checksum")
    diff = config_differences(meta.get("config") or {}, self.config, defaults=self.defaults)
    if diff or "config" not in meta:
      raise CheckpointError(f"{self.directory} holds a checkpoint of a different experiment (config "
                            f"differs in {', '.join(diff[:5]) or 'unknown keys'}); use a new --workdir or "
                            "the original config")
    stored = meta.get("data_fingerprint")
    if stored is not None and self.data_fingerprint is not None and stored != self.data_fingerprint:
      raise CheckpointError(f"{self.directory} holds a checkpoint of a different experiment (trained on "
                            f"other data: data fingerprint {str(stored)[:16]}, the data loaded now "
                            f"{self.data_fingerprint[:16]}); point "
                            f"{sources.location_key(self.config.get('data') or {})} (and data.source) at the "
                            "run's original data, or use a new --workdir")

  def _state(self, step: int, meta: dict, target: Any) -> Any:
    """Step ``step``'s state in ``target``'s structure, its checksum verified; raises :class:`_Corrupt`, or
    :class:`CheckpointError` when the checkpoint lacks an entry of ``target`` (:meth:`_check_entries`)."""
    tree = flax.serialization.to_state_dict(target)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(tree)))["state"]
      state = flax.serialization.from_state_dict(target, restored)
    except Exception as e:  # pylint: disable=broad-except
      self._check_entries(step, _missing_entries(tree, self._saved_tree(step)))  # orbax refuses a missing entry
      msg = str(e).splitlines()[0][:200] if str(e) else ""
      raise _Corrupt(f"unreadable or incompatible with this version of lwcl: {type(e).__name__}: {msg}"
                     ) from None
    self._check_entries(step, _missing_entries(tree, restored))  # or restores it as None
    if state_checksum(restored) != meta.get("state_sha256"):  # meta verified: the key is there
      raise _Corrupt("checksum mismatch")
    return state

  def _saved_tree(self, step: int) -> Any:
    """The structure of step ``step``'s saved state (orbax's tree metadata: a leaf per saved array), or None
    when it cannot be read."""
    try:
      found = ocp.StandardCheckpointHandler().metadata(pathlib.Path(self._path(step), "state"))
    except Exception:  # pylint: disable=broad-except
      return None
    return getattr(found, "tree", found)

  def _check_entries(self, step: int, missing: list) -> None:
    """Refuses step ``step``'s checkpoint when it lacks entries of the run's state (``missing``, dotted
    paths): written by an lwcl that did not record them (:data:`ADDED_ENTRIES`), not corrupt; the tasks
    already trained cannot be evaluated again for them, so the run is not resumed with them empty."""
    if not missing:
      return
    names = [f"{m} ({ADDED_ENTRIES[m]})" if m in ADDED_ENTRIES else m for m in missing[:3]]
    raise CheckpointError(f"checkpoint {self._path(step)} was written by an older lwcl: it lacks "
                          f"{', '.join(names)}{' ...' if len(missing) > 3 else ''}, which this version records "
                          "and cannot recompute for the tasks already trained; finish that run with the lwcl "
                          "version that started it, or use a new --workdir")

  def _fallback(self, step: int, target: Any) -> str:
    """The fix for a corrupt checkpoint at ``step``: which older checkpoint restores intact (if any) and how
    to resume from it; nothing is moved or deleted here."""
    away = os.path.join(os.path.dirname(self.directory), f"corrupt-checkpoint-{step}")
    move = f"move it out of {self.directory} (e.g. mv {self._path(step)} {away})"
    for older in sorted((s for s in self.manager.all_steps() if s < step), reverse=True):
      try:
        meta = self._meta(older)
        self._check_identity(meta)
        self._state(older, meta, target)
      except (CheckpointError, _Corrupt):  # another experiment's, or corrupt too
        continue
      return f"checkpoint {self._path(older)} is intact: {move} and rerun to resume from it"
    return f"no older checkpoint is intact: {move} and rerun to start over, or use a new --workdir"

  def close(self) -> None:
    self.manager.close()


def _missing_entries(target: Any, saved: Any) -> list:
  """The dotted paths of ``target``'s leaves that ``saved`` (a checkpoint's state as orbax restored it into
  ``target``'s structure, where an entry the checkpoint lacks is None, or its tree metadata) does not hold;
  none when ``saved`` is None (unknown)."""
  if saved is None:
    return []
  have = {jax.tree_util.keystr(p, simple=True, separator=".")
          for p, _ in jax.tree_util.tree_flatten_with_path(saved)[0]}
  return [name for name in (jax.tree_util.keystr(p, simple=True, separator=".")
                            for p, _ in jax.tree_util.tree_flatten_with_path(target)[0]) if name not in have]


class _Corrupt(Exception):
  """A checkpoint's state cannot be restored intact (the message says why)."""
