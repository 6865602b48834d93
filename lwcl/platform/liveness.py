"""A multi-process run's processes watch each other, so that one that stops ends the run with one line.

JAX's distributed service ends a process with a fatal C++ abort (exit 134 and a stack dump, which Python
cannot catch) when the other processes of its run do not all connect within ``initialization_timeout``,
and when one of them stops sending heartbeats for ``heartbeat_timeout_seconds`` (100 s by default: a killed
partner left the others silent for 100 s, then aborted them; issue 32). Here lwcl's own limits come first,
each ending the process with one ``error:`` line and exit status 2 (:func:`lwcl.errors.exit_now`):

* :func:`deadline` bounds ``jax.distributed.initialize`` by ``devices.startup_timeout`` (JAX's own timeout
  is set :data:`JAX_MARGIN` seconds later);
* :class:`Watch`, started once the processes have compared their configs, publishes this process's state
  in the coordinator's key-value store every :data:`BEAT_SECONDS` (a counter, then ``done`` or ``failed``
  when the run ends) and reads every other process's: a partner whose counter has not moved for
  ``devices.heartbeat_timeout`` seconds, or that ended with an error, ends this process too (JAX's
  heartbeat timeout is set :data:`JAX_MARGIN` seconds later). The watch runs in a daemon thread, which holds
  Python's lock for microseconds a second; a process blocked in a collective or a compilation keeps beating
  (JAX releases the lock there).

Process 0 killed or hung is covered like any other process: the coordination service (the key-value store
and JAX's heartbeats) runs in a child process of process 0 (:mod:`lwcl.platform.coordination`), which
serves the others until they have noticed. Before, it ran inside process 0 and died with it, and the
others' JAX clients aborted within 0.2 s (exit 134, 57 lines), before any Python code ran; that is still
what happens where the service cannot be moved (a JAX without the private call lwcl replaces) and when the
service process itself is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from typing import Callable

from lwcl.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, Interrupted, LwclError, exit_now

BEAT_SECONDS = 1.0
JAX_MARGIN = 30  # JAX's own timeouts (start-up, heartbeat) this many seconds after lwcl's
_KEY = "lwcl/liveness/{}"
_DONE, _FAILED = "done", "failed"
_state: dict = {"watch": None}


@contextlib.contextmanager
def deadline(seconds: float, message: str, exit_fn: Callable[[LwclError], None] = exit_now):
  """Ends the process with ``error: <message>`` (exit 2) unless the body returns within ``seconds``.

  For calls into JAX that release Python's lock while they wait (``jax.distributed.initialize``), and that
  would otherwise end in a C++ abort. ``exit_fn`` is for tests.
  """
  timer = threading.Timer(seconds, exit_fn, args=(LwclError(message),))
  timer.daemon = True
  timer.start()
  try:
    yield
  finally:
    timer.cancel()


class Watch:
  """This process's heartbeat in the key-value store, and its watch over the others'.

  Args:
    client: the coordinator's key-value client (``key_value_set(key, value, allow_overwrite)``,
      ``key_value_dir_get(prefix)``: ``[(key, value)]`` of the keys under ``prefix``).
    me: this process's index; processes: their number (int >= 2).
    timeout: seconds (float > 0) a partner's heartbeat may stand still before this process stops.
    exit_fn: called once with the :class:`~lwcl.errors.LwclError` to end the process with (tests pass their
      own); clock: a monotonic clock in seconds, sleep: a sleep in seconds (:meth:`gone`'s; tests pass
      their own).
  """

  def __init__(self, client, me: int, processes: int, timeout: float,
               exit_fn: Callable[[LwclError], None] = exit_now, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep):
    self._client, self.me, self.processes, self._timeout = client, me, processes, timeout
    self._exit, self._clock, self._sleep = exit_fn, clock, sleep
    self._beats = 0
    self._ended = threading.Event()
    self._stopped = threading.Event()  # stop(): the watch's loop returns
    self._publish = threading.Lock()  # a beat never overwrites the end state
    start = clock()
    self._seen = {p: (None, start) for p in range(processes) if p != me}  # last value, when it last changed
    self._unreachable_since = None

  def check_once(self) -> LwclError | None:
    """One beat: publishes this process's counter, reads the others'. Returns the error to stop with (a
    partner silent for longer than the timeout, a partner that failed, the store unreachable for as long),
    or None."""
    now = self._clock()
    try:
      with self._publish:
        if not self._ended.is_set():
          self._beats += 1
          self._client.key_value_set(_KEY.format(self.me), str(self._beats), allow_overwrite=True)
      values = self._states()
    except Exception as e:  # pylint: disable=broad-except  (the store's RPC failed)
      self._unreachable_since = self._unreachable_since or now
      if now - self._unreachable_since > self._timeout:
        return LwclError(f"process {self.me} of {self.processes}: the coordinator (process 0) has not answered for "
                         f"{now - self._unreachable_since:.0f} s ({type(e).__name__}); see process 0's output, "
                         "then rerun every process (the run resumes from its last checkpoint)")
      return None
    self._unreachable_since = None
    for p, value in values.items():
      last, since = self._seen[p]
      if value == _FAILED:
        return LwclError(f"process {p} of {self.processes} stopped (an error or Ctrl-C: its output has the line), so "
                         f"process {self.me} stops too; rerun every process once that is fixed (the run resumes "
                         "from its last checkpoint)")
      if value != last:
        self._seen[p] = (value, now)
      elif value != _DONE and now - since > self._timeout:
        state = "has not started its heartbeat" if value is None else "stopped sending its heartbeat"
        return LwclError(f"process {p} of {self.processes} {state} {now - since:.0f} s ago (devices.heartbeat_timeout="
                         f"{self._timeout:g} s): it was killed, crashed or hangs; process {self.me} stops. Rerun "
                         "every process (the run resumes from its last checkpoint), or raise "
                         "--config.devices.heartbeat_timeout if it was only slow")
    return None

  def _states(self) -> dict:
    """``{process: its published value, or None}`` of every other process, in one request to the store
    (one per beat, whatever the number of processes)."""
    published = dict(self._client.key_value_dir_get(_KEY.format("")))
    return {p: published.get(_KEY.format(p)) for p in self._seen}

  def gone(self, seconds: float) -> list:
    """The other processes that look gone: published ``failed``, or whose heartbeat did not move in
    ``seconds`` (at least two beats, so a live partner moves; ``done`` partners excluded), read twice
    ``seconds`` apart; ``[]`` when the store cannot be read. For naming a partner that left a collective
    (gloo names its address only)."""
    try:
      before = self._states()
      self._sleep(seconds)
      after = self._states()
    except Exception:  # pylint: disable=broad-except  (the store is gone)
      return []
    return [p for p, v in after.items() if v == _FAILED or (v == before[p] and v != _DONE)]

  def end(self, failed: bool) -> None:
    """Publishes this process's end (``failed``: with an error or Ctrl-C, which stops the others at their
    next check); it keeps watching the others until it exits."""
    with self._publish, contextlib.suppress(Exception):  # the store is gone: the others learn it from JAX
      self._ended.set()
      self._client.key_value_set(_KEY.format(self.me), _FAILED if failed else _DONE, allow_overwrite=True)

  def wait_for_others(self, seconds: float) -> None:
    """Waits up to ``seconds`` until every other process has ended (published ``done`` or ``failed``):
    where the coordination service runs inside process 0 (:mod:`lwcl.platform.coordination` could not move
    it), its exit would abort them (JAX) before their watch could say why."""
    deadline = self._clock() + seconds
    while self._clock() < deadline:
      try:
        if all(v in (_DONE, _FAILED) for v in self._states().values()):
          return
      except Exception:  # pylint: disable=broad-except  (the store is gone)
        return
      time.sleep(0.05)

  def run_forever(self) -> None:
    """Checks every :data:`BEAT_SECONDS` until a check returns an error or :meth:`stop` is called; on an
    error publishes ``failed`` (so that the others stop too, and the coordinator waits for them) and calls
    ``exit_fn`` with it."""
    while not self._stopped.is_set():
      error = self.check_once()
      if error is not None:
        self.end(failed=True)
        if self.me == 0:
          self.wait_for_others(3 * BEAT_SECONDS + 1)
        self._exit(error)
        return
      self._stopped.wait(BEAT_SECONDS)

  def stop(self) -> None:
    """Ends :meth:`run_forever` after its current check (no error is raised or published)."""
    self._stopped.set()


def _shut_down_then_stop(watch: Watch, thread: threading.Thread) -> None:
  """An ``atexit`` handler run before JAX's own clean-up (registered after it) when the run ended without
  an error: JAX's shutdown barrier (``jax.distributed.shutdown``, which JAX's clean-up would call next),
  while the watch still watches the others, then the watch stopped and its thread joined. A daemon thread
  still inside a call into JAX's client when Python finalizes is ended by ``pthread_exit`` as it comes back
  for Python's lock, and the unwinding through the binding's C++ frames aborts the process ("FATAL:
  exception not rethrown", exit 134; the CPython hazard of daemon threads in C++ code, e.g. CPython issue
  bpo-42969): seen once in the suite on an overloaded machine, after both processes had written their
  results."""
  import jax  # pylint: disable=g-import-not-at-top  (loaded: a watch exists only after jax.distributed)
  with contextlib.suppress(Exception):  # a failing barrier is JAX's to report, as at its own clean-up
    jax.distributed.shutdown()
  watch.stop()
  thread.join(timeout=3 * BEAT_SECONDS + 5)


def _exit_at_once(watch: Watch, me: int, status: int) -> None:
  """An ``atexit`` handler run before JAX's (registered after it): a process that failed skips JAX's
  shutdown barrier, which would wait for partners that are stopping too, then abort. The coordinator
  first lets the others see that it failed and leave."""
  if me == 0:
    watch.wait_for_others(3 * BEAT_SECONDS + 1)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


def start(client, me: int, processes: int, timeout: float) -> Watch:
  """Starts this process's :class:`Watch` in a daemon thread (once per process) and returns it; at exit
  without an error the thread is stopped after JAX's shutdown barrier (:func:`_shut_down_then_stop`)."""
  if _state["watch"] is None:
    watch = Watch(client, me, processes, timeout)
    thread = threading.Thread(target=watch.run_forever, name="lwcl-liveness", daemon=True)
    thread.start()
    _state["watch"] = watch
    atexit.register(_shut_down_then_stop, watch, thread)
  return _state["watch"]


_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def lost_partner(error: BaseException) -> LwclError | None:
  """The one line for a collective that failed because another process of the run is gone (gloo's
  ``Connection closed by peer``, raised as a ``JaxRuntimeError`` in every process still in the collective),
  or None for any other error, and outside a watched multi-process run. With more than two processes the
  line names the partners whose heartbeat stopped (:meth:`Watch.gone`, 2.5 s), "it" when none did yet."""
  watch = _state["watch"]
  text = " ".join(str(error).split())
  if watch is None or "Gloo" not in text or not any(lost in text for lost in _LOST):
    return None
  # gloo names the partner's address, not its index: in a larger run the store says who stopped beating.
  gone = [1 - watch.me] if watch.processes == 2 else watch.gone(2.5 * BEAT_SECONDS)
  who = ("it was" if not gone else f"process {gone[0]} was" if len(gone) == 1 else
         f"processes {', '.join(map(str, gone))} were")
  return LwclError(f"process {watch.me} of {watch.processes}: another process of this run left a collective "
                   f"({text[text.index('Gloo'):][:120]}): {who} killed or stopped (its output says why); "
                   "rerun every process once that is fixed (the run resumes from its last checkpoint)")


def end(error: BaseException | None) -> None:
  """Publishes how this process's run ended when a :class:`Watch` runs (:meth:`Watch.end`), else nothing.
  A process that failed (``error`` not None) then ends, after its error line is printed, without JAX's
  shutdown barrier, with exit status 130 for :class:`~lwcl.errors.Interrupted`, 2 for another
  :class:`~lwcl.errors.LwclError`, 1 for anything else (a bug: its traceback is printed first)."""
  watch = _state["watch"]
  if watch is None:
    return
  watch.end(failed=error is not None)
  if error is not None:
    status = EXIT_INTERRUPTED if isinstance(error, Interrupted) else (
        EXIT_USER_ERROR if isinstance(error, LwclError) else 1)
    atexit.register(_exit_at_once, watch, watch.me, status)
