"""lwcl.studies.lgd_push: the LGD push probe runs end to end and reports consistent quantities."""

import json

import pytest

from lwcl.errors import ConfigError
from lwcl.studies import lgd_push

from helpers import small_config


def test_lgd_push_probe(tmp_path):
  config = small_config(**{"method.name": "lgd", "method.lgd_margin": 0.5, "method.lgd_single_task_push": True,
                           "method.memory_per_task": 20, "scenario.num_tasks": 3})
  rows = lgd_push.run(config, str(tmp_path), num_batches=3)
  assert [r["task"] for r in rows] == [2, 3] and [r["old_tasks"] for r in rows] == [1, 2]
  for r in rows:
    assert r["equation/push_norm"] == 0.0  # the push is what the margin adds to the equation's rule
    # n * max(0, a / n + m) >= max(0, a + m) for a <= 0: the sum push is never shorter than the mean push.
    assert r["sum/push_norm"] >= r["mean/push_norm"] - 1e-6
  # With one old task the sum and the mean are the same vector.
  assert rows[0]["sum/push_norm"] == pytest.approx(rows[0]["mean/push_norm"], rel=1e-5)
  saved = json.loads((tmp_path / "lgd_push.json").read_text())
  assert saved["rows"] == rows and (tmp_path / "lgd_push.png").exists()
  with pytest.raises(ConfigError, match="not lgd"):
    lgd_push.run(small_config(), str(tmp_path / "x"), 1)
