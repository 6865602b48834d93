"""lwcl.engine.run_io: the message of a stopped run places its checkpoint in the stream."""

import types

from lwcl.engine import run_io
from lwcl.errors import DivergenceError


def test_stop_messages_place_the_checkpoint_in_the_stream():
  def stopped_run(checkpoint_step, task, task_step, error=KeyboardInterrupt()):
    ckpt = types.SimpleNamespace(latest_step=lambda: checkpoint_step)
    run = types.SimpleNamespace(ckpt=ckpt, progress=types.SimpleNamespace(task=task, task_step=task_step),
                                workdir="W")
    return str(run_io.stopped(run, error, [10, 10, 10]))
  assert stopped_run(16, 1, 7) == ("interrupted (Ctrl-C) in task 2 of 3 after step 7 of the task, in W; rerun "
                                   "the same command to resume from its last checkpoint (task 2, step 6 of the "
                                   "task)")
  assert stopped_run(20, 2, 0).endswith("from its last checkpoint (end of task 2)")
  assert "after its last task" in stopped_run(30, 3, 0)
  assert stopped_run(None, 0, 3).endswith("from the start (no checkpoint was written yet)")
  diverged = stopped_run(None, 0, 3, DivergenceError("the training loss became nan; lower it"))
  assert diverged == "the training loss became nan; lower it (no checkpoint was written)"
  assert stopped_run(4, 0, 5, DivergenceError("x; y")).endswith("(the last good checkpoint (task 1, step 4 of "
                                                                "the task) is kept)")
