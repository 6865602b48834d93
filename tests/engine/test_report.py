"""lwcl/engine/report.py's record of what computed each part of a run (``Progress.segments``), and its
checkpoint metadata (older checkpoints have none)."""

from lwcl.core.record import Progress
from lwcl.engine import report

BLOCK = {"lwcl": {"commit": "a" * 40, "dirty": False}, "cpu": {"family": 25, "isa": ["avx2", "avx512f"]}}
OTHER_COMMIT = {**BLOCK, "lwcl": {"commit": "b" * 40, "dirty": False}}


def test_a_part_is_added_at_the_start_and_at_each_resume_in_another_environment():
  progress = Progress()
  report.add_segment(progress, BLOCK, resumed=False)
  assert progress.segments == [{"task": 0, "task_step": 0, "provenance": BLOCK}]
  progress.task, progress.task_step = 2, 7
  report.add_segment(progress, dict(BLOCK), resumed=True)  # the same environment: the same part goes on
  assert len(progress.segments) == 1
  report.add_segment(progress, OTHER_COMMIT, resumed=True)  # another commit (no numeric key) counts too
  assert progress.segments[1] == {"task": 2, "task_step": 7, "provenance": OTHER_COMMIT}
  restored = Progress.from_meta(progress.to_meta(task_done=True))  # through a checkpoint's metadata
  assert restored.segments == progress.segments and (restored.task, restored.task_step) == (3, 0)


def test_a_checkpoint_of_an_lwcl_that_recorded_no_parts_gets_an_unknown_first_part():
  meta = Progress(task=1, task_step=4, train_seconds=2.0, train_examples=40).to_meta()
  del meta["segments"]  # as an lwcl before this field wrote it
  progress = Progress.from_meta(meta)
  assert progress.segments == [] and progress.task_step == 4
  report.add_segment(progress, BLOCK, resumed=True)
  assert progress.segments == [{"task": 0, "task_step": 0, "provenance": None},
                               {"task": 1, "task_step": 4, "provenance": BLOCK}]
