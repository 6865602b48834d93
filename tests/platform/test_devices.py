"""The device mesh (lwcl/platform/devices.py): how replicas and batches split over the devices, and the
one-line errors for splits that do not fit. Runs on this process's devices (one CPU device); the splits
themselves run in tests/e2e/test_multi_device.py."""

import pytest

from lwcl.engine.build import Setup
from lwcl.errors import ConfigError
from lwcl.platform.devices import DataParallel, mesh_shape
from lwcl.runs.axis import ReplicaAxis

from helpers import small_config


@pytest.mark.parametrize("devices,replicas,replica_shards,data_shards,want", [
    (8, 0, 0, 0, (1, 8)),  # a single run: data-parallel over every device
    (8, 0, 4, 2, (1, 2)),  # ... its replica split ignored (a sweep's final run shares the candidates' config)
    (8, 8, 0, 0, (8, 1)),  # replicas over the devices first
    (8, 4, 0, 0, (4, 2)),  # ... the devices left split each replica's batch
    (8, 3, 0, 0, (1, 8)),  # 3 replicas do not split over 8 devices: all data-parallel
    (8, 6, 0, 0, (2, 4)),
    (8, 8, 0, 2, (4, 2)),  # data shards asked for: the replicas over the rest
    (8, 8, 2, 0, (2, 4)),
    (8, 8, 2, 1, (2, 1)),  # a mesh smaller than the devices (one process)
    (1, 8, 0, 0, (1, 1)),  # one device: every replica on it
])
def test_mesh_shape(devices, replicas, replica_shards, data_shards, want):
  assert mesh_shape(devices, replicas, replica_shards, data_shards) == want


@pytest.mark.parametrize("args,fragments", [
    ((8, 6, 4, 0), ["devices.replica_shards=4 does not divide the 6 replicas", "--config.devices.replica_shards"]),
    ((8, 8, 4, 4), ["replica_shards=4 x devices.data_shards=4 needs 16 devices but 8", "--config.devices.data_shards"]),
    ((4, 8, 8, 0), ["replica_shards=8 x devices.data_shards=1 needs 8 devices but 4",
                    "--config.devices.replica_shards"]),
    ((2, 0, 0, 4), ["devices.data_shards=4 needs 4 devices but 2"]),
])
def test_splits_that_do_not_fit_are_one_line_errors(args, fragments):
  with pytest.raises(ConfigError) as e:
    mesh_shape(*args)
  assert "\n" not in str(e.value) and all(f in str(e.value) for f in fragments), str(e.value)


def test_a_multi_host_mesh_uses_every_device():
  assert mesh_shape(4, 2, 0, 0, every_device=True) == (2, 2)
  with pytest.raises(ConfigError, match="a multi-host run uses every device, but the mesh 2 x 1 uses 2 of 4"):
    mesh_shape(4, 2, 2, 1, every_device=True)


def test_one_device_keeps_replicas_and_single_runs_as_before():
  one = DataParallel.create(small_config().devices)
  seeds = DataParallel.create(small_config().devices, replicas=3)
  assert dict(one.mesh.shape) == dict(seeds.mesh.shape) == {"replica": 1, "data": 1}
  assert not one.shards_replicas and not seeds.shards_replicas  # compiled as before meshes existed
  tree = {"w": [1.0, 2.0]}
  assert seeds.gather(tree) is tree


def test_the_setup_refuses_a_replica_split_that_does_not_divide_the_replicas():
  config = small_config(**{"num_seeds": 3, "devices.replica_shards": 2})
  with pytest.raises(ConfigError, match="devices.replica_shards=2 does not divide the 3 replicas"):
    Setup.build(config, ReplicaAxis.of_seeds((0, 1, 2)))
