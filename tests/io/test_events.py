"""lwcl.io.events: a metric writer off the main process only logs."""

import os

import pytest

from lwcl.io import events


def test_metric_writer_off_the_main_process_only_logs(tmp_path):
  writer = events.MetricWriter(str(tmp_path / "w"), write_events=False)
  writer.write_scalars(3, {"a": 1.5})
  writer.flush()
  writer.close()
  assert not os.path.exists(tmp_path / "w")
  main = events.MetricWriter(str(tmp_path / "m"))
  main.write_scalars(1, {"a": 1.0})
  main.close()
  main.close()  # twice is fine
  with pytest.raises(ValueError):
    main.write_scalars(2, {"a": 2.0})
  assert os.path.getsize(main.path) > 0
