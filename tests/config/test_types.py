"""lwcl.config.types: every config value checked up front, each refusal one line naming key, value and
an example."""

import glob
import os
import pathlib

import ml_collections
import pytest

from lwcl.config import files as config_files
from lwcl.config import types as config_check
from lwcl.errors import ConfigError
from lwcl.runs import driver

from helpers import ROOT, small_config


def default_dict(**overrides) -> dict:
  """``configs/default.py`` as a nested dict with dotted ``overrides`` set as given (no type checks)."""
  d = config_check.default_reference().to_dict()
  for key, value in overrides.items():
    config_files.set_key(d, key, value)
  return d


@pytest.mark.parametrize("key,value,fragments", [
    # What ml_collections keeps of --config.model.hidden='(100,abc)': the text as one element.
    ("model.hidden", ("(100,abc)",), ["model.hidden=(100,abc)", "'abc' is not an integer", "'(256,256)'"]),
    ("model.hidden", (100, "abc"), ["model.hidden", "'abc'"]),
    ("model.hidden", (1e3,), ["model.hidden", "1000.0 is not an integer"]),
    ("model.hidden", ("'(100,200)'",), ["model.hidden", "drop the inner quotes"]),
    ("model.conv_stages", (8, 16), ["model.conv_stages", "tuple of tuples of integers", "((32,),(64,))"]),
    ("train.epochs_per_task", 1.5, ["train.epochs_per_task=1.5", "not an integer", "epochs_per_task=2"]),
    ("train.batch_size", True, ["train.batch_size=True", "not an integer"]),
    ("train.progress", 1, ["train.progress=1", "not a boolean", "progress=True"]),
    ("data.name", 3, ["data.name=3", "not a string"]),
    ("scenario.class_order", ("(3,1,x)",), ["scenario.class_order=(3,1,x)", "'x' is not an integer"]),
    ("scenario.class_order", ((1, 2),), ["scenario.class_order", "(1, 2) is not an integer"]),
    ("scenario.angles", ("(0,abc)",), ["scenario.angles", "'abc' is not a number"]),
    ("sweep.candidates", ("(a,b)",), ["sweep.candidates", "'a' is not a number", "(1.,10.,100.)"]),
    ("layerwise.aux_hidden", ("x",), ["layerwise.aux_hidden", "'x' is not an integer"]),
    ("model", 3, ["config key model must be a section"]),
    # issue 32: a key a config file adds must hold what results.json can record (refused before the run)
    ("method.note", pathlib.Path("/tmp/x"), ["config key method.note (not in configs/default.py) holds a PosixPath",
                                             "results.json cannot record", "or remove it from the config file"]),
    ("method.extra", {"fn": len}, ["config key method.extra (not in configs/default.py) holds a dict"]),
    ("method.hooks", (1, object()), ["config key method.hooks (not in configs/default.py) holds a tuple"]),
])
def test_check_config_names_key_value_and_example(key, value, fragments):
  with pytest.raises(ConfigError) as info:
    config_check.check_config(default_dict(**{key: value}), config_check.default_reference())
  message = str(info.value)
  assert "\n" not in message and ("; give " in message or "; see " in message), message
  for f in fragments:
    assert f in message, message


@pytest.mark.parametrize("key,value", [
    ("model.hidden", (256, 256)), ("model.hidden", ()), ("model.conv_stages", ((8,), (16, 16))),
    ("optimizer.learning_rate", 1), ("scenario.angles", (0, 90.5)), ("sweep.candidates", (1, 10.0)),
    ("scenario.class_order", (3, 1, 0, 2)), ("data.name", "(1,2)"),
    ("method.note", "a text"), ("method.extra", {"a": (1, 2.5), "b": None, "c": {"d": True}}),
])
def test_check_config_accepts_valid_values(key, value):
  config_check.check_config(default_dict(**{key: value}), config_check.default_reference())


def test_shipped_configs_pass_and_every_empty_default_tuple_has_an_element_type():
  reference = config_check.default_reference()
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "[!_]*.py"))):
    try:
      config = config_files.load(path).get_config()
    except Exception:  # pylint: disable=broad-except  (a config that does not load is not this test's)
      continue
    config_check.check_config(config, reference)

  def tuples(node, prefix=""):
    for k, v in node.items():
      if isinstance(v, dict):
        yield from tuples(v, prefix + k + ".")
      elif isinstance(v, tuple):
        yield prefix + k, v
  empty = {k for k, v in tuples(reference.to_dict()) if not v}
  assert empty <= set(config_check.TUPLE_ELEMENTS), empty - set(config_check.TUPLE_ELEMENTS)


def test_override_message_for_values_ml_collections_refuses():
  reference = config_check.default_reference()
  assert config_check.override_message("train.batchsize", "3", reference) is None
  message = config_check.override_message("train.progress", "yes", reference)
  assert message.startswith("bad config value train.progress=yes:") and "; give a boolean" in message


def test_a_partial_config_is_refused_naming_its_missing_keys():
  partial = default_dict()
  del partial["eval"]
  del partial["train"]["batch_size"]
  with pytest.raises(ConfigError) as info:
    config_check.check_config(partial, config_check.default_reference())
  message = str(info.value)
  assert message.startswith("the config lacks eval, ") and "train.batch_size" in message, message
  assert "; start the config from the default one" in message and "\n" not in message


# Config files that end the process, or return no config (issue 32: sys.exit(0) ended lwcl with status 0).
@pytest.mark.parametrize("text,fragments", [
    ("import sys\nsys.exit(0)\n", ["config file", "does not load (it called sys.exit(0) while loading)"]),
    ("import sys\ndef get_config():\n  sys.exit(3)\n", ["does not load (it called sys.exit(3) while loading)",
                                                        "fix the file"]),
    ("def get_config():\n  return {'seed': 0}\n", ["get_config() returned dict, not an ml_collections.ConfigDict",
                                                    "start from the default config"]),
    ("def get_config():\n  return None\n", ["get_config() returned NoneType"]),
    ("get_config = 3\n", ["has a get_config that is not a function"]),
    ("x = 1\n", ["does not load (AttributeError"]),
])
def test_a_config_file_that_exits_or_returns_no_config_is_one_line(tmp_path, text, fragments):
  path = tmp_path / "bad.py"
  path.write_text(text)
  with pytest.raises(ConfigError) as info:
    config_files.load_spec(str(path))
  message = str(info.value)
  assert "\n" not in message and "; " in message, message
  for f in fragments:
    assert f in message, message


def test_a_partial_config_or_an_unrecordable_extra_key_is_refused_before_the_workdir(tmp_path):
  path = tmp_path / "partial.py"
  path.write_text("import ml_collections\ndef get_config():\n  c = ml_collections.ConfigDict()\n  c.seed = 0\n"
                  "  return c\n")
  config = config_files.load_spec(str(path))
  assert isinstance(config, ml_collections.ConfigDict)
  with pytest.raises(ConfigError, match="the config lacks"):
    driver.run(config, str(tmp_path / "w"))
  config = small_config()
  with config.unlocked():
    config.method.note = pathlib.Path("/tmp/x")
  with pytest.raises(ConfigError, match="method.note .* holds a PosixPath"):
    driver.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()  # refused at start: no workdir, no training
