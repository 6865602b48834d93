"""Multi-process start-up checks (lwcl/platform/processes.py) that need no second process: the address,
ids and settings refused before JAX is called, the coordinator probe, and the settings every process
compares. The two-process cases run in tests/e2e/test_multi_device.py."""

import os
import socket
import subprocess
import sys
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


SERVICE_FAILS = """
import sys
sys.path[:0] = sys.argv[1:3]
from helpers import small_config
from lwcl.errors import LwclError
from lwcl.platform import coordination, processes

def refuse(*args, **kwargs):
  raise coordination.ServiceStartError("the coordination service did not start in its own process at "
                                       "[::]:1 (OSError: no)")

coordination.ServiceProcess = refuse
cfg = small_config(**{"devices.multihost": True, "devices.coordinator_address": f"localhost:{sys.argv[3]}",
                      "devices.num_processes": 1, "devices.process_id": 0, "devices.startup_timeout": 10})
try:
  processes.initialize(cfg.devices)
except LwclError as e:
  print(e)
"""


def test_a_coordination_service_that_does_not_start_is_named_as_such():
  """Process 0's service process not starting is its own line, not 'the processes did not all connect'
  (a fresh process: JAX's initialize must come before any computation)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", SERVICE_FAILS, os.path.dirname(tests), tests, str(port)],
                       capture_output=True, text=True, timeout=60).stdout.strip()
  assert out == (f"process 0 of 1 at localhost:{port}: the coordination service did not start in its own "
                 "process at [::]:1 (OSError: no); check that process 0's host can bind that port, or pick "
                 "another with --config.devices.coordinator_address"), out
