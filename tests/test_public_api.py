"""The public API (lwcl/__init__.py): every listed name resolves to the object it names, `__all__` is the
list, and the import paths of 0.1 that moved still work, with a DeprecationWarning, as the same module."""

import importlib
import sys
import warnings

import pytest

import lwcl

OLD_PATHS = {"lwcl.setup": "lwcl.engine.build", "lwcl.loop": "lwcl.engine.loop", "lwcl.driver": "lwcl.runs.driver",
             "lwcl.replicas": "lwcl.runs.seeds", "lwcl.projection": "lwcl.methods.projection",
             "lwcl.checkpoint": "lwcl.io.checkpoint", "lwcl.xla_flags": "lwcl.platform.xla_flags",
             "lwcl.run_state": "lwcl.core.record", "lwcl.config_files": "lwcl.config.files"}


def test_all_is_the_api_table_and_every_name_resolves():
  assert lwcl.__all__ == sorted(lwcl._API)  # pylint: disable=protected-access
  for name, (module, attr) in lwcl._API.items():  # pylint: disable=protected-access
    assert getattr(lwcl, name) is getattr(importlib.import_module(module), attr), name
  with pytest.raises(AttributeError):
    lwcl.no_such_name  # noqa: B018  pylint: disable=pointless-statement


@pytest.mark.parametrize("old,new", sorted(OLD_PATHS.items()))
def test_moved_module_paths_warn_and_are_the_same_module(old, new):
  sys.modules.pop(old, None)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    module = importlib.import_module(old)
  assert module is importlib.import_module(new)
  assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)


def test_the_split_train_module_still_exports_its_names():
  sys.modules.pop("lwcl.train", None)
  with pytest.warns(DeprecationWarning, match="lwcl.core.state"):
    from lwcl.train import ModelFns, TrainState, make_train_step  # pylint: disable=import-outside-toplevel
  assert (TrainState, ModelFns, make_train_step) == (lwcl.TrainState, lwcl.ModelFns, lwcl.make_train_step)
