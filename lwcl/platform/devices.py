"""Devices: a 2-D mesh (``replica``, ``data``); batches split over ``data``, replicas over ``replica``.

A single run is data-parallel over all local devices (or the first ``devices.num_devices``): the mesh is
``1 x n``, the batch sharded over ``data``, the state replicated, as a 1-D data-parallel mesh. Replicas of
one program (seeds, task orders, sweep candidates: a leading axis ``R`` on their states) are split over the
``replica`` axis, each group of devices holding ``R / replica_shards`` replicas, and each replica's batch over
the ``data`` axis of its group (:func:`mesh_shape` chooses the split). Multi-host (``devices.multihost``):
``jax.distributed.initialize()`` first; every process builds the same global batch and places its
addressable part.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lwcl.core.options import Option
from lwcl.errors import ConfigError
from lwcl.platform import processes, quiet

REPLICA, DATA = "replica", "data"  # the mesh's axes

OPTIONS = (
    Option("devices.num_devices", 0, "use this many local devices; 0 = all", minimum=0),
    Option("devices.replica_shards", 0, "replicas (seeds, orders, candidates) split over this many device "
           "groups; 0 = auto: the most that divide both the replicas and the devices", minimum=0),
    Option("devices.data_shards", 0, "each replica's batch split over this many devices; 0 = the devices "
           "left (all of them for a single run)", minimum=0),
    Option("devices.multihost", False, "call jax.distributed.initialize() (TPU pods, SLURM, ...)"),
    Option("devices.coordinator_address", "", "multihost: the coordinator; '' = auto-detect"),
    Option("devices.num_processes", 0, "multihost: number of processes; 0 = auto-detect", minimum=0),
    Option("devices.process_id", -1, "multihost: this process's id; -1 = auto-detect", minimum=-1),
    Option("devices.startup_timeout", 30.0, "multihost: seconds to wait for every process at start-up (to "
           "connect, then to publish its config, lwcl.platform.processes); raise it for large clusters",
           minimum=0.0, strict=True),
    Option("devices.heartbeat_timeout", 60.0, "multihost: seconds a process may go without a heartbeat "
           "before the others stop with one line (lwcl.platform.liveness); JAX's own abort comes 30 s later",
           minimum=0.0, strict=True),
)

def hide_gpus_from_tensorflow() -> None:
  """Keeps TensorFlow (used by tensorflow-datasets only) off the accelerators, so it
  neither grabs GPU memory JAX needs nor initializes CUDA twice; imports it without its start-up lines
  (:func:`lwcl.platform.quiet.import_tensorflow`). Safe to call many times."""
  try:
    quiet.import_tensorflow().config.set_visible_devices([], "GPU")
  except (ImportError, RuntimeError):  # not installed, or already initialized (then already done)
    pass


def initialize_distributed(devices_config) -> None:
  """Starts a multi-host run's processes (:func:`lwcl.platform.processes.initialize`: bounded and checked);
  nothing for a single-process config. Safe to call many times."""
  processes.initialize(devices_config)


def mesh_shape(devices: int, replicas: int = 0, replica_shards: int = 0, data_shards: int = 0,
               every_device: bool = False) -> tuple:
  """The mesh ``(replica shards, data shards)`` of a run on ``devices`` devices.

  A single run (``replicas = 0``) is data-parallel: ``(1, data_shards or devices)`` (``replica_shards`` is
  ignored, so a sweep's final single run may share its candidates' config). ``R = replicas`` replicas go
  over devices first: ``replica_shards`` defaults to the largest number dividing both ``R`` and the devices
  (``devices // data_shards`` when that is given), ``data_shards`` to the devices left over
  (``devices // replica_shards``): 8 seeds on 8 devices are ``(8, 1)``, 4 seeds ``(4, 2)``, 3 seeds
  ``(1, 8)``.

  Args:
    devices: the devices available (int >= 1); replicas: ``R``, or 0 for a single run.
    replica_shards, data_shards: ``devices.replica_shards`` / ``devices.data_shards`` (0 = auto).
    every_device: the mesh must use every device (multi-process runs).
  Returns:
    ``(r, d)``, ints with ``r * d <= devices`` (``== devices`` with ``every_device``).
  Raises:
    ConfigError: ``replica_shards`` does not divide ``R``, the product exceeds the devices, or leaves some
      unused when ``every_device``.
  """
  if not replicas:
    r, d = 1, data_shards or devices
  else:
    r = replica_shards or math.gcd(replicas, max(devices // (data_shards or 1), 1))
    if replicas % r:
      raise ConfigError(f"devices.replica_shards={r} does not divide the {replicas} replicas; set "
                        f"--config.devices.replica_shards to a divisor of {replicas} (or 0 for auto)")
    d = data_shards or max(devices // r, 1)
  if r * d > devices:
    what = f"devices.replica_shards={r} x devices.data_shards={d}" if replicas else f"devices.data_shards={d}"
    raise ConfigError(f"{what} needs {r * d} devices but {devices} are in use; lower "
                      f"--config.devices.{'data_shards' if d > 1 or not replicas else 'replica_shards'} (0 = auto)")
  if every_device and r * d != devices:
    raise ConfigError(f"a multi-host run uses every device, but the mesh {r} x {d} uses {r * d} of {devices}; "
                      f"set --config.devices.replica_shards x --config.devices.data_shards = {devices} (or 0 "
                      "for auto)")
  return r, d


@dataclasses.dataclass(frozen=True)
class DataParallel:
  """The device mesh and the shardings the steps use.

  Attributes:
    mesh: 2-D mesh with axes ``('replica', 'data')``: ``1 x n`` for a single run.
    batch: ``NamedSharding`` splitting the leading (batch) axis over ``'data'``.
    replicated: ``NamedSharding`` replicating over the mesh.
    replicas: ``R``, the replicas on a leading axis of the states (0 for a single run).
  """
  mesh: Mesh
  batch: NamedSharding
  replicated: NamedSharding
  replicas: int = 0

  @classmethod
  def create(cls, devices_config, replicas: int = 0) -> "DataParallel":
    """The mesh of a run of ``replicas`` replicas on a leading axis (0: a single run), split as
    :func:`mesh_shape` says.

    Raises:
      ConfigError: more devices asked for than exist, ``devices.num_devices`` in a multi-host run, or a
        split :func:`mesh_shape` refuses.
    """
    initialize_distributed(devices_config)
    devices = jax.devices()
    n = devices_config.num_devices
    if n:
      if jax.process_count() > 1:
        raise ConfigError(f"devices.num_devices={n} in a multi-host run, which uses every device; set "
                          "--config.devices.num_devices=0")
      if n > len(devices):
        raise ConfigError(f"devices.num_devices={n} but only {len(devices)} devices are visible; lower it "
                          "or set 0 for all")
      devices = devices[:n]
    r, d = mesh_shape(len(devices), replicas, devices_config.get("replica_shards", 0),
                      devices_config.get("data_shards", 0), every_device=jax.process_count() > 1)
    # jax.devices() lists each process's devices together: a replica's data shards stay on one host.
    mesh = Mesh(np.asarray(devices[:r * d]).reshape(r, d), (REPLICA, DATA))
    return cls(mesh, NamedSharding(mesh, PartitionSpec(DATA)), NamedSharding(mesh, PartitionSpec()), replicas)

  @property
  def size(self) -> int:
    """The devices of the mesh."""
    return self.mesh.size

  @property
  def replica_shards(self) -> int:
    return self.mesh.shape[REPLICA]

  @property
  def data_shards(self) -> int:
    return self.mesh.shape[DATA]

  @property
  def shards_replicas(self) -> bool:
    """Whether the steps of batched replicas are compiled for the mesh (more than one device or process);
    replicas on one device of one process are compiled as before meshes existed."""
    return bool(self.replicas) and (self.size > 1 or jax.process_count() > 1)

  def check_batch_size(self, batch_size: int, key: str) -> None:
    """Raises ConfigError unless ``batch_size`` splits evenly over the data shards."""
    if batch_size % self.data_shards:
      raise ConfigError(f"{key}={batch_size} does not split over {self.data_shards} devices; use a multiple of "
                        f"{self.data_shards}" + (" or set --config.devices.data_shards=1" if self.replicas else ""))

  def sharding(self, *spec) -> NamedSharding:
    """``NamedSharding(mesh, PartitionSpec(*spec))``; e.g. ``sharding('replica', 'data')`` for a
    per-replica batch ``[R, B, ...]``."""
    return NamedSharding(self.mesh, PartitionSpec(*spec))

  def put_batch(self, batch: dict) -> dict:
    """Places a global host batch (same on every process) sharded over the mesh. On one device of one
    process the host arrays are returned as they are: the jitted step's ``in_shardings`` transfer them
    in its dispatch, which on CPU costs a fraction of a separate placement (about 0.5 ms per step for the
    GEM-protocol MLP, more than its whole step)."""
    p, n = jax.process_index(), jax.process_count()
    if n == 1 and self.size == 1:
      return batch

    def put(x):
      local = x if n == 1 else x[p * (x.shape[0] // n):(p + 1) * (x.shape[0] // n)]
      return jax.make_array_from_process_local_data(self.batch, local, x.shape)

    return {k: put(v) for k, v in batch.items()}

  def put_global(self, tree, sharding: NamedSharding):
    """A pytree of host arrays (the same global values on every process) for a step compiled with
    ``sharding``: as it is in one process (the step's ``in_shardings`` place it in its dispatch), else each
    process's addressable part placed (``jax.make_array_from_callback``)."""
    if jax.process_count() == 1:
      return tree
    return jax.tree.map(lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda i: np.asarray(x)[i]),
                        tree)

  def replicate(self, tree):
    """Places a pytree replicated over the mesh."""
    return jax.device_put(tree, self.replicated)

  def place_state(self, tree):
    """Places a run's state (or any pytree with the replicas' leading axis): split over ``'replica'`` when
    :attr:`shards_replicas`, else replicated (:meth:`replicate`)."""
    return self.place(tree, self.sharding(REPLICA)) if self.shards_replicas else self.replicate(tree)

  def place(self, tree, sharding: NamedSharding):
    """``tree`` (host arrays, or device arrays of any sharding on this mesh) with ``sharding``. In a
    multi-process run every process must call it with the same values."""
    if jax.process_count() == 1:
      return jax.device_put(tree, sharding)

    def one(x):
      if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.jit(lambda a: a, out_shardings=sharding)(x)
      host = np.asarray(x)
      return jax.make_array_from_callback(host.shape, sharding, lambda i: host[i])

    return jax.tree.map(one, tree)

  def gather(self, tree):
    """A pytree of the run's arrays as the host reads them: replicas split over the mesh gathered onto every
    device (every process can then read every replica, e.g. to checkpoint it); otherwise ``tree`` itself."""
    return self.place(tree, self.replicated) if self.shards_replicas else tree


def local_copy(x):
  """``x``, or, for an array replicated over the devices of several processes, this process's copy (an
  array every process can read, e.g. with ``jax.device_get``)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable and x.is_fully_replicated:
    return x.addressable_data(0)
  return x


def to_host(x) -> np.ndarray:
  """A fully addressable or fully replicated array (e.g. :meth:`DataParallel.gather`'s) as a numpy array, in
  any process."""
  return np.asarray(jax.device_get(local_copy(x)))
