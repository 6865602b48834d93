"""lwcl.benchmarks.layerwise: the benchmark measures the step a config runs."""

import os

import pytest

from lwcl.errors import ConfigError

from helpers import ROOT


def test_bench_measures_the_step_a_config_runs(capsys):
  """``bin/bench layerwise --config`` compiles the step ``bin/run`` would (compile only, on the depth study's
  config at ResNet-8): local and greedy training need less temporary memory than backprop (greedy's batches
  carry the phase), the ratio is taken against the backprop config of the same network, and a bad override
  is one ConfigError before any compile."""
  from lwcl.benchmarks import layerwise as bench
  spec = os.path.join(ROOT, "configs", "layerwise_fmnist_depth.py:resnet8,")
  rows = bench._config_rows([spec + "local", spec + "greedy", spec + "backprop"], ["model.conv_impl=native"])
  with pytest.raises(ConfigError, match="unknown config key model.conv_implx"):
    bench._config_rows([spec + "local"], ["model.conv_implx=native"])
  local, greedy, backprop = rows
  assert [r["mode"] for r in rows] == ["local", "greedy", "backprop"] and local["local_blocks"] == 3
  assert 0 < local["temp_bytes"] < 0.8 * backprop["temp_bytes"], rows  # 0.72 with jaxlib 0.10.2 on CPU
  assert 0 < greedy["temp_bytes"] < 0.8 * backprop["temp_bytes"], rows  # 0.70
  assert backprop["ratio"] == 1.0 and local["ratio"] == local["temp_bytes"] / backprop["temp_bytes"]
  assert "layerwise_fmnist_depth.py:resnet8,local | local | 3 |" in capsys.readouterr().out
