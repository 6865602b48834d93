"""Process 0's coordination service in a process of its own (lwcl/platform/coordination.py): how long it
serves after process 0 is gone (a fake clock), the client count it reads from /proc, the one replaced call
of JAX's, and the real service process started, used, stopped, and ended after its parent's death. The
2-process runs with process 0 killed are in tests/e2e/test_multi_device.py."""

import os
import socket
import subprocess
import sys
import time

import pytest

from lwcl.platform import coordination

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now

  def sleep(self, seconds):
    self.now += seconds


def lingered(counts, seconds=10.0):
  """``(how linger ended, seconds it took)`` with ``counts[i]`` clients at its i-th look (the last repeats)."""
  clock, looks = Clock(), []

  def connections(port):
    assert port == 1234
    looks.append(None)
    return counts[min(len(looks), len(counts)) - 1]

  how = coordination.linger(1234, seconds, connections, clock, clock.sleep)
  return how, clock.now


def test_the_service_ends_once_no_client_has_been_connected_for_a_second():
  how, took = lingered([0])
  assert how == "quiet" and took == pytest.approx(coordination.QUIET_S)
  how, took = lingered([2, 1, 1, 0])  # the others leave one by one
  assert how == "quiet" and took == pytest.approx(3 * coordination.POLL_S + coordination.QUIET_S)


def test_a_client_back_within_the_quiet_second_keeps_the_service():
  how, took = lingered([1, 0, 0, 1, 0])
  assert how == "quiet" and took == pytest.approx(4 * coordination.POLL_S + coordination.QUIET_S)


def test_the_service_ends_after_its_linger_time_while_a_client_stays_or_where_proc_cannot_tell():
  for counts in ([1], [None]):  # a hung partner keeps its connection; no /proc: no count
    how, took = lingered(counts, seconds=5.0)
    assert how == "timeout" and took == pytest.approx(5.0)


def test_established_counts_the_clients_connected_to_this_process_port():
  with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert coordination.established(port) == 0  # listening only
    with socket.create_connection(("127.0.0.1", port)) as client:
      accepted, _ = server.accept()
      with accepted:
        assert coordination.established(port) == 1  # the accepted side (the client's local port differs)
        assert coordination.established(client.getsockname()[1]) == 1  # the client's side, seen the same way
    assert coordination.established(port) == 0
  assert coordination.established(port, proc="/nonexistent") is None


def test_service_apart_replaces_the_service_call_for_the_block_only():
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  real = distributed._jax  # pylint: disable=protected-access
  with coordination.service_apart(linger=5.0, timeout=5.0) as apart:
    assert apart
    patched = distributed._jax  # pylint: disable=protected-access
    assert patched.get_distributed_runtime_service is not real.get_distributed_runtime_service
    assert patched.get_distributed_runtime_client is real.get_distributed_runtime_client
  assert distributed._jax is real  # pylint: disable=protected-access
  with pytest.raises(RuntimeError), coordination.service_apart(linger=5.0, timeout=5.0):
    raise RuntimeError("initialize failed")
  assert distributed._jax is real  # pylint: disable=protected-access


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _client(port):
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  client = distributed._jax.get_distributed_runtime_client(  # pylint: disable=protected-access
      f"localhost:{port}", 0, init_timeout=10, heartbeat_timeout=30, use_compression=True)
  client.connect()
  return client


def test_a_service_process_serves_a_client_then_stops_as_jax_stops_it():
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  port = _free_port()
  service = coordination.ServiceProcess(distributed._jax.__name__, f"[::]:{port}", 1,  # pylint: disable=protected-access
                                        {"heartbeat_timeout": 30, "shutdown_timeout": 10}, linger=30.0, timeout=30.0)
  client = _client(port)
  client.key_value_set("k", "v")
  assert client.blocking_key_value_get("k", 1000) == "v"
  client.shutdown()  # JAX's order at exit: the clients' barrier, then the service
  start = time.monotonic()
  service.shutdown()
  assert service.process.returncode == 0 and time.monotonic() - start < 5


def test_a_service_process_that_cannot_start_says_why():
  with socket.socket(socket.AF_INET6) as taken:
    taken.bind(("::", 0))
    taken.listen()
    with pytest.raises(coordination.ServiceStartError, match="did not start in its own process"):
      coordination.ServiceProcess("no_such_module_here", f"[::]:{taken.getsockname()[1]}", 1, {}, 1.0, 30.0)


def _alive(pid):
  try:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
      return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"  # a zombie has ended
  except FileNotFoundError:
    return False


PARENT = """
import os, sys
sys.path.insert(0, sys.argv[1])
from jax._src import distributed
from lwcl.platform import coordination
s = coordination.ServiceProcess(distributed._jax.__name__, f"[::]:{sys.argv[2]}", 1, {"heartbeat_timeout": 30},
                                linger=float(sys.argv[3]), timeout=30.0)
print(s.process.pid, flush=True)
os._exit(0)  # as a kill -9: no shutdown
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads the service's clients from /proc")
def test_the_service_outlives_its_parent_only_while_a_client_is_connected():
  port = _free_port()
  # A client connects before the parent dies: the service serves it until it leaves.
  parent = subprocess.Popen([sys.executable, "-c", PARENT.replace("os._exit", "input(); os._exit"), ROOT,
                             str(port), "30"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  pid = int(parent.stdout.readline())
  client = _client(port)
  parent.communicate("\n", timeout=30)
  time.sleep(2 * coordination.QUIET_S)
  assert _alive(pid)  # the client still needs it
  client.key_value_set("still", "served")
  client.shutdown()
  del client  # its connection closes with it (as when the process ends)
  deadline = time.monotonic() + coordination.QUIET_S + 5
  while _alive(pid) and time.monotonic() < deadline:
    time.sleep(0.1)
  assert not _alive(pid)
  # No client: the service ends about a second after its parent.
  out = subprocess.run([sys.executable, "-c", PARENT, ROOT, str(_free_port()), "30"], capture_output=True,
                       text=True, timeout=60)
  pid, start = int(out.stdout), time.monotonic()
  while _alive(pid) and time.monotonic() - start < 10:
    time.sleep(0.1)
  assert time.monotonic() - start < coordination.QUIET_S + 3
