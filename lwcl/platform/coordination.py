"""Process 0's coordination service in a process of its own, so that process 0's death ends the others
with one line (issue 32).

JAX starts the coordination service of a multi-process run (the key-value store and the heartbeats every
process talks to) inside process 0 (``jax._src.distributed.State.initialize``). When process 0 was killed,
the service died with it, and every other process's JAX client aborted within 0.2 s (measured with jax
0.10.2 on 2 CPU processes: SIGABRT, 57 lines of C++ log and Python stack dump), before any of lwcl's code
ran. Here process 0 starts the service in a child process (:class:`ServiceProcess`, started by JAX's own
call through :func:`service_apart`), and its JAX client connects to it as every other process's does.
Process 0 killed is then like any partner killed: the others' :class:`lwcl.platform.liveness.Watch` finds
its heartbeat stopped (or gloo's connection closes in a collective), and they end with one line.

The service process ends with the run ("no process outlives its run"):

* process 0 ends normally: JAX's shutdown at exit (``jax.distributed.shutdown``) calls the service's
  ``shutdown()`` after its clients' shutdown barrier, as it does for the service in process 0;
  :meth:`ServiceProcess.shutdown` asks the child to shut the service down and waits for it
  (:data:`STOP_WAIT_S` seconds at most, then kills it);
* process 0 killed, or ended without JAX's shutdown (``os._exit`` after an error line,
  :mod:`lwcl.platform.liveness`): the child sees its standard input close (or its parent change) within
  :data:`POLL_S` seconds, then serves while any client is still connected (on Linux: its established TCP
  connections on the service's port, read from ``/proc``; none for :data:`QUIET_S` seconds), at most
  ``linger`` seconds, and exits.

JAX has no public switch for where the service runs: :func:`service_apart` replaces the module JAX's
``initialize`` calls ``get_distributed_runtime_service`` through, for the length of that one call, and is
the only place of lwcl that does. A JAX without that private attribute gets today's behaviour (the
service in process 0) and a warning.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import select
import subprocess
import sys
import time
from typing import Callable

POLL_S = 0.25  # how often the child checks its parent, then its clients
QUIET_S = 1.0  # the child ends after its parent when no client has been connected for this long
STOP_WAIT_S = 10.0  # how long a normal end waits for the child to shut the service down
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds lwcl/
_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from lwcl.platform import coordination; "
          "sys.exit(coordination.serve(sys.argv[2]))")


class ServiceStartError(RuntimeError):
  """The coordination service's process did not start (its own error, when it gave one, in the message)."""


class ServiceProcess:
  """JAX's coordination service running in a child process (``python -c`` importing this module).

  Args:
    module: the module JAX creates its service through (``jaxlib._jax``), imported by the child.
    address: the address to bind (``[::]:port``); num_nodes: the run's process count (int >= 1).
    options: ``get_distributed_runtime_service``'s keyword arguments, as JAX passes them (seconds).
    linger: seconds (float > 0) the child may serve after process 0 is gone (the others need the store
      until their watch has noticed: ``max(devices.startup_timeout, devices.heartbeat_timeout)`` plus a
      margin).
    timeout: seconds to wait for the service to start.

  Raises:
    ServiceStartError: the child did not report the service started within ``timeout`` (its own error,
      when it gave one, is in the message).
  """

  def __init__(self, module: str, address: str, num_nodes: int, options: dict, linger: float,
               timeout: float):
    spec = json.dumps({"module": module, "address": address, "num_nodes": num_nodes, "options": options,
                       "linger": linger})
    # A session of its own: a Ctrl-C in process 0's terminal (SIGINT to the foreground process group)
    # stops process 0 with its line, and the service keeps serving the others until they know it.
    self.process = subprocess.Popen([sys.executable, "-c", _CHILD, _ROOT, spec], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = ""
    if select.select([self.process.stdout], [], [], timeout)[0]:
      line = self.process.stdout.readline().strip()
    if line != "ready":
      self.process.kill()
      self.process.wait()
      raise ServiceStartError(f"the coordination service did not start in its own process at {address} "
                         f"({line or f'nothing said within {timeout:g} s'})")

  def shutdown(self) -> None:
    """Shuts the service down and waits for the child's end (killed after :data:`STOP_WAIT_S` s). JAX's
    ``State.shutdown`` calls it, after the shutdown barrier of its client."""
    with contextlib.suppress(OSError, ValueError):  # the child is already gone
      self.process.stdin.write("stop\n")
      self.process.stdin.close()
    try:
      self.process.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
      self.process.kill()
      self.process.wait()


class _Patched:
  """The module JAX's ``distributed`` calls into, but for ``get_distributed_runtime_service``."""

  def __init__(self, real, start):
    self._real, self.get_distributed_runtime_service = real, start

  def __getattr__(self, name):
    return getattr(self._real, name)


@contextlib.contextmanager
def service_apart(linger: float, timeout: float):
  """Within it, ``jax.distributed.initialize`` in process 0 starts the coordination service in a
  :class:`ServiceProcess` instead of in this process (same address, process count, timeouts; JAX's
  ``global_state.service`` is the handle, whose ``shutdown`` JAX calls at exit). ``linger`` and ``timeout``
  as :class:`ServiceProcess`'s. Yields whether the service goes apart (False: this JAX lacks the private
  attribute, the service stays in process 0, as without lwcl).

  The one use of JAX's private API here: ``jax._src.distributed._jax``, the module whose
  ``get_distributed_runtime_service`` ``State.initialize`` calls (jax 0.10.2), replaced for the length of
  the block and restored after it.
  """
  try:
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    real = distributed._jax  # pylint: disable=protected-access
    real.get_distributed_runtime_service  # pylint: disable=pointless-statement
  except (ImportError, AttributeError):
    logging.warning("lwcl: this JAX has no jax._src.distributed._jax.get_distributed_runtime_service; the "
                    "coordination service stays in process 0 (its death aborts the other processes)")
    yield False
    return

  def start(address, num_nodes, **options):
    return ServiceProcess(real.__name__, address, num_nodes, options, linger, timeout)

  distributed._jax = _Patched(real, start)  # pylint: disable=protected-access
  try:
    yield True
  finally:
    distributed._jax = real  # pylint: disable=protected-access


def established(port: int, proc: str = "/proc/self") -> int | None:
  """How many established TCP connections (IPv4 and IPv6) of this process have the local port ``port``
  (the clients connected to a server listening there), read from ``{proc}/fd`` and ``{proc}/net/tcp*``;
  None where ``/proc`` cannot tell (not Linux)."""
  try:
    inodes = set()
    for fd in os.listdir(f"{proc}/fd"):
      with contextlib.suppress(OSError):  # closed meanwhile
        target = os.readlink(f"{proc}/fd/{fd}")
        if target.startswith("socket:["):
          inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
      with contextlib.suppress(FileNotFoundError), open(f"{proc}/net/{table}", encoding="ascii") as f:
        for line in f.readlines()[1:]:
          fields = line.split()
          local_port = int(fields[1].rsplit(":", 1)[1], 16)
          count += fields[3] == "01" and local_port == port and fields[9] in inodes
    return count
  except OSError:
    return None


def _parent_gone(parent: int, timeout: float) -> bool | None:
  """Waits up to ``timeout`` s for a word from the parent on stdin: True when the parent is gone (stdin
  closed without ``stop``, or this process re-parented), False on ``stop``, None on nothing yet."""
  if select.select([sys.stdin], [], [], timeout)[0]:
    return sys.stdin.readline().strip() != "stop"
  return True if os.getppid() != parent else None


def linger(port: int, seconds: float, connections: Callable[[int], int | None] = established,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> str:
  """Waits, after process 0 is gone, until no client has been connected to ``port`` for :data:`QUIET_S`
  seconds (``"quiet"``), or ``seconds`` have passed (``"timeout"``: a client still connected, or
  ``connections`` cannot tell). ``connections`` counts the clients (:func:`established`); ``clock``
  (seconds) and ``sleep`` are for tests."""
  end, quiet_since = clock() + seconds, None
  while clock() < end:
    if connections(port) == 0:
      quiet_since = clock() if quiet_since is None else quiet_since
      if clock() - quiet_since >= QUIET_S:
        return "quiet"
    else:
      quiet_since = None
    sleep(POLL_S)
  return "timeout"


def serve(spec: str) -> int:
  """The child's main: starts the service (``spec``: :class:`ServiceProcess`'s JSON), says ``ready`` on
  stdout, serves until the parent says ``stop`` (then shuts the service down: exit 0) or is gone (then
  :func:`linger`, and end without shutting the service down, which would wait for clients that are gone:
  exit 0). Exit 1 when the service did not start (its error on stdout, for the parent's message)."""
  args = json.loads(spec)
  try:
    service = importlib.import_module(args["module"]).get_distributed_runtime_service(
        args["address"], args["num_nodes"], **args["options"])
  except Exception as e:  # pylint: disable=broad-except  (reported to the parent, which raises)
    print(f"{type(e).__name__}: {' '.join(str(e).split())[:200]}", flush=True)
    return 1
  print("ready", flush=True)
  parent, gone = os.getppid(), None
  while gone is None:
    gone = _parent_gone(parent, POLL_S)
  if not gone:
    service.shutdown()
    return 0
  linger(int(args["address"].rsplit(":", 1)[1]), args["linger"])
  os._exit(0)  # pylint: disable=protected-access
