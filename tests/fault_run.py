"""``python -m lwcl.main`` with a fault injected: SIGKILL right after a given global train step.

    python tests/fault_run.py STEP --config=... --workdir=... [--config.a.b=value ...]

The kill comes through :func:`lwcl.main.run`'s ``on_step`` hook, so the production loop has no test-only
code; the process dies as a preempted job would (no cleanup, no flush).
"""

import os
import signal
import sys

from lwcl import main


def _kill_after(step: int):
  def on_step(global_step: int) -> None:
    if global_step == step:
      os.kill(os.getpid(), signal.SIGKILL)
  return on_step


if __name__ == "__main__":
  kill_after = int(sys.argv.pop(1))
  main.run(on_step=_kill_after(kill_after))
