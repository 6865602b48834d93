"""The package's structure: imports flow one way, modules stay small, methods are found in one table."""

import ast
import graphlib
import os
import re

import pytest

from lwcl import methods

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lwcl")
MAX_LINES = 450


def _modules() -> dict:
  """``{dotted module name: path}`` of every module of the package."""
  out = {}
  for folder, _, files in os.walk(PKG):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        name = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
        out[name.removesuffix(".__init__")] = path
  return out


def _first_party_imports(name: str, path: str, known: set) -> set:
  """Modules of the package that ``name`` imports (anywhere in the file), its own submodules excluded."""
  found = set()
  for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
    if isinstance(node, ast.Import):
      candidates = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    else:
      continue
    for c in candidates:
      while c and c not in known:
        c = c.rpartition(".")[0]
      if c and c != name and not c.startswith(name + "."):
        found.add(c)
  return found


def test_no_import_circle():
  mods = _modules()
  graph = {m: _first_party_imports(m, p, set(mods)) for m, p in mods.items()}
  try:
    list(graphlib.TopologicalSorter(graph).static_order())
  except graphlib.CycleError as e:
    pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def test_no_relative_imports_and_no_module_over_the_limit():
  for name, path in _modules().items():
    source = open(path, encoding="utf-8").read()
    assert len(source.splitlines()) <= MAX_LINES, f"{name} has more than {MAX_LINES} lines"
    tree = ast.parse(source)
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)), name


def test_methods_are_one_explicit_table_without_import_time_registration():
  source = open(os.path.join(PKG, "methods", "__init__.py"), encoding="utf-8").read()
  for name, cls in methods.METHODS.items():
    assert f'"{name}": {cls.__name__},' in source  # written out, not computed
    assert issubclass(cls, methods.Method)
  # The table is the one list: configs/default.py points to it instead of restating it (a new method
  # edits no other file).
  default = open(os.path.join(PKG, "..", "configs", "default.py"), encoding="utf-8").read()
  comment = re.search(r'c\.method\.name = "\w+"  # (.*)', default).group(1)
  assert "METHODS" in comment and not any(f" {name} " in f" {comment} " for name in methods.METHODS
                                          if name != "finetune"), comment
  for name, path in _modules().items():
    tree = ast.parse(open(path, encoding="utf-8").read())
    calls = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert not any(getattr(f, "attr", getattr(f, "id", "")) == "register" for f in calls), name
