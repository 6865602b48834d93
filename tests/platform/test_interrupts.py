"""lwcl/platform/interrupts.py: Ctrl-C recorded by the handler, raised at safe points once per press; not
installed where SIGINT is ignored. The end-to-end cases (Ctrl-C during start-up, mid-task) are in
tests/e2e/test_bad_input.py."""

import os
import signal

import pytest

from lwcl.platform import interrupts


@pytest.fixture
def installed():
  before = signal.getsignal(signal.SIGINT)
  # Python's own handler, whatever the suite was started from (a background job of a non-interactive shell,
  # e.g. `nohup bin/test &`, inherits SIGINT ignored, where install() rightly declines)
  signal.signal(signal.SIGINT, signal.default_int_handler)
  state = dict(interrupts._state)
  interrupts._state.update(installed=False, pressed=False)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, before)
    interrupts._state.clear()
    interrupts._state.update(state)


def test_a_press_is_recorded_and_raised_at_the_next_safe_point_once(installed):
  assert interrupts.install() and interrupts.install()  # idempotent
  interrupts.check()  # nothing pressed: a no-op
  os.kill(os.getpid(), signal.SIGINT)  # handled here: recorded, not raised where the code happened to be
  assert interrupts.pressed()
  with pytest.raises(KeyboardInterrupt):
    interrupts.check()
  interrupts.check()  # raised once per press
  assert not interrupts.pressed()


def test_not_installed_where_sigint_is_ignored(installed):
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  assert not interrupts.install()
  assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
