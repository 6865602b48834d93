"""lwcl/platform/quiet.py: what is dropped from stderr (orbax's echoes of a failed write, closed-loop
callbacks, TensorFlow's start-up lines, TFDS's warnings during a look-up) and what is not. The end-to-end
cases (a full disk under bin/compare, a TFDS data set that is not prepared) are in
tests/e2e/test_bad_input.py."""

import logging
import subprocess
import sys
import types

from lwcl.platform import quiet

from helpers import ROOT


def _record(path, exc_from=None, level=logging.ERROR):
  """A log record made at ``path``, carrying an exception raised in a file named ``exc_from``."""
  exc_info = None
  if exc_from is not None:
    try:
      exec(compile("raise ValueError('RESOURCE_EXHAUSTED: No space left on device')", exc_from, "exec"))
    except ValueError:
      exc_info = sys.exc_info()
  return logging.LogRecord("x", level, path, 1, "failed", None, exc_info)


def test_only_exceptions_through_orbax_are_dropped():
  orbax = "/site-packages/orbax/checkpoint/_src/serialization/serialization.py"
  assert not quiet.drop_orbax_echo(_record(orbax, exc_from="/elsewhere.py"))  # logged by orbax's threads
  assert not quiet.drop_orbax_echo(_record("/asyncio/base_events.py", exc_from=orbax))  # an orbax task's
  assert quiet.drop_orbax_echo(_record("/asyncio/base_events.py", exc_from="/lwcl/io/checkpoint.py"))
  assert quiet.drop_orbax_echo(_record(orbax))  # no exception: a plain log line of orbax's stays


def test_closed_loop_callbacks_are_dropped_other_unraisable_errors_kept():
  seen = []
  hook = quiet.drop_closed_loop_callbacks(seen.append)
  hook(types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed")))
  other = types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed, and more"))
  hook(other)
  assert seen == [other]


def test_tfds_warnings_are_dropped_only_inside_the_block():
  absl = logging.getLogger("absl")
  tfds = "/site-packages/tensorflow_datasets/core/utils/file_utils.py"
  with quiet.warnings_of("tensorflow_datasets"):
    assert not absl.filter(_record(tfds, level=logging.WARNING))
    assert absl.filter(_record(tfds, level=logging.ERROR))
    assert absl.filter(_record("/site-packages/lwcl/data/sources.py", level=logging.WARNING))
  assert absl.filter(_record(tfds, level=logging.WARNING))


CAPTURED = """
import os, sys
from lwcl.platform import quiet
try:
  with quiet._fd2_captured():
    os.write(2, b"C++ chatter\\n")
    print("python chatter", file=sys.stderr)
    if sys.argv[1] == "fail":
      raise ImportError("no tensorflow")
except ImportError as e:
  print(f"raised: {e}", file=sys.stderr)
print("after", file=sys.stderr)
"""


def test_stderr_of_the_block_is_dropped_on_success_and_written_out_on_failure():
  run = lambda how: subprocess.run([sys.executable, "-c", CAPTURED, how], capture_output=True, text=True,  # noqa: E731
                                   cwd=ROOT, timeout=120).stderr
  assert run("ok") == "after\n"
  assert run("fail") == "C++ chatter\npython chatter\nraised: no tensorflow\nafter\n"


_LEAK = """
import os, sys
sys.path.insert(0, {root!r})
from multiprocessing import shared_memory
if sys.argv[1] == "quiet":
  from lwcl.platform import quiet
  quiet.install()
shm = shared_memory.SharedMemory(create=True, size=4096)  # starts the resource tracker, never unlinked
print(shm.name, flush=True)
os._exit(0)  # as a process ends while grain's batches are still queued in shared memory
"""


def test_the_resource_trackers_leak_warning_is_dropped_and_the_memory_still_freed():
  import os
  import time
  for mode in ("plain", "quiet"):
    proc = subprocess.run([sys.executable, "-c", _LEAK.format(root=ROOT), mode], capture_output=True, text=True,
                          timeout=60)
    name = proc.stdout.strip().lstrip("/")
    deadline = time.monotonic() + 10
    while os.path.exists(f"/dev/shm/{name}") and time.monotonic() < deadline:
      time.sleep(0.05)  # the tracker frees it when it sees its last client gone
    assert not os.path.exists(f"/dev/shm/{name}"), mode
    warned = "leaked shared_memory objects" in proc.stderr
    assert warned == (mode == "plain"), proc.stderr  # the control shows the warning this test drops
