"""The package's structure: folders that show the architecture, imports that flow one way between them (the
table :data:`ALLOWED`), modules that stay small, methods found in one table."""

import ast
import graphlib
import os
import re

import pytest

from lwcl import methods

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lwcl")
MAX_LINES = 450
MAX_TOP_LEVEL_MODULES = 8

# Which packages (folders, or modules directly in lwcl/) each package may import: the architecture, top to
# bottom. Entry points (cli, benchmarks, studies) -> runs (the replica adapter: seeds, orders, sweeps) ->
# engine (one run: build, loop, steps) -> config (the validator over every component's options) -> methods,
# layerwise -> io (checkpoints, results, figures) -> models, data -> core (types, dotted keys, options),
# platform, errors.
# lwcl/__init__ (the public API, imported lazily) and _compat (old import paths) are outside the table.
ENTRY = {"runs", "engine", "config", "io", "methods", "layerwise", "models", "data", "core", "platform", "errors"}
ALLOWED = {
    "main": {"cli"},
    "cli": ENTRY,
    "benchmarks": ENTRY | {"cli"},
    "studies": ENTRY | {"cli"},
    "runs": {"engine", "config", "io", "methods", "data", "core", "platform", "errors"},
    "engine": {"config", "io", "methods", "layerwise", "models", "data", "core", "platform", "errors"},
    "config": {"methods", "layerwise", "io", "models", "data", "core", "platform", "errors"},
    "io": {"data", "core", "platform", "errors"},
    "methods": {"models", "data", "core", "errors"},
    "layerwise": {"io", "models", "data", "core", "platform", "errors"},
    "models": {"core", "platform", "errors"},
    "data": {"core", "platform", "errors"},
    "core": {"errors"},
    "platform": {"core", "errors"},
    "errors": set(),
}


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


def _package(module: str) -> str:
  """The folder (or top-level module) of a dotted module name: ``lwcl.engine.loop`` -> ``engine``,
  ``lwcl.errors`` -> ``errors``, ``lwcl`` -> ``lwcl``."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else parts[0]


def test_packages_import_only_what_the_table_allows():
  mods = _modules()
  found = {}
  for m, p in mods.items():
    src = _package(m)
    if src in ("lwcl", "_compat"):
      continue
    assert src in ALLOWED, f"{m}: its package '{src}' is not in the architecture table; add it to ALLOWED"
    for dst in {_package(i) for i in _first_party_imports(m, p, set(mods))} - {src, "lwcl"}:
      found.setdefault((src, dst), m)
  wrong = [f"{src} -> {dst} (in {m})" for (src, dst), m in sorted(found.items()) if dst not in ALLOWED[src]]
  assert not wrong, "imports the table does not allow: " + "; ".join(wrong)


def test_the_table_itself_runs_one_way():
  try:
    list(graphlib.TopologicalSorter(ALLOWED).static_order())
  except graphlib.CycleError as e:
    pytest.fail(f"the package table has a circle: {' -> '.join(e.args[1])}")


def test_at_most_a_few_modules_directly_in_lwcl():
  top = sorted(f for f in os.listdir(PKG) if f.endswith(".py"))
  assert len(top) <= MAX_TOP_LEVEL_MODULES, top
  folders = {f for f in os.listdir(PKG) if os.path.isfile(os.path.join(PKG, f, "__init__.py"))}
  assert folders - {"_compat"} <= set(ALLOWED), folders - set(ALLOWED)


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
    # (atexit.register, Python's exit handlers, is not a registry of components)
    assert not any(getattr(f, "attr", getattr(f, "id", "")) == "register"
                   and getattr(getattr(f, "value", None), "id", "") != "atexit" for f in calls), name


def test_no_tracer_checks():
  """No code asks whether a value is traced (``jax.core.Tracer``): swept values are state or step data,
  never a tracer in a method's constructor (rule 1 of lwcl/methods/base.py)."""
  for name, path in _modules().items():
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
      assert not (isinstance(node, ast.Attribute) and node.attr == "Tracer"), f"{name}:{node.lineno}"


def test_label_masks_are_read_through_task_masks():
  """Nothing indexes a ``label_masks`` attribute but :func:`lwcl.core.model_fns.task_masks`: for task orders
  as replicas the model functions hold one table per replica, of which each replica reads its own row inside
  the vmapped program (a direct ``fns.label_masks[task]`` would read the wrong table)."""
  allowed = {"lwcl.core.model_fns", "lwcl.layerwise.readouts"}  # readouts: the host scenario's own masks
  for name, path in _modules().items():
    if name in allowed or name.startswith("lwcl._compat"):
      continue
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
      if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):  # reads, not the table's making
        base = node.value.args[0] if isinstance(node.value, ast.Call) and node.value.args else node.value
        read = (isinstance(base, ast.Attribute) and base.attr == "label_masks") or \
            (isinstance(base, ast.Name) and base.id == "label_masks")
        assert not read, f"{name}:{node.lineno}"
