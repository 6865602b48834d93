"""``bin/bench projection``: its two tables (the projection methods against fine-tuning; GEM and LGD with
``method.memory_grad_chunk`` 0 and 1 in a longer stream) and its JSON. The tables' composition is checked
on given timings; the timed runners of the second table run for real on the smallest settings."""

import json

import pytest

from lwcl.benchmarks import projection


def test_both_tables_and_the_json(tmp_path, capsys, monkeypatch):
  def fake(names, old_tasks, steps, rounds=5, stream_tasks=None):
    return {name: 0.001 * (i + 1) for i, name in enumerate(names)}

  monkeypatch.setattr(projection, "time_methods", fake)
  monkeypatch.setattr(projection, "time_host_qp_alone", lambda n, steps: 0.002)
  out = tmp_path / "projection.json"
  projection.main(["--old-tasks=1,2", "--steps=1", "--stream-tasks=3", f"--json={out}"])
  text = capsys.readouterr().out
  assert "| old tasks | fine-tuning (ms) | A-GEM |" in text
  assert "in a stream of 3 tasks (2 memory slots)" in text
  header = "| old tasks n | fine-tuning (ms) | GEM, chunk 0 | GEM, chunk 1 | LGD, chunk 0 | LGD, chunk 1 |"
  assert header in text
  assert "| 2 | 1.00 | 2.0x (2.0) | 3.0x (3.0) | 4.0x (4.0) | 5.0x (5.0) |" in text
  saved = json.loads(out.read_text())
  assert saved["stream_tasks"] == 3 and set(saved["seconds_per_step_in_stream"]) == {"1", "2"}
  assert set(saved["seconds_per_step_in_stream"]["1"]) == set(projection.CHUNKS)


def test_the_stream_runners_time_each_chunk_setting():
  times = projection.time_methods(projection.CHUNKS, 1, steps=1, rounds=1, stream_tasks=3)
  assert set(times) == set(projection.CHUNKS) and all(t > 0 for t in times.values())


def test_a_runner_named_with_a_chunk_uses_it_in_a_stream_of_its_length():
  runner = projection._Runner("lgd@1", 1, stream_tasks=3)
  assert runner.method.chunk == 1 and runner.method.max_tasks == 3


@pytest.mark.parametrize("argv", [["--old-tasks=5", "--stream-tasks=5"], ["--old-tasks=0"]])
def test_bad_arguments_are_refused(argv, capsys):
  with pytest.raises(SystemExit) as e:
    projection.main(argv)
  assert e.value.code == 2 and "error:" in capsys.readouterr().err
