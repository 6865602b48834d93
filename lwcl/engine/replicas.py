"""What the engine trains: :class:`Replicas`, one or more runs of one compiled program.

The engine (build, loop, dispatch, report) is written for one run. It never asks what its replicas vary
over. It reads each replica's single-run config (:meth:`Replicas.config`), and through the same interface
it maps its steps (:meth:`Replicas.vmap`), holds their states (:meth:`Replicas.stack`, :meth:`Replicas.get`)
and names their outputs (:meth:`Replicas.folder`, :meth:`Replicas.scalar_name`).

A single run is :class:`One`: no leading axis, every method the identity, so its steps are compiled as
written and its numbers are those of a plain ``jax.jit`` step. Seeds, task orders and sweep candidates are
an adapter around the engine, :class:`lwcl.runs.axis.ReplicaAxis`. Its replicas carry a leading axis ``R``
on their train states, records and losses, and every step runs under ``jax.vmap``, so one compiled program
trains them all. Replicas may differ only in what the program takes as data: the seed (initial state,
minibatch order), the task order (the stream's data, and under masked heads its label masks, a table per
replica read at the replica's index on the vmapped axis), the learning rate (an argument of every step)
and a method hyper-parameter kept in the method state (``Method.STATE_HYPER``). :meth:`lwcl.engine.build.Setup.build`
checks this and refuses any other difference.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lwcl.core.model_fns import REPLICA_AXIS


def replica(tree: Any, r: int) -> Any:
  """Replica ``r`` of a stacked pytree (every leaf indexed ``[r]`` on its leading axis)."""
  return jax.tree.map(lambda x: x[r], tree)


def stack(trees: Sequence[Any]) -> Any:
  """Pytrees of one structure stacked leaf by leaf into one with a leading axis ``len(trees)`` (device
  arrays stay on the device, host arrays on the host)."""
  return jax.tree.map(lambda *xs: np.stack(xs) if isinstance(xs[0], np.ndarray) else jnp.stack(xs), *trees)


class Replicas(abc.ABC):
  """The runs one program trains: a single run (:class:`One`) or replicas on a leading axis.

  Attributes (of every implementation):
    size: ``R``, the number of replicas.
    batched: whether states carry a leading replica axis (False only for a single run).
    choosers: the dotted config keys that choose the replicas and never reach the compiled program (e.g.
      ``num_seeds``): a replica's single-run config may differ from the program's config in them.
  """
  size: int
  batched: bool
  choosers: tuple = ()

  @abc.abstractmethod
  def config(self, config, r: int):
    """Replica ``r``'s single-run config (locked): ``config`` itself for a single run."""

  @abc.abstractmethod
  def folder(self, workdir: str, r: int) -> str:
    """Where replica ``r`` writes its results (``workdir`` for a single run)."""

  @abc.abstractmethod
  def label(self, r: int) -> str:
    """Replica ``r`` in words, e.g. ``seed 3`` (empty for a single run)."""

  @abc.abstractmethod
  def describe(self) -> str:
    """The replicas in words, e.g. ``3 seeds``."""

  @abc.abstractmethod
  def scalar_name(self, name: str, r: int) -> str:
    """Replica ``r``'s TensorBoard name of scalar ``name`` (``name`` itself for a single run)."""

  # -- the same for every implementation ------------------------------------------------------------

  def vmap(self, fn: Callable, in_axes, spmd_axis_name: str | None = None) -> Callable:
    """``jax.vmap(fn, in_axes)`` over the replicas when batched, else ``fn`` itself. The mapped axis is
    named :data:`~lwcl.core.model_fns.REPLICA_AXIS`: a per-replica table of label masks is read at the
    running replica's index on it. ``spmd_axis_name``: the mesh axis the replicas are split over, when the
    mapped function is jitted for a mesh (sharding constraints inside it then keep that split)."""
    if not self.batched:
      return fn
    return jax.vmap(fn, in_axes=in_axes, axis_name=REPLICA_AXIS, spmd_axis_name=spmd_axis_name)

  def stack(self, trees: Sequence[Any]) -> Any:
    """The replicas' trees (one per replica, in order) as the run holds them: stacked when batched, else
    the single tree.

    Raises:
      ValueError: not one tree per replica.
    """
    if len(trees) != self.size:
      raise ValueError(f"{len(trees)} trees for {self.size} replicas")
    return stack(trees) if self.batched else trees[0]

  def each(self, fn: Callable[[int], Any]) -> Any:
    """``stack([fn(r) for r in range(R)])``: a per-replica value built from each replica's index."""
    return self.stack([fn(r) for r in range(self.size)])

  def get(self, tree: Any, r: int) -> Any:
    """Replica ``r``'s part of a tree the run holds."""
    return replica(tree, r) if self.batched else tree

  def who(self, r: int) -> str:
    """Words naming replica ``r`` in a message: empty for a single run."""
    return f" of {self.label(r)} (replica {r} of {self.size})" if self.batched else ""

  def scalars(self, name: str, values) -> dict:
    """TensorBoard scalars of a per-replica value: ``{name: v}`` for a single run, else one scalar per
    replica named by :meth:`scalar_name`."""
    if not self.batched:
      return {name: float(values)}
    return {self.scalar_name(name, r): float(v) for r, v in enumerate(np.asarray(values))}


class One(Replicas):
  """A single run: one replica, no leading axis."""
  size = 1
  batched = False

  def config(self, config, r: int):
    return config

  def folder(self, workdir: str, r: int) -> str:
    return workdir

  def label(self, r: int) -> str:
    return ""

  def describe(self) -> str:
    return "a single run"

  def scalar_name(self, name: str, r: int) -> str:
    return name
