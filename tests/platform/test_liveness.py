"""The multi-process watch (lwcl/platform/liveness.py) on a fake key-value store and clock: which partner
states stop a process, after how long, and with which line. A real 2-process kill runs in
tests/e2e/test_multi_device.py."""

import threading
import time

import jax
import pytest

from lwcl.errors import LwclError
from lwcl.platform import liveness


class Store:
  """The coordinator's key-value store as JAX's client exposes it (a directory read returns the keys
  under a prefix as ``[(key, value)]``, as jaxlib 0.10.2's ``key_value_dir_get`` does)."""

  def __init__(self):
    self.values, self.down, self.requests = {}, False, 0

  def key_value_set(self, key, value, allow_overwrite=False):
    if self.down:
      raise RuntimeError("UNAVAILABLE: Socket closed")
    assert allow_overwrite or key not in self.values
    self.values[key] = value

  def key_value_dir_get(self, prefix):
    if self.down:
      raise RuntimeError("UNAVAILABLE: Socket closed")
    self.requests += 1
    return [(k, v) for k, v in sorted(self.values.items()) if k.startswith(prefix)]


class Clock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def watches(n=3, timeout=5.0):
  store, clock = Store(), Clock()
  return store, clock, [liveness.Watch(store, p, n, timeout, exit_fn=None, clock=clock) for p in range(n)]


def beat_all(ws, clock, seconds=1.0, skip=()):
  clock.now += seconds
  return [None if i in skip else w.check_once() for i, w in enumerate(ws)]


def test_beating_processes_never_stop_each_other():
  store, clock, ws = watches()
  for _ in range(30):
    assert beat_all(ws, clock) == [None, None, None]
  assert store.values == {f"lwcl/liveness/{p}": "30" for p in range(3)}
  assert store.requests == 90  # one read per process and beat, whatever the number of processes


def test_a_silent_partner_stops_the_others_after_the_timeout_and_not_before():
  store, clock, ws = watches(timeout=5.0)
  beat_all(ws, clock)
  last_beat = clock.now  # process 2's last beat; then it is killed
  rounds = [beat_all(ws, clock, skip=(2,)) for _ in range(10)]
  first = [next(i for i, r in enumerate(rounds) if r[me] is not None) for me in (0, 1)]
  for me in (0, 1):
    # Silent for more than 5 s as each watcher saw it: a beat is seen at the watcher's next check, so the
    # stop comes 6-7 s after the last beat, never within the timeout.
    waited = clock.now - (len(rounds) - 1 - first[me]) - last_beat
    assert 6 <= waited <= 7, waited
    assert str(rounds[first[me]][me]) == (
        f"process 2 of 3 stopped sending its heartbeat 6 s ago (devices.heartbeat_timeout=5 s): it was "
        f"killed, crashed or hangs; process {me} stops. Rerun every process (the run resumes from its last "
        "checkpoint), or raise --config.devices.heartbeat_timeout if it was only slow")
    assert isinstance(rounds[first[me]][me], LwclError)


def test_a_partner_that_never_beats_is_named_as_such():
  _, clock, ws = watches(n=2, timeout=2.0)
  for _ in range(2):
    assert beat_all(ws, clock, skip=(1,))[0] is None
  assert "process 1 of 2 has not started its heartbeat 3 s ago" in str(beat_all(ws, clock, skip=(1,))[0])


def test_a_failed_partner_stops_the_others_at_once_and_a_finished_one_never():
  _, clock, ws = watches()
  beat_all(ws, clock)
  ws[1].end(failed=False)  # finished: may stay silent (JAX's shutdown barrier) for as long as it likes
  for _ in range(20):
    assert beat_all(ws, clock)[0] is None
  ws[2].end(failed=True)
  error = beat_all(ws, clock)[0]
  assert str(error).startswith("process 2 of 3 stopped (an error or Ctrl-C: its output has the line), so process 0 "
                               "stops too")


def test_an_unreachable_store_stops_after_the_timeout():
  store, clock, ws = watches(n=2, timeout=3.0)
  beat_all(ws, clock)
  store.down = True  # process 0 (the coordinator) gone
  assert [beat_all(ws, clock)[1] for _ in range(4)] == [None] * 4  # first failure at 0 s, the fourth at 3 s
  error = beat_all(ws, clock)[1]
  assert "process 1 of 2: the coordinator (process 0) has not answered for 4 s (RuntimeError)" in str(error)
  store.down = False
  assert beat_all(ws, clock)[1] is None  # reachable again: the count starts over


def test_the_end_state_is_never_overwritten_by_a_beat():
  store = Store()
  w = liveness.Watch(store, 0, 2, 60.0, exit_fn=None)
  store.key_value_set("lwcl/liveness/1", "1")
  stop = threading.Event()

  def beat():
    while not stop.is_set():
      w.check_once()
  thread = threading.Thread(target=beat)
  thread.start()
  time.sleep(0.01)
  w.end(failed=True)
  time.sleep(0.01)
  stop.set()
  thread.join()
  assert store.values["lwcl/liveness/0"] == "failed"


def test_the_thread_calls_exit_once_with_the_error(monkeypatch):
  monkeypatch.setattr(liveness, "BEAT_SECONDS", 0.01)
  store, exits = Store(), []
  w = liveness.Watch(store, 0, 2, 0.05, exit_fn=exits.append)
  thread = threading.Thread(target=w.run_forever, daemon=True)
  thread.start()
  thread.join(timeout=10)
  assert not thread.is_alive() and len(exits) == 1 and "process 1 of 2 has not started its heartbeat" in str(exits[0])
  assert store.values["lwcl/liveness/0"] == "failed"  # the others stop too


def test_at_exit_the_barrier_runs_while_the_watch_watches_then_the_watch_stops(monkeypatch):
  monkeypatch.setattr(liveness, "BEAT_SECONDS", 0.01)
  store = Store()
  w = liveness.Watch(store, 0, 2, 60.0, exit_fn=pytest.fail)
  thread = threading.Thread(target=w.run_forever, daemon=True)
  thread.start()
  during = []

  def barrier():  # JAX's shutdown barrier: the partner may still die while it waits, so the watch goes on
    before = store.requests
    time.sleep(0.2)
    during.append((thread.is_alive(), store.requests > before))

  monkeypatch.setattr(jax.distributed, "shutdown", barrier)
  liveness._shut_down_then_stop(w, thread)
  assert during == [(True, True)] and not thread.is_alive()  # joined: no thread left in the client's calls


def test_deadline_fires_only_when_the_body_overruns():
  exits = []
  with liveness.deadline(0.05, "too slow", exit_fn=exits.append):
    pass
  time.sleep(0.1)
  assert exits == []
  with liveness.deadline(0.02, "too slow", exit_fn=exits.append):
    time.sleep(0.2)
  assert [str(e) for e in exits] == ["too slow"]


@pytest.mark.parametrize("error", [None, LwclError("x")])
def test_end_without_a_watch_is_a_no_op(error):
  liveness.end(error)  # single-process runs never start one


GLOO = ("INTERNAL: Gloo all-reduce failed: [external/gloo/gloo/transport/tcp/pair.cc:547] Connection closed by "
        "peer [127.0.0.1]:12961")


@pytest.mark.parametrize("me, processes, who", [(1, 2, "process 0 was killed"), (0, 2, "process 1 was killed"),
                                                 (2, 3, "it was killed")])
def test_a_lost_collective_names_the_other_process_where_there_is_one(monkeypatch, me, processes, who):
  # gloo names the peer's address, not its index: a 2-process run knows which process left; a larger one
  # asks the store (test_a_lost_collective_in_a_larger_run_names_the_partner_that_stopped), and says "it"
  # when the store cannot tell (here: unreachable).
  store = Store()
  store.down = processes > 2
  watch = liveness.Watch(store, me, processes, 5.0, exit_fn=None, sleep=lambda s: None)
  monkeypatch.setitem(liveness._state, "watch", watch)
  error = liveness.lost_partner(RuntimeError(GLOO))
  assert str(error).startswith(f"process {me} of {processes}: another process of this run left a collective "
                               "(Gloo all-reduce failed"), error
  assert f"): {who} or stopped (its output says why)" in str(error)
  assert "(the run resumes from its last checkpoint)" in str(error)
  assert liveness.lost_partner(RuntimeError("INTERNAL: something else")) is None


def test_gone_names_the_partners_whose_heartbeat_stopped_or_failed():
  store = Store()
  sleeps = []
  watch = liveness.Watch(store, 0, 5, 5.0, exit_fn=None, sleep=lambda s: sleeps.pop(0)(s))
  store.values.update({"lwcl/liveness/1": "7", "lwcl/liveness/2": "3", "lwcl/liveness/3": "done",
                       "lwcl/liveness/4": "9"})

  def two_beats(seconds):  # processes 1 and 4 beat on; 2 stopped; 3 finished
    assert seconds == 2.5
    store.values.update({"lwcl/liveness/1": "9", "lwcl/liveness/4": "11"})

  sleeps.append(two_beats)
  assert watch.gone(2.5) == [2]
  store.values["lwcl/liveness/4"] = "failed"
  sleeps.append(lambda s: None)
  assert watch.gone(2.5) == [1, 2, 4]  # 1 did not move in this (instant) read
  store.down = True
  assert watch.gone(2.5) == []


def test_a_lost_collective_in_a_larger_run_names_the_partner_that_stopped(monkeypatch):
  store = Store()
  store.values.update({"lwcl/liveness/0": "4", "lwcl/liveness/1": "5", "lwcl/liveness/3": "6"})

  def beat(seconds):  # 0 and 3 beat on, 1 was killed
    store.values.update({"lwcl/liveness/0": "6", "lwcl/liveness/3": "8"})

  monkeypatch.setitem(liveness._state, "watch", liveness.Watch(store, 2, 4, 5.0, exit_fn=None, sleep=beat))
  assert "): process 1 was killed or stopped (its output says why)" in str(liveness.lost_partner(RuntimeError(GLOO)))


def test_a_lost_collective_names_every_partner_that_stopped(monkeypatch):
  store = Store()
  store.values.update({"lwcl/liveness/0": "4", "lwcl/liveness/1": "5", "lwcl/liveness/3": "failed"})
  watch = liveness.Watch(store, 2, 4, 5.0, exit_fn=None, sleep=lambda s: None)  # nobody beats meanwhile
  monkeypatch.setitem(liveness._state, "watch", watch)
  assert "): processes 0, 1, 3 were killed or stopped" in str(liveness.lost_partner(RuntimeError(GLOO)))
