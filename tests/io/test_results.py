"""lwcl.io.results: results of older versions still match; incomplete results name what is missing; a
summary records the data fingerprint its runs agree on; results from other data name the folder to fix."""

import json

import pytest

from lwcl.config import options as config_options
from lwcl.errors import ConfigError
from lwcl.io import results as results_lib

from helpers import small_config


def test_results_of_an_older_version_still_match_when_keys_were_added():
  config = small_config().to_dict()
  older = results_lib.result_config(config)
  del older["method"]["name"], older["sweep"]  # keys an older lwcl did not have
  assert results_lib.same_experiment({"config": older}, config)
  older["optimizer"]["learning_rate"] = 0.5  # a key both have, with another value
  assert not results_lib.same_experiment({"config": older}, config)
  assert results_lib.same_experiment({"config": dict(config, devices={"num_devices": 4})}, config)
  assert not results_lib.same_experiment(None, config)
  # with every option's default: a key the results lack counts as its default (what the older run ran as)
  defaults = config_options.defaults()
  older = results_lib.result_config(config)
  del older["method"]["name"], older["sweep"], older["optimizer"]["grad_clip_value"]
  assert results_lib.same_experiment({"config": older}, config, defaults)
  clipped = small_config(**{"optimizer.grad_clip_value": 1.0}).to_dict()
  assert results_lib.same_experiment({"config": older}, clipped)  # not compared without the defaults
  assert not results_lib.same_experiment({"config": older}, clipped, defaults)


def test_incomplete_results_name_what_is_missing():
  assert results_lib.incomplete({"config": {}}) == "'config'"
  assert results_lib.incomplete({"config": {"seed": 0}, "method": "gem"}) == "'accuracy_matrix'"
  assert results_lib.incomplete({"config": {"seed": 0}, "method": "gem", "orders": []}) is None


def test_a_summary_records_the_data_fingerprint_its_runs_agree_on():
  fp = {"data_fingerprint": "a" * 64}
  assert results_lib.common_data_fingerprint([fp, fp]) == fp
  assert results_lib.common_data_fingerprint([fp, {"data_fingerprint": "b" * 64}]) == {}
  assert results_lib.common_data_fingerprint([fp, {}]) == {}  # a run of an lwcl that did not record it


def test_results_from_other_data_name_the_folder_key_of_the_source(tmp_path, monkeypatch):
  monkeypatch.setattr(results_lib, "data_fingerprint", lambda data_config: "e" * 64)
  for overrides, key in (({"data.record_dir": "/data/records"}, "data.record_dir"),
                         ({"data.source": "idx"}, "data.idx_dir"), ({"data.source": "tfds"}, "data.data_dir")):
    config = small_config(**overrides)
    workdir = tmp_path / key
    workdir.mkdir()
    (workdir / "results.json").write_text(json.dumps({
        "config": config.to_dict(), "method": "finetune", "accuracy_matrix": [[1.0]],
        "data_fingerprint": "d" * 64}))
    with pytest.raises(ConfigError, match=f"other data.*point {key} \\(and data.source\\) at the run's original"):
      results_lib.finished_results(config, str(workdir))


def test_a_different_experiment_names_where_its_config_differs():
  a = {"num_seeds": 5, "optimizer": {"learning_rate": 0.1, "momentum": 0.0}, "checkpoint": {"keep": 2}}
  b = {"num_seeds": 10, "optimizer": {"learning_rate": 0.1, "momentum": 0.9}, "checkpoint": {"keep": 9}}
  # checkpoint.* is operational (not result-relevant): not a difference
  assert results_lib.differences_text(a, b) == ("config differs in num_seeds: 5 there, 10 here; "
                                                "optimizer.momentum: 0.0 there, 0.9 here")
  # a key one side lacks counts when its value there is not the option's default; only the first 3 are shown
  defaults = config_options.defaults()
  c = {**b, "optimizer": {**b["optimizer"], "grad_clip_value": 1.0}, "seed": 3, "model": {"name": "x"}}
  text = results_lib.differences_text(a, c, defaults)
  assert text.startswith("config differs in model.name: default there, 'x' here; num_seeds: 5 there, 10 here; "
                         "optimizer.grad_clip_value: default there, 1.0 here and 2 more"), text  # momentum, seed
