"""lwcl.io.checkpoint: checksums on every checkpoint; a checkpoint of another format version, or one lacking an
entry the run's state now has, is refused."""

import os

import numpy as np
import pytest

from lwcl.errors import CheckpointError
from lwcl.io import checkpoint
from lwcl.io.checkpoint import RunCheckpointer, state_checksum

from helpers import flip_bytes


def test_checksum_is_checked_on_every_checkpoint_and_none_intact_is_said(tmp_path):
  directory = str(tmp_path / "checkpoints")
  state = {"w": np.arange(4096, dtype=np.float32), "count": np.array(3, np.int32)}
  ckpt = RunCheckpointer(directory, 3, {"a": 1}, "d" * 64)
  for step in (1, 2):
    ckpt.save(step, {"w": state["w"] + step, "count": state["count"]}, {"task": step})
  restored, meta = ckpt.restore(state)
  np.testing.assert_array_equal(restored["w"], state["w"] + 2)
  assert meta["state_sha256"] == state_checksum({"w": state["w"] + 2, "count": state["count"]})
  assert state_checksum(state) != state_checksum({"w": state["w"] + 2, "count": state["count"]})
  ckpt.close()
  for step in (2, 1):
    flip_bytes(os.path.join(directory, str(step)))
    with pytest.raises(CheckpointError, match="is corrupt") as e:
      RunCheckpointer(directory, 3, {"a": 1}, "d" * 64).restore(state)
    assert ("checkpoints/1 is intact" in str(e.value)) == (step == 2), str(e.value)
  assert "no older checkpoint is intact" in str(e.value)
  assert sorted(os.listdir(directory)) == ["1", "2"]
  with pytest.raises(CheckpointError, match="other data.*point data.idx_dir"):  # checked before the state is read
    RunCheckpointer(directory, 3, {"a": 1}, "e" * 64).restore(state)
  streamed = {"data": {"source": "auto", "record_dir": "/data/records"}}  # names the streamed source's key
  ckpt = RunCheckpointer(str(tmp_path / "streamed"), 3, streamed, "d" * 64)
  ckpt.save(1, state, {"task": 1})
  ckpt.close()
  with pytest.raises(CheckpointError, match=r"other data.*point data.record_dir \(and data.source\)"):
    RunCheckpointer(str(tmp_path / "streamed"), 3, streamed, "e" * 64).restore(state)


def test_a_checkpoint_of_another_format_version_is_refused_as_such(tmp_path, monkeypatch):
  directory = str(tmp_path / "checkpoints")
  state = {"w": np.arange(16, dtype=np.float32)}
  ckpt = RunCheckpointer(directory, 2, {"a": 1}, "d" * 64)
  ckpt.save(1, state, {"task": 1})
  ckpt.close()
  monkeypatch.setattr(checkpoint, "FORMAT_VERSION", checkpoint.FORMAT_VERSION + 1)  # a later lwcl
  with pytest.raises(CheckpointError, match=f"in format {checkpoint.FORMAT_VERSION - 1}, written by an older"):
    RunCheckpointer(directory, 2, {"a": 1}, "d" * 64).restore(state)
  assert os.listdir(directory) == ["1"]


@pytest.mark.parametrize("saved", ["absent", "none"])
def test_a_checkpoint_lacking_an_entry_of_the_state_is_refused_as_an_older_lwcls(tmp_path, saved):
  # What an lwcl before the Task-IL matrix wrote for a class-incremental run: the record without task_il_R
  # (orbax refuses to restore the missing entry, or gives it as None when it was saved as None).
  directory = str(tmp_path / "checkpoints")
  R = np.ones((2, 2), np.float32)
  old = {"record": {"R": R, **({"task_il_R": None} if saved == "none" else {})}}
  ckpt = RunCheckpointer(directory, 2, {"a": 1}, "d" * 64)
  ckpt.save(6, old, {"task": 1})
  ckpt.close()
  target = {"record": {"R": np.zeros_like(R), "task_il_R": np.zeros_like(R)}}
  with pytest.raises(CheckpointError) as e:
    RunCheckpointer(directory, 2, {"a": 1}, "d" * 64).restore(target)
  message = str(e.value)
  assert "checkpoints/6 was written by an older lwcl: it lacks record.task_il_R (the Task-IL accuracy matrix" \
      in message and "; finish that run with the lwcl version that started it" in message, message
  assert "corrupt" not in message and "\n" not in message
  assert os.listdir(directory) == ["6"]  # kept
  as_written = {"record": {"R": np.zeros_like(R), **({"task_il_R": None} if saved == "none" else {})}}
  restored, _ = RunCheckpointer(directory, 2, {"a": 1}, "d" * 64).restore(as_written)
  np.testing.assert_array_equal(restored["record"]["R"], R)  # the layout it was written with still restores
