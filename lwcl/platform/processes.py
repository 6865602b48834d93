"""Multi-process start-up (``devices.multihost``): ``jax.distributed.initialize`` bounded in time and checked,
and the processes' configs compared before any of them trains.

Issue 32 found a multi-process run's start-up unchecked: a malformed ``devices.coordinator_address`` or a
port in use crashed inside ``jax.distributed.initialize`` (segmentation fault), a wrong port or one process
of two sat silent for 5 minutes (JAX's default ``initialization_timeout``), ``process_id=5`` of 2 and
``multihost=True`` without a coordinator ended in tracebacks, and a process started with another learning
rate (or another workdir) trained to the end with exit 0, its ``results.json`` recording a value the
other process did not use. Here:

* the address (``host:port``, a port in 1..65535), ``process_id < num_processes`` and the presence of what
  auto-detection cannot find are checked before JAX is called; process 0 checks that it can bind the port;
* a process other than 0 waits at most ``devices.startup_timeout`` seconds for the coordinator's port to
  answer (one line if it does not: a wrong address or port, process 0 not started);
  ``jax.distributed.initialize`` gets the same time (:func:`lwcl.platform.liveness.deadline`: one line
  when the other processes never register, where JAX would abort), and its failures that reach Python
  become one line;
* every process puts its config (all of it but ``devices.process_id`` and the timeout, plus its workdir) in the
  coordinator's key-value store and reads every other's, waiting at most ``devices.startup_timeout``
  seconds; the first difference is named (key, this process's value, the other's) by every process, which
  then all end with exit 2, before any collective;
* then each process watches the others (:mod:`lwcl.platform.liveness`): one killed, hung or failed ends
  the others within ``devices.heartbeat_timeout`` seconds, with one line (JAX would wait 100 s and abort);
  process 0 included, whose coordination service runs in a child process of its own
  (:mod:`lwcl.platform.coordination`), serving the others after process 0's death for at most
  ``max(devices.startup_timeout, devices.heartbeat_timeout)`` + :data:`LINGER_MARGIN_S` seconds.
"""

from __future__ import annotations

import json
import re
import socket
import time

import jax

from lwcl.errors import ConfigError, LwclError
from lwcl.platform import coordination, liveness

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_state = {"initialized": False}
LINGER_MARGIN_S = 3 * liveness.BEAT_SECONDS + 2  # the others' last beat, then their exit


def check_address(address: str) -> tuple[str, int]:
  """``(host, port)`` of a coordinator address ``host:port`` (IPv6 hosts in brackets).

  Raises:
    ConfigError: not ``host:port``, or a port outside 1..65535 (JAX crashes on both).
  """
  match = _ADDRESS.match(address)
  port = int(match.group(2)) if match else 0
  if not match or not 1 <= port <= 65535:
    raise ConfigError(f"devices.coordinator_address={address!r} is not host:port with a port in 1..65535; give "
                      "e.g. --config.devices.coordinator_address=10.0.0.1:1234 (the host of process 0)")
  return match.group(1).strip("[]"), port


def check_settings(devices_config) -> None:
  """What can be checked before ``jax.distributed.initialize`` (which crashes or hangs on it).

  Raises:
    ConfigError: a malformed address, ``process_id >= num_processes``, or only some of address, process
      count and id given.
  """
  address, n, pid = devices_config.coordinator_address, devices_config.num_processes, devices_config.process_id
  if address:
    check_address(address)
  if n > 0 and pid >= n:
    raise ConfigError(f"devices.process_id={pid} is not below devices.num_processes={n}; give each process "
                      f"an id in 0..{n - 1}")
  given = [bool(address), n > 0, pid >= 0]
  if any(given) and not all(given):
    missing = [k for k, g in zip(("coordinator_address", "num_processes", "process_id"), given) if not g]
    raise ConfigError(f"devices.multihost with {', '.join(f'devices.{k}' for k in missing)} left to "
                      "auto-detection, but the others given; give all three (e.g. --config.devices."
                      "coordinator_address=HOST:PORT --config.devices.num_processes=2 "
                      "--config.devices.process_id=0) or none (TPU pods, SLURM)")


def _wait_for_coordinator(host: str, port: int, timeout: float) -> bool:
  """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds (tried every 0.25 s)."""
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, port), timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
        return True
    except OSError:
      if time.monotonic() >= deadline:
        return False
      time.sleep(0.25)


def _port_free(host: str, port: int) -> bool:
  with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
    try:
      s.bind(("", port))
    except OSError:
      return False
  return True


def initialize(devices_config) -> None:
  """Calls ``jax.distributed.initialize`` once when the config asks for multi-host (CPU collectives through
  gloo, ``jax_cpu_collectives_implementation``: the setting concerns the CPU backend only), within
  ``devices.startup_timeout`` seconds.

  Process 0 starts JAX's coordination service in a child process (:func:`lwcl.platform.coordination.
  service_apart`), which ends with JAX's shutdown at exit, or lingers after process 0's death as that
  module says.

  Raises:
    ConfigError: :func:`check_settings`.
    LwclError: process 0's port is in use, the coordination service did not start, or the processes did not
      all connect in time (one line naming the address, the process and the fix).
  """
  if not devices_config.multihost or _state["initialized"]:
    return
  check_settings(devices_config)
  address, n, pid = devices_config.coordinator_address, devices_config.num_processes, devices_config.process_id
  timeout = devices_config.startup_timeout
  if address:
    host, port = check_address(address)
    if pid == 0 and not _port_free(host, port):
      raise LwclError(f"port {port} of devices.coordinator_address={address} is in use on process 0's host; "
                      "pick a free port for every process")
    if pid > 0 and not _wait_for_coordinator(host, port, timeout):
      raise LwclError(f"process {pid} of {n}: no coordinator answered at {address} within "
                      f"devices.startup_timeout={timeout:g} s; start process 0 with the same "
                      "coordinator_address (its host and a free port), or raise --config.devices.startup_timeout")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  # JAX's own limits (a C++ abort) come after lwcl's (one line).
  kwargs = {"initialization_timeout": max(1, round(timeout)) + liveness.JAX_MARGIN,
            "heartbeat_timeout_seconds": max(1, round(devices_config.heartbeat_timeout)) + liveness.JAX_MARGIN}
  if address:
    kwargs.update(coordinator_address=address, num_processes=n, process_id=pid)
  # Process 0's service in a child process, serving the others after process 0's death until they noticed.
  linger = max(timeout, devices_config.heartbeat_timeout) + LINGER_MARGIN_S
  where = f"process {pid} of {n} at {address}" if address else "auto-detected multi-host start-up"
  fix = ("start every process with the same coordinator_address and num_processes (process 0 on that host), "
         "or raise --config.devices.startup_timeout")
  try:
    with liveness.deadline(timeout, f"{where}: the processes did not all connect within devices.startup_timeout="
                                    f"{timeout:g} s; {fix}"), coordination.service_apart(linger, timeout):
      jax.distributed.initialize(**kwargs)
  except coordination.ServiceStartError as e:
    raise LwclError(f"{where}: {' '.join(str(e).split())[:300]}; check that process 0's host can bind that "
                    "port, or pick another with --config.devices.coordinator_address") from None
  except Exception as e:  # pylint: disable=broad-except  (JAX raises RuntimeError, ValueError, XlaRuntimeError)
    detail = " ".join(str(e).split())[:200]
    raise LwclError(f"{where}: the processes did not all connect within devices.startup_timeout={timeout:g} s "
                    f"({type(e).__name__}: {detail}); {fix}") from None
  _state["initialized"] = True


def _flat(node, prefix: str = "") -> dict:
  out = {}
  for key, value in node.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def compared_settings(config, workdir: str) -> dict:
  """What every process of a run must agree on: every config key (flattened, JSON values) but
  ``devices.process_id`` and the timeouts (each process's own), and ``workdir``."""
  flat = _flat(json.loads(config.to_json_best_effort(sort_keys=True)))
  for own in ("devices.process_id", "devices.startup_timeout", "devices.heartbeat_timeout"):
    flat.pop(own, None)
  flat["workdir"] = workdir
  return flat


def first_difference(mine: dict, theirs: dict) -> tuple[str, object, object] | None:
  """``(key, my value, their value)`` of the first key (sorted) where two :func:`compared_settings`
  differ (a missing key reads ``<missing>``), or None."""
  for key in sorted(set(mine) | set(theirs)):
    a, b = mine.get(key, "<missing>"), theirs.get(key, "<missing>")
    if a != b:
      return key, a, b
  return None


def check_agreement(config, workdir: str) -> None:
  """Every process of a multi-host run compares its :func:`compared_settings` with every other's through
  the coordinator's key-value store (no collective), waiting at most ``devices.startup_timeout`` seconds
  for each, then starts watching them (:func:`lwcl.platform.liveness.start`). A no-op for single-process
  runs.

  Raises:
    LwclError: one line naming the first difference and the other process, or a process that never
      published its config in time.
  """
  if not config.devices.multihost or jax.process_count() == 1:
    return
  from jax._src import distributed  # pylint: disable=g-import-not-at-top  (the coordinator's client)
  client = distributed.global_state.client
  me, timeout_ms = jax.process_index(), int(config.devices.startup_timeout * 1000)
  mine = compared_settings(config, workdir)
  client.key_value_set(f"lwcl/settings/{me}", json.dumps(mine, sort_keys=True))
  for other in range(jax.process_count()):
    if other == me:
      continue
    try:
      theirs = json.loads(client.blocking_key_value_get(f"lwcl/settings/{other}", timeout_ms))
    except Exception as e:  # pylint: disable=broad-except  (a timeout: XlaRuntimeError DEADLINE_EXCEEDED)
      raise LwclError(f"process {other} did not publish its config within devices.startup_timeout="
                      f"{config.devices.startup_timeout} s ({type(e).__name__}); check that it started and "
                      "runs this lwcl version") from None
    diff = first_difference(mine, theirs)
    if diff is not None:
      key, a, b = diff
      raise LwclError(f"process {me} and process {other} of this run differ in {key} ({a!r} here, {b!r} "
                      "there); start every process with the same config, overrides and --workdir")
  liveness.start(client, me, jax.process_count(), config.devices.heartbeat_timeout)
