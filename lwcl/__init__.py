"""lwcl: layer-wise (locally supervised) training and continual learning in JAX/Flax.

The public API: what a user may import in their own process (``from lwcl import X``). Everything else is
internal and may move between releases (moved paths keep working for one release, with a
``DeprecationWarning``). Importing lwcl has no side effect on the process: it sets no ``XLA_FLAGS`` and
no JAX option; :func:`configure` applies the command line's process settings where a user wants them.

==========================================  ====================================================================
name                                        what it is
==========================================  ====================================================================
``configure()``                             the command line's process settings: XLA:CPU flags, JAX's
                                            persistent compilation cache (:func:`lwcl.platform.configure`)
``load_config(spec)``                       ``get_config()`` of a config file ``path[:arg]``, as ``--config``
                                            reads it (unlocked; ``configs/default.py`` has every key)
``run(config, workdir)``                    what ``python -m lwcl.main`` runs for a config (single, seeds,
                                            orders, sweep): trains or resumes, returns the results dict
``Experiment(config)``                      one run built from a config: ``initial_state()``, ``train_step``,
                                            ``eval_step``, ``evaluate(state)``, ``run(workdir)``
``TrainState``, ``ModelFns``                the state a step reads and writes; the model functions
``make_train_step``, ``make_train_steps``,  the pure steps built from model functions, an optax
``make_eval_step``                          transformation and a method (``jax.jit`` them yourself)
``METHODS``, ``Method``, ``build_method``   the continual methods by name, their protocol, and their builder
``importance_penalty``, ``agem``, ``gem``,  the methods' optax transformations (chain them in front of a
``lgd``                                     base optimizer)
==========================================  ====================================================================
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

__version__ = "0.2.0"

# Import paths that moved in 0.2 (lwcl.setup, lwcl.train, ...) keep working for one release, with a
# DeprecationWarning: their shims live in _compat/ (see its __init__). This extends lwcl's own package path
# only; nothing outside lwcl changes.
__path__.append(os.path.join(__path__[0], "_compat"))

# name -> (module, attribute): loaded on first use, so `import lwcl` stays cheap and has no side effect.
_API = {
    "configure": ("lwcl.platform", "configure"),
    "load_config": ("lwcl.config.files", "load_spec"),
    "run": ("lwcl.runs.driver", "run"),
    "Experiment": ("lwcl.engine.experiment", "Experiment"),
    "TrainState": ("lwcl.core.state", "TrainState"),
    "ModelFns": ("lwcl.core.model_fns", "ModelFns"),
    "make_train_step": ("lwcl.engine.steps", "make_train_step"),
    "make_train_steps": ("lwcl.engine.steps", "make_train_steps"),
    "make_eval_step": ("lwcl.engine.steps", "make_eval_step"),
    "METHODS": ("lwcl.methods", "METHODS"),
    "Method": ("lwcl.methods", "Method"),
    "build_method": ("lwcl.methods", "build_method"),
    "importance_penalty": ("lwcl.methods.regularization", "importance_penalty"),
    "agem": ("lwcl.methods.projection", "agem"),
    "gem": ("lwcl.methods.projection", "gem"),
    "lgd": ("lwcl.methods.projection", "lgd"),
}
__all__ = ["Experiment", "METHODS", "Method", "ModelFns", "TrainState", "agem", "build_method", "configure",
           "gem", "importance_penalty", "lgd", "load_config", "make_eval_step", "make_train_step",
           "make_train_steps", "run"]  # = sorted(_API) (tests/test_public_api.py)

if TYPE_CHECKING:  # what type checkers and IDEs see for the lazily loaded names
  from lwcl.config.files import load_spec as load_config
  from lwcl.core.model_fns import ModelFns
  from lwcl.core.state import TrainState
  from lwcl.engine.experiment import Experiment
  from lwcl.engine.steps import make_eval_step, make_train_step, make_train_steps
  from lwcl.methods import METHODS, Method, build_method
  from lwcl.methods.projection import agem, gem, lgd
  from lwcl.methods.regularization import importance_penalty
  from lwcl.platform import configure
  from lwcl.runs.driver import run


def __getattr__(name: str):
  if name not in _API:
    raise AttributeError(f"module 'lwcl' has no attribute '{name}'")
  module, attr = _API[name]
  value = getattr(importlib.import_module(module), attr)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_API))
