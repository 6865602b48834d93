"""lwcl.io.safe_files (issue 32, item 2): no file lwcl writes in a workdir is written through a symbolic link.

A link is planted at each name lwcl writes; its target (a file, or a folder, outside the workdir) must be left
byte for byte, and the refusal is one line naming the link. Before a run (``driver.run``): every name, checked
by the workdir scan; during a run (a link planted after the scan): each writer's own check.
"""

import os
import socket
import time

import numpy as np
import pytest

from lwcl.errors import LwclError
from lwcl.io import checkpoint, events, figures, lock, report, safe_files
from lwcl.runs import driver

from helpers import small_config

TARGET_BYTES = b"the target of a planted link\n"


@pytest.fixture
def target(tmp_path):
  """A file and a folder outside any workdir (the targets of the planted links)."""
  (tmp_path / "outside").mkdir()
  file = tmp_path / "outside" / "precious.txt"
  file.write_bytes(TARGET_BYTES)
  folder = tmp_path / "outside" / "folder"
  folder.mkdir()
  (folder / "kept.txt").write_bytes(TARGET_BYTES)
  return file, folder


def assert_untouched(target):
  file, folder = target
  assert file.read_bytes() == TARGET_BYTES
  assert sorted(os.listdir(folder)) == ["kept.txt"] and (folder / "kept.txt").read_bytes() == TARGET_BYTES
  assert sorted(os.listdir(file.parent)) == ["folder", "precious.txt"]


def assert_refused(info, link):
  message = str(info.value)
  assert message.startswith(f"{link} is a symbolic link") and "; remove the link" in message, message
  assert "\n" not in message


# Names lwcl writes below a workdir, each planted as a link to the target file or, for a folder, the folder:
# the lock, results and its temporary files, the heatmap and its former fixed temporary name, the events
# file, the checkpoint folder, a checkpoint step's (temporary) folder, and the folders of studies.
PLANTED = [(".lwcl.lock", "file"), ("results.json", "file"), (".tmp-abc.json", "file"),
           ("accuracy_matrix.png", "file"), ("accuracy_matrix.png.tmp.png", "file"),
           ("events.out.tfevents.0000000001.host.1.lwcl.v2", "file"), ("checkpoints", "folder"),
           ("checkpoints/5.orbax-checkpoint-tmp", "folder"), ("seed0", "folder"), ("sweep", "folder"),
           ("sweep/0.01/results.json", "file"), ("final", "folder"), ("order0", "folder")]


@pytest.mark.parametrize("name,kind", PLANTED)
def test_a_run_refuses_a_workdir_holding_a_link_and_leaves_its_target(tmp_path, target, name, kind):
  workdir = tmp_path / "w"
  link = workdir / name
  link.parent.mkdir(parents=True, exist_ok=True)
  link.symlink_to(target[0] if kind == "file" else target[1])
  with pytest.raises(LwclError) as info:
    driver.run(small_config(), str(workdir))
  assert_refused(info, str(link))
  assert_untouched(target)
  assert os.path.islink(link)


def test_a_workdir_that_is_itself_a_link_is_fine(tmp_path):
  real = tmp_path / "scratch" / "w"
  real.mkdir(parents=True)
  (tmp_path / "w").symlink_to(real)
  safe_files.check_tree(str(tmp_path / "w"))
  report.write_json_atomic(str(tmp_path / "w" / "results.json"), {"a": 1})
  assert (real / "results.json").read_text() == '{\n  "a": 1\n}\n'


def test_json_and_figures_refuse_a_link_planted_during_a_run(tmp_path, target):
  link = tmp_path / "results.json"
  link.symlink_to(target[0])
  with pytest.raises(LwclError) as info:
    report.write_json_atomic(str(link), {"a": 1})
  assert_refused(info, str(link))
  png = tmp_path / "accuracy_matrix.png"
  png.symlink_to(target[0])
  (tmp_path / "accuracy_matrix.png.tmp.png").symlink_to(target[0])  # the temporary name before issue 32
  with pytest.raises(LwclError) as info:
    report.plot_accuracy_matrix(np.eye(2), str(png))
  assert_refused(info, str(png))
  assert_untouched(target)
  assert sorted(os.listdir(tmp_path)) == ["accuracy_matrix.png", "accuracy_matrix.png.tmp.png", "outside",
                                          "results.json"]  # no temporary file left behind
  plt = figures.pyplot()
  figures.save_figure(plt.figure(), str(tmp_path / "plain.png"))  # a plain name is written, as a PNG
  assert (tmp_path / "plain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_lock_and_the_events_file_are_never_opened_through_a_link(tmp_path, target, monkeypatch):
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / lock.LOCK_FILE).symlink_to(target[0])
  with pytest.raises(LwclError) as info:
    with lock.hold(str(workdir)):
      pass
  assert_refused(info, str(workdir / lock.LOCK_FILE))
  monkeypatch.setattr(time, "time", lambda: 1234.5)
  name = f"{events.FILE_PREFIX}.0000001234.{socket.gethostname()}.{os.getpid()}.lwcl.v2"
  (workdir / name).symlink_to(target[0])
  with pytest.raises(LwclError) as info:
    events.MetricWriter(str(workdir))
  assert_refused(info, str(workdir / name))
  assert_untouched(target)


def test_a_checkpoint_is_not_saved_through_a_link(tmp_path, target):
  directory = tmp_path / "checkpoints"
  ckpt = checkpoint.RunCheckpointer(str(directory), 2, {"a": 1})
  state = {"w": np.arange(4, dtype=np.float32)}
  ckpt.save(1, state, {"task": 0})
  for name in ("2.orbax-checkpoint-tmp", "2"):
    (directory / name).symlink_to(target[1])
    with pytest.raises(LwclError) as info:
      ckpt.save(2, state, {"task": 0})
    assert_refused(info, str(directory / name))
    (directory / name).unlink()
  ckpt.close()
  assert_untouched(target)
  assert sorted(os.listdir(directory)) == ["1"]
  (tmp_path / "linked").symlink_to(target[1])
  with pytest.raises(LwclError) as info:
    checkpoint.RunCheckpointer(str(tmp_path / "linked"), 2, {"a": 1})
  assert_refused(info, str(tmp_path / "linked"))
  assert_untouched(target)


def test_a_second_events_file_in_the_same_second_gets_a_new_name(tmp_path, monkeypatch):
  monkeypatch.setattr(time, "time", lambda: 1234.5)
  first, second = events.MetricWriter(str(tmp_path)), events.MetricWriter(str(tmp_path))
  first.close()
  second.close()
  assert second.path == first.path.replace(".lwcl.v2", ".1.lwcl.v2") and os.path.getsize(first.path) > 0
