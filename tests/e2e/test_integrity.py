"""Trust (issue 16, part A): no result from other data, no silently restored damage, no lost results file.

* A1: a run resumed, or a finished workdir re-reported, on other data (the same labels, pixels 255 - x) is
  refused as a different experiment; the same data from another folder is accepted.
* A2: a checkpoint with flipped bytes is refused at restore (checksum mismatch), naming the older intact
  checkpoint; after moving it away as the message says, the run resumes from that one.
* A3: an unreadable ``results.json`` is refused and kept byte for byte, never taken for "no results".
"""

import hashlib
import os
import re
import shutil

import pytest

from lwcl.data import sources
from lwcl.data.synthetic import FILES, write_idx
from lwcl.errors import CheckpointError, ConfigError
from lwcl.io import lock as workdir_lock
from lwcl.io import results as results_lib
from lwcl.runs import driver
from lwcl.runs import seeds as replicas

from helpers import assert_one_line_error, cli, flip_bytes, load_results, small_config

CKPT = "--config.checkpoint.every_steps=5"  # with the small config: checkpoints at steps 5, 10, 15, ...


def snapshot(directory: str) -> dict:
  """Every file under ``directory`` (relative path) -> SHA-256 of its bytes; the workdir lock, which names
  the run holding it, left out."""
  out = {}
  for dirpath, _, names in os.walk(directory):
    for name in set(names) - {workdir_lock.LOCK_FILE}:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


def write_copy(directory: str, invert: bool) -> str:
  """The tests' data set (as ``small_config`` loads it) written as plain IDX files into ``directory``, its
  pixels ``255 - x`` when ``invert`` (the labels unchanged)."""
  ds = sources.load_dataset(small_config().data)
  os.makedirs(directory, exist_ok=True)
  for split in ("train", "test"):
    images, labels = getattr(ds, f"{split}_images")[..., 0], getattr(ds, f"{split}_labels")
    write_idx(os.path.join(directory, FILES[(split, "images")][:-3]), 255 - images if invert else images)
    write_idx(os.path.join(directory, FILES[(split, "labels")][:-3]), labels)
  return directory


@pytest.fixture(scope="module")
def other_data(tmp_path_factory):
  """An IDX folder of the tests' data with every pixel inverted (255 - x), the same labels."""
  return write_copy(str(tmp_path_factory.mktemp("inverted")), invert=True)


class _Stop(Exception):
  pass


def interrupted_run(workdir: str, after_step: int = 12) -> None:
  """The small config with a checkpoint every 5 steps (:data:`CKPT`), stopped after global step
  ``after_step`` (12: mid task 2, checkpoints at steps 5 and 10), in this process."""
  def on_step(step):
    if step == after_step:
      raise _Stop
  with pytest.raises(_Stop):
    driver.run(small_config(**{"checkpoint.every_steps": 5}), workdir, on_step)


def test_resume_on_other_data_is_refused(tmp_path, other_data):
  workdir = str(tmp_path / "w")
  interrupted_run(workdir)
  before = snapshot(workdir)
  proc = cli(workdir, CKPT, "--config.data.source=idx", f"--config.data.idx_dir={other_data}")
  assert_one_line_error(proc, "different experiment", "other data", "data.idx_dir")
  assert "resuming" not in proc.stdout
  assert snapshot(workdir) == before  # nothing written, nothing removed
  assert not os.path.exists(os.path.join(workdir, "results.json"))


def test_finished_results_on_other_data_are_refused_the_same_data_elsewhere_accepted(tmp_path, other_data):
  workdir = str(tmp_path / "w")
  config = small_config(**{"checkpoint.every_steps": 5})
  first = driver.run(config, workdir)
  assert first["data_fingerprint"] == load_results(workdir)["data_fingerprint"]
  assert len(first["data_fingerprint"]) == 64
  results_file = os.path.join(workdir, "results.json")
  with open(results_file, "rb") as f:
    kept = f.read()
  elsewhere = write_copy(str(tmp_path / "copy"), invert=False)
  same = small_config(**{"data.source": "idx", "data.idx_dir": elsewhere})
  assert driver.run(same, workdir) == load_results(workdir)  # data keys are operational; the data content is the same
  other = small_config(**{"data.source": "idx", "data.idx_dir": other_data})
  with pytest.raises(ConfigError, match="different experiment.*other data"):
    driver.run(other, workdir)
  # The case: results and newest checkpoint gone, the run resumed on other data.
  os.unlink(results_file)
  shutil.rmtree(os.path.join(workdir, "checkpoints", max(os.listdir(os.path.join(workdir, "checkpoints")),
                                                         key=int)))
  with pytest.raises(CheckpointError, match="different experiment.*other data"):
    driver.run(other, workdir)
  assert not os.path.exists(results_file)
  with open(results_file, "wb") as f:
    f.write(kept)
  with pytest.raises(ConfigError, match="other data"):
    driver.run(other, workdir)
  with open(results_file, "rb") as f:
    assert f.read() == kept


def test_bit_flipped_checkpoint_is_refused_at_restore_and_kept(tmp_path, capsys):
  workdir = str(tmp_path / "w")
  interrupted_run(workdir)
  newest = os.path.join(workdir, "checkpoints", "10")
  flip_bytes(newest)
  before = snapshot(workdir)
  proc = cli(workdir, CKPT)
  line = assert_one_line_error(proc, f"checkpoint {newest} is corrupt (checksum mismatch)",
                               f"checkpoint {os.path.join(workdir, 'checkpoints', '5')} is intact")
  assert snapshot(workdir) == before  # the damaged checkpoint is neither used, repaired nor deleted
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  # The fix the message gives: move the damaged step away; the run resumes from the intact one.
  source, target = re.search(r"mv (\S+) (\S+)\)", line).groups()
  assert source == newest
  shutil.move(source, target)
  results = driver.run(small_config(**{"checkpoint.every_steps": 5}), workdir)
  assert "resuming from checkpoint at task 1, step 5" in capsys.readouterr().out
  assert results["accuracy_matrix"] == load_results(workdir)["accuracy_matrix"] and os.path.isdir(target)


def test_unreadable_results_file_is_refused_and_kept(tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  truncated = b'{\n  "accuracy_matrix": [\n    [\n      0.95'
  (workdir / "results.json").write_bytes(truncated)
  proc = cli(str(workdir), "--config.optimizer.learning_rate=0.5")  # another config, no checkpoints
  assert_one_line_error(proc, f"{workdir}/results.json is unreadable", "not valid JSON", "move it away")
  assert (workdir / "results.json").read_bytes() == truncated
  assert not (workdir / "checkpoints").exists()


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe\x00garbage", "unreadable"), (b"[1, 2]", "not a results file"), (b"", "not valid JSON"),
    (None, "unreadable (Is a directory)")])
def test_unreadable_results_of_a_seed_or_a_run_are_refused_before_training(tmp_path, content, message):
  config = small_config(**{"num_seeds": 2})
  seed_file = tmp_path / "seeds" / "seed1" / "results.json"
  seed_file.parent.mkdir(parents=True)
  if content is None:
    seed_file.mkdir()
  else:
    seed_file.write_bytes(content)
  with pytest.raises(ConfigError, match=re.escape(message) + ".*move it away"):
    replicas.run_replicas(config, str(tmp_path / "seeds"))
  assert os.listdir(tmp_path / "seeds") == ["seed1"]  # nothing trained or written
  if content is not None:
    assert seed_file.read_bytes() == content
  with pytest.raises(ConfigError, match=re.escape(message)):
    results_lib.finished_results(small_config(), str(seed_file.parent))
