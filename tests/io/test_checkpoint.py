"""lwcl.io.checkpoint: checksums on every checkpoint (its state and its metadata); a checkpoint of another format
version, or one lacking an entry the run's state now has, is refused; one written before a config key existed
is resumed only where the run holds that key's default."""

import json
import os
import re

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


def _flip_bit(path, offset):
  with open(path, "r+b") as f:
    f.seek(offset)
    byte = f.read(1)[0]
    f.seek(offset)
    f.write(bytes([byte ^ 1]))


# TensorStore's reads of a corrupt checkpoint call back into orbax's closed event loop (the command line drops
# those unraisable errors: lwcl.platform.quiet.drop_closed_loop_callbacks).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_flipped_bit_in_any_file_of_a_checkpoint_is_refused_or_restores_identically(tmp_path):
  """Every file of the newest checkpoint (metadata files included), at a sample of offsets (8 per file, the
  metadata's task index among them: issue 32's ``"task": 0`` read as ``"task": 1``), one bit flipped: the
  restore is refused as corrupt, or gives the very state and metadata of the intact checkpoint, never others."""
  directory = str(tmp_path / "checkpoints")
  rng = np.random.default_rng(0)
  state = {"state": {"params": {"w": rng.standard_normal((30, 10)).astype(np.float32),
                                "b": np.zeros(10, np.float32)}, "step": np.array(10, np.int32)},
           "record": {"R": np.eye(2, dtype=np.float32), "final_loss": np.array([0.5, 0.25], np.float32)}}
  ckpt = RunCheckpointer(directory, 2, {"a": 1, "b": [1, 2]}, "d" * 64)
  ckpt.save(5, state, {"task": 0, "task_step": 5, "train_seconds": 1.25, "train_examples": 100})
  ckpt.save(10, state, {"task": 0, "task_step": 10, "train_seconds": 2.5, "train_examples": 200})
  ckpt.close()

  def restore():
    ckpt = RunCheckpointer(directory, 2, {"a": 1, "b": [1, 2]}, "d" * 64)
    try:
      return ckpt.restore(state)
    finally:
      ckpt.close()

  want_state, want_meta = restore()
  newest = os.path.join(directory, "10")
  files = sorted(os.path.join(d, n) for d, _, names in os.walk(newest) for n in names)
  meta_file = os.path.join(newest, "meta", "metadata")
  assert meta_file in files and len(files) >= 10, files
  outcomes = {"refused": 0, "identical": 0}
  for path in files:
    size = os.path.getsize(path)
    offsets = set(np.linspace(0, size - 1, 6).astype(int)) | set(rng.integers(0, size, 2).tolist())
    if path == meta_file:
      with open(path, "rb") as f:
        offsets.add(f.read().index(b'"task": 0') + len(b'"task": '))
    for offset in sorted(offsets):
      _flip_bit(path, offset)
      try:
        got_state, got_meta = restore()
      except CheckpointError as e:
        assert f"checkpoint {newest} is corrupt" in str(e) and "checkpoints/5 is intact" in str(e), str(e)
        outcomes["refused"] += 1
      else:
        where = f"{os.path.relpath(path, newest)} at byte {offset}"
        assert got_meta == want_meta, where
        np.testing.assert_equal(got_state, want_state, err_msg=where)
        outcomes["identical"] += 1
      finally:
        _flip_bit(path, offset)  # back to intact
  assert outcomes["refused"] >= 20, outcomes  # the metadata, the state's layout and its data
  assert sorted(os.listdir(directory)) == ["10", "5"]  # nothing deleted


def test_a_checkpoint_whose_metadata_has_no_checksum_is_refused(tmp_path):
  """A format 4 checkpoint (written before the metadata checksum) is refused as an older format, one line;
  one of format 5 that lacks it (a damaged key) as corrupt."""
  directory = str(tmp_path / "checkpoints")
  state = {"w": np.arange(16, dtype=np.float32)}
  ckpt = RunCheckpointer(directory, 2, {"a": 1}, "d" * 64)
  ckpt.save(1, state, {"task": 1})
  ckpt.close()
  path = os.path.join(directory, "1", "meta", "metadata")
  with open(path) as f:
    meta = json.load(f)
  for fmt, message in ((4, "in format 4, written by an older lwcl; this version reads format 5. Finish"),
                       (checkpoint.FORMAT_VERSION, "is corrupt (its metadata has no checksum)")):
    with open(path, "w") as f:
      json.dump({**{k: v for k, v in meta.items() if k != "meta_sha256"}, "format": fmt}, f)
    with pytest.raises(CheckpointError, match=re.escape(message)) as e:
      RunCheckpointer(directory, 2, {"a": 1}, "d" * 64).restore(state)
    assert "\n" not in str(e.value)
  assert os.listdir(directory) == ["1"]


def test_a_checkpoint_without_a_key_added_since_resumes_only_at_the_keys_default(tmp_path):
  # written by an lwcl without optimizer.grad_clip_value (its steps ran unclipped)
  directory = str(tmp_path / "checkpoints")
  state = {"w": np.arange(8, dtype=np.float32)}
  older = {"optimizer": {"learning_rate": 0.1}, "method": {"name": "si"}}
  ckpt = RunCheckpointer(directory, 2, older, "d" * 64)
  ckpt.save(1, state, {"task": 1})
  ckpt.close()
  defaults = {"optimizer.grad_clip_value": 0.0, "optimizer.learning_rate": 0.01, "method.name": "finetune",
              "method.si_xi": 1e-3}
  at_default = {"optimizer": {"learning_rate": 0.1, "grad_clip_value": 0.0}, "method": {"name": "si"}}
  clipped = {"optimizer": {"learning_rate": 0.1, "grad_clip_value": 1.0}, "method": {"name": "si", "si_xi": 0.9}}
  restored, _ = RunCheckpointer(directory, 2, at_default, "d" * 64, defaults).restore(state)
  np.testing.assert_array_equal(restored["w"], state["w"])
  with pytest.raises(CheckpointError, match=r"config differs in method.si_xi, optimizer.grad_clip_value\)"):
    RunCheckpointer(directory, 2, clipped, "d" * 64, defaults).restore(state)
  # without the defaults (or for a key they lack), a key one side lacks is not compared
  assert RunCheckpointer(directory, 2, clipped, "d" * 64).restore(state) is not None
  assert checkpoint.config_differences(older, clipped, defaults={"method.si_xi": 1e-3}) == ["method.si_xi"]
  # a whole section one side lacks: its leaves against their defaults
  assert checkpoint.config_differences({}, {"optimizer": {"grad_clip_value": 1.0, "learning_rate": 0.01}},
                                       defaults=defaults) == ["optimizer.grad_clip_value"]
