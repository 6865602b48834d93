"""``bin/bench projection``: its two tables (the projection methods against fine-tuning; GEM and LGD with
``method.memory_grad_chunk`` 0 and 1 in a longer stream) and its JSON, on the smallest settings."""

import json

import pytest

from lwcl.benchmarks import projection


def test_both_tables_and_the_json(tmp_path, capsys):
  out = tmp_path / "projection.json"
  projection.main(["--old-tasks=1", "--steps=1", "--stream-tasks=3", f"--json={out}"])
  text = capsys.readouterr().out
  assert "| old tasks | fine-tuning (ms) | A-GEM |" in text
  assert "in a stream of 3 tasks (2 memory slots)" in text
  assert "| old tasks n | fine-tuning (ms) | GEM, chunk 0 | GEM, chunk 1 | LGD, chunk 0 | LGD, chunk 1 |" in text
  saved = json.loads(out.read_text())
  assert saved["stream_tasks"] == 3
  assert set(saved["seconds_per_step_in_stream"]["1"]) == set(projection.CHUNKS)
  assert all(v > 0 for v in saved["seconds_per_step_in_stream"]["1"].values())


def test_a_runner_named_with_a_chunk_uses_it_in_a_stream_of_its_length():
  runner = projection._Runner("lgd@1", 1, stream_tasks=3)
  assert runner.method.chunk == 1 and runner.method.max_tasks == 3


@pytest.mark.parametrize("argv", [["--old-tasks=5", "--stream-tasks=5"], ["--old-tasks=0"]])
def test_bad_arguments_are_refused(argv, capsys):
  with pytest.raises(SystemExit) as e:
    projection.main(argv)
  assert e.value.code == 2 and "error:" in capsys.readouterr().err
