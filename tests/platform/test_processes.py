"""Multi-process start-up checks (lwcl/platform/processes.py) that need no second process: the address,
ids and settings refused before JAX is called, the coordinator probe, and the settings every process
compares. The two-process cases run in tests/e2e/test_multi_device.py."""

import socket
import time

import pytest

from lwcl.errors import ConfigError
from lwcl.platform import processes

from helpers import small_config


def devices(**kw):
  cfg = small_config(**{f"devices.{k}": v for k, v in kw.items()})
  return cfg.devices


@pytest.mark.parametrize("address", ["localhost:1234", "10.0.0.1:65535", "[::1]:8476", "node-3.cluster:1"])
def test_good_addresses(address):
  host, port = processes.check_address(address)
  assert f"{host}:{port}" in address.replace("[", "").replace("]", "")


@pytest.mark.parametrize("address", ["localhost", "localhost:0", "localhost:99999", "host:port", ":1234",
                                     "a b:12", "localhost:12:13"])
def test_bad_addresses_one_line(address):
  with pytest.raises(ConfigError, match="is not host:port with a port in 1..65535"):
    processes.check_address(address)


def test_settings_refused_before_jax():
  with pytest.raises(ConfigError, match=r"process_id=5 is not below devices.num_processes=2; give each process "
                                        r"an id in 0..1"):
    processes.check_settings(devices(multihost=True, coordinator_address="localhost:1234", num_processes=2,
                                     process_id=5))
  with pytest.raises(ConfigError, match="devices.num_processes, devices.process_id left to auto-detection"):
    processes.check_settings(devices(multihost=True, coordinator_address="localhost:1234"))
  processes.check_settings(devices(multihost=True))  # all auto-detected (TPU pods, SLURM)
  processes.check_settings(devices(multihost=True, coordinator_address="localhost:1234", num_processes=2,
                                   process_id=1))


def test_coordinator_probe_is_bounded():
  with socket.socket() as closed:  # a port nobody listens on: bound, never listening
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    start = time.monotonic()
    assert not processes._wait_for_coordinator("127.0.0.1", port, 0.5)
    assert time.monotonic() - start < 5
  with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen()
    assert processes._wait_for_coordinator("127.0.0.1", server.getsockname()[1], 5)
    assert not processes._port_free("127.0.0.1", server.getsockname()[1])


def test_compared_settings_and_first_difference():
  a = processes.compared_settings(small_config(**{"devices.process_id": 0}), "/w")
  b = processes.compared_settings(small_config(**{"devices.process_id": 1, "devices.startup_timeout": 60.0}),
                                  "/w")
  assert "devices.process_id" not in a and a["workdir"] == "/w" and "optimizer.learning_rate" in a
  assert processes.first_difference(a, b) is None  # each process's own id and timeout are not compared
  c = processes.compared_settings(small_config(**{"optimizer.learning_rate": 0.5}), "/other")
  assert processes.first_difference(a, c) == ("optimizer.learning_rate", a["optimizer.learning_rate"], 0.5)
  assert processes.first_difference(a, {**a, "workdir": "/x"}) == ("workdir", "/w", "/x")
  assert processes.first_difference(a, {k: v for k, v in a.items() if k != "seed"})[2] == "<missing>"
