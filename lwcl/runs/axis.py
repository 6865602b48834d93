"""The replica adapter: seeds, task orders and sweep candidates as replicas of one program (:class:`ReplicaAxis`).

The engine trains :class:`~lwcl.engine.replicas.Replicas` and never asks what they vary over; this module is
where that is known. With ``--config.num_seeds=R`` the ``R`` seeds ``seed .. seed+R-1`` are ``R`` replicas;
``num_orders`` makes task orders replicas, a sweep its candidates, and either times ``num_seeds`` the
product. Each replica is described to the engine by its single-run config (:meth:`ReplicaAxis.config`:
the config of the single run of its seed, order or candidate), so replica ``r`` draws its initial state and
its minibatch order from its seed as that single run does, and equals it up to float rounding
(``tests/runs/test_seeds.py``, ``tests/methods/test_contract.py``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from lwcl.config import files as config_files
from lwcl.config import options as config_options
from lwcl.config import values as config_values
from lwcl.engine.replicas import Replicas
from lwcl.errors import ConfigError


def candidate_name(value) -> str:
  """A sweep candidate's folder name and label (:func:`lwcl.config.values.number_text`): ``f"{value:g}"``
  (``0.01``, ``10``, ``1e-05``) when that reads back as the same float, else ``repr(value)``
  (``0.010000001``, which ``:g`` would round to ``0.01``). ``float(name) == value`` either way, so distinct
  values never share a folder (equal ones are refused: ``sweep.candidates`` lists each value once).

  Args:
    value: a finite number (int or float).
  Returns:
    str: the name.
  """
  return config_values.number_text(value)


def seed_config(config, seed: int):
  """A locked copy of ``config`` for one seed of a ``num_seeds`` run: ``seed = seed``, ``num_seeds = 0``."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.seed, c.num_seeds = int(seed), 0
  c.lock()
  return c


def candidate_config(config, key: str, value, split: str):
  """A locked copy of ``config`` with dotted ``key`` set to ``value`` (cast to the key's type),
  ``eval.split = split`` and the sweep cleared (one candidate of a validation sweep, :mod:`lwcl.runs.sweep`).

  Raises:
    ConfigError: ``key`` is not a numeric key of the config.
  """
  c = config.copy_and_resolve_references()
  with c.unlocked():
    try:
      config_files.set_key(c, key, type(config_files.get_key(c, key))(value))
    except (KeyError, TypeError, ValueError):
      raise ConfigError(f"sweep.key '{key}' is not a numeric config key; use a dotted key of "
                        "configs/default.py such as method.strength") from None
    c.eval.split = split
    c.sweep.key, c.sweep.candidates = "", ()
  c.lock()
  return c


def order_config(config, order):
  """A locked copy of ``config`` for one task order: ``num_orders = 0``, ``scenario.task_order = order``."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.num_orders = 0
    c.scenario.task_order = tuple(int(i) for i in order)
  c.lock()
  return c


@dataclasses.dataclass(frozen=True)
class ReplicaAxis(Replicas):
  """The replicas of a run: one dimension (seeds, task orders or sweep candidates), or the product of task
  orders or candidates with seeds.

  A product is order-major: replica ``r`` is outer element ``r // S`` (an order or a candidate) with seed
  ``seeds[r]``, ``S = seed_count`` seeds per outer element, as if that outer element's ``num_seeds`` run
  were stacked after the previous one's.

  Attributes:
    seeds: each replica's ``config.seed`` (initial state, minibatch order, linear-probe subsets).
    orders: each replica's task order (a tuple of task indices, :func:`lwcl.runs.orders.distinct_orders`), or
      empty when every replica runs the stream the config defines.
    batched: whether states carry a leading replica axis (``num_seeds``, ``num_orders`` and sweep runs);
      False for a single run, whose one replica has no axis.
    key: the swept dotted config key, or empty; candidates: each replica's value of it, or empty.
    seed_count: ``S``, the seeds per order or candidate when seeds are a dimension of the axis (a
      ``num_seeds`` run, alone or in a product), else 0.
  """
  seeds: tuple = (0,)
  orders: tuple = ()
  batched: bool = False
  key: str = ""
  candidates: tuple = ()
  seed_count: int = 0
  # What makes a config a run of several replicas: its replicas' single-run configs clear it.
  choosers = ("num_seeds", "num_orders", "sweep.key", "sweep.candidates")

  @classmethod
  def single(cls, seed: int) -> "ReplicaAxis":
    """One run of ``seed``, no leading axis."""
    return cls((int(seed),), (), False)

  @classmethod
  def of_seeds(cls, seeds: Sequence[int]) -> "ReplicaAxis":
    """One replica per seed, stacked on a leading axis (even for one seed)."""
    if not seeds:
      raise ValueError("a replica axis needs at least one seed")
    return cls(tuple(int(s) for s in seeds), (), True, seed_count=len(seeds))

  @classmethod
  def of_orders(cls, seed: int, orders: Sequence[Sequence[int]], seeds: Sequence[int] = ()) -> "ReplicaAxis":
    """One replica per task order (all of seed ``seed``), or, with ``seeds``, per task order and seed
    (order-major), stacked on a leading axis."""
    if not orders:
      raise ValueError("a replica axis needs at least one order")
    orders = tuple(tuple(int(i) for i in o) for o in orders)
    return cls._product(seed, seeds, orders=orders)

  @classmethod
  def of_candidates(cls, seed: int, key: str, values: Sequence[float], seeds: Sequence[int] = ()) -> "ReplicaAxis":
    """One replica per candidate value of the dotted config ``key`` (a validation sweep, all of seed
    ``seed``), or, with ``seeds``, per candidate and seed (candidate-major), stacked on a leading axis; the
    replicas evaluate on the validation split."""
    if not values:
      raise ValueError("a replica axis needs at least one candidate")
    return cls._product(seed, seeds, key=str(key), candidates=tuple(float(v) for v in values))

  @classmethod
  def _product(cls, seed: int, seeds: Sequence[int], orders: tuple = (), key: str = "",
               candidates: tuple = ()) -> "ReplicaAxis":
    outer = len(orders or candidates)
    per = tuple(int(s) for s in seeds) or (int(seed),)
    return cls(per * outer, tuple(o for o in orders for _ in per), True, key,
               tuple(v for v in candidates for _ in per), len(seeds))

  @property
  def size(self) -> int:
    """``R``, the number of replicas."""
    return len(self.seeds)

  def outer(self, r: int) -> int:
    """The index of replica ``r``'s task order or candidate (``r`` itself when seeds are no dimension)."""
    return r // max(self.seed_count, 1)

  def describe(self) -> str:
    """The replicas in words: ``3 seeds``, ``10 task orders``, ``10 task orders x 3 seeds``, ``5 candidates
    of method.strength x 3 seeds``."""
    n_outer = self.size // max(self.seed_count, 1)
    outer = (f"{n_outer} task orders" if self.orders else
             f"{n_outer} candidates of {self.key}" if self.candidates else "")
    seeds = f"{self.seed_count} seeds" if self.seed_count else ""
    return " x ".join(p for p in (outer, seeds) if p) or f"{self.size} seeds"

  def label(self, r: int) -> str:
    """Replica ``r`` in words: ``seed 3``, ``task order 2``, ``method.strength=10`` or, in a product,
    ``task order 2, seed 3``."""
    words = {"candidate": lambda: f"{self.key}={candidate_name(self.candidates[r])}",
             "order": lambda: f"task order {self.outer(r)}", "seed": lambda: f"seed {self.seeds[r]}"}
    return ", ".join(words[dim]() for dim in self._dimensions())

  def config(self, config, r: int):
    """Replica ``r``'s single-run config: ``config`` itself for a single run, else the config of the single
    run of its candidate (:func:`candidate_config`), its order (:func:`order_config`) and its seed
    (:func:`seed_config`), whichever the axis varies."""
    if not self.batched:
      return config
    dims = self._dimensions()
    if "candidate" in dims:
      config = candidate_config(config, self.key, self.candidates[r], "valid")
    if "order" in dims:
      config = order_config(config, self.orders[r])
    return seed_config(config, self.seeds[r]) if "seed" in dims else config

  def folder(self, workdir: str, r: int) -> str:
    """Where replica ``r`` writes its results: the workdir of a single run, else ``workdir/seed<s>``,
    ``workdir/order<o>``, ``workdir/<candidate value>`` (:func:`candidate_name`), or in a product
    ``workdir/order<o>/seed<s>`` and ``workdir/<candidate value>/seed<s>`` (the layout of each order's or
    candidate's ``num_seeds`` run)."""
    if not self.batched:
      return workdir
    names = {"candidate": candidate_name(self.candidates[r]) if self.candidates else "",
             "order": f"order{self.outer(r)}", "seed": f"seed{self.seeds[r]}"}
    return os.path.join(workdir, *(names[dim] for dim in self._dimensions()))

  def scalar_name(self, name: str, r: int) -> str:
    """Replica ``r``'s TensorBoard name of scalar ``name``: ``name`` for a single run, else ``name_seed<s>``,
    ``name_order<o>``, ``name_candidate<c>``, or in a product ``name_order<o>_seed<s>`` and
    ``name_candidate<c>_seed<s>``."""
    if not self.batched:
      return name
    index = {"candidate": self.outer(r), "order": self.outer(r), "seed": self.seeds[r]}
    return "_".join([name] + [f"{dim}{index[dim]}" for dim in self._dimensions()])

  def _dimensions(self) -> tuple:
    """The dimensions the replicas vary over, outer first: ``('seed',)``, ``('order',)``,
    ``('candidate',)``, ``('order', 'seed')`` or ``('candidate', 'seed')``."""
    outer = ("candidate",) if self.candidates else ("order",) if self.orders else ()
    return outer + (("seed",) if self.seed_count or not outer else ())


def finished_replicas(config, axis: ReplicaAxis, workdir: str) -> list:
  """Per replica of ``axis``, its finished results in its folder (:meth:`ReplicaAxis.folder` of
  ``workdir``) for its single-run config (:meth:`ReplicaAxis.config`), or None: the one check of finished
  replicas, used by seeds, task orders, sweeps and ``bin/compare``.

  A workdir without sub-folders has no finished replica, and a replica whose folder has no results file
  costs a path and an ``lstat``, not a config of its own (about 0.2 ms each: 10**6 replicas spent minutes
  here before the run could say they will not fit in memory, :mod:`lwcl.engine.budget`).

  Raises:
    ConfigError: a folder holds another experiment's results (nothing is overwritten).
  """
  from lwcl.io.results import RESULTS_FILE, finished_results  # pylint: disable=g-import-not-at-top  (lazily)
  try:
    with os.scandir(workdir) as entries:
      if not any(e.is_dir() for e in entries):
        return [None] * axis.size
  except FileNotFoundError:
    return [None] * axis.size
  except OSError:  # e.g. a file at the workdir: finished_results names the problem
    pass
  out = []
  for r in range(axis.size):
    folder = axis.folder(workdir, r)
    try:
      os.lstat(os.path.join(folder, RESULTS_FILE))
    except FileNotFoundError:  # what finished_results would find: no results yet
      out.append(None)
      continue
    except OSError:  # e.g. the folder is a file: finished_results names the problem
      pass
    out.append(finished_results(axis.config(config, r), folder, config_options.defaults()))
  return out
