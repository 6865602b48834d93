"""lwcl.core.record: the record as checkpointed. A run that records no Task-IL matrix (every run but a
class-incremental one) keeps the layout its checkpoints had before the matrix existed, so they resume; a
class-incremental run's record carries it through a checkpoint."""

import flax.serialization
import numpy as np
import pytest

from lwcl.core.record import Record
from lwcl.io.checkpoint import RunCheckpointer

# The fields of the checkpointed record before the Task-IL matrix (checkpoint format 4).
BEFORE_TASK_IL = ["R", "b", "epoch_acc", "final_loss", "lca", "method_report", "readouts"]


@pytest.mark.parametrize("task_il", [False, True])
def test_the_task_il_matrix_is_checkpointed_only_when_recorded(tmp_path, task_il):
  record = Record.zeros(3, 2, {}, 1, ("steps",), task_il=task_il)
  assert sorted(flax.serialization.to_state_dict(record)) == sorted(BEFORE_TASK_IL + ["task_il_R"] * task_il)
  written = record.writable()
  written.R[1, 0] = 0.5
  if task_il:
    written.task_il_R[1, 0] = 0.75
  ckpt = RunCheckpointer(str(tmp_path / "checkpoints"), 2, {"a": 1})
  ckpt.save(1, {"record": written}, {"task": 2})
  ckpt.close()
  restored, _ = RunCheckpointer(str(tmp_path / "checkpoints"), 2, {"a": 1}).restore({"record": record})
  restored = restored["record"]
  assert restored.R[1, 0] == 0.5
  if task_il:
    assert restored.task_il_R.shape == (3, 3) and restored.task_il_R[1, 0] == 0.75
  else:
    assert restored.task_il_R is None


def test_a_state_dict_of_the_other_layout_is_refused():
  plain, task_il = Record.zeros(2, 0, {}), Record.zeros(2, 0, {}, task_il=True)
  with pytest.raises(ValueError, match="task_il_R"):
    flax.serialization.from_state_dict(task_il, flax.serialization.to_state_dict(plain))
  with pytest.raises(ValueError, match="task_il_R"):
    flax.serialization.from_state_dict(plain, flax.serialization.to_state_dict(task_il))
  again = flax.serialization.from_state_dict(task_il, flax.serialization.to_state_dict(task_il))
  np.testing.assert_array_equal(again.task_il_R, np.zeros((2, 2)))
