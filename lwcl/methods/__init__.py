"""Continual-learning methods, found by name: ``config.method.name`` -> a class in :data:`METHODS`.

Families, one module each (the hooks every method implements are documented once in
:mod:`lwcl.methods.base`):

* :mod:`lwcl.methods.base`: the protocol (:class:`Method`), fine-tuning and joint training.
* :mod:`lwcl.methods.importance`: importance penalties EWC, MAS, SI, NAI (maths in
  :mod:`lwcl.methods.regularization`).
* :mod:`lwcl.methods.episodic`: episodic-memory gradient projection A-GEM, GEM, LGD (maths in
  :mod:`lwcl.methods.projection`, memory in :mod:`lwcl.methods.memory`).

Adding a method: write its class in its family's module, add one line to :data:`METHODS`, and its keys
(if any) to ``configs/default.py``. No import side effect fills the table.
"""

from __future__ import annotations

from lwcl.errors import ConfigError
from lwcl.methods.base import FineTune, Joint, Method, NoState
from lwcl.methods.episodic import AGEM, GEM, LGD, EpisodicState
from lwcl.methods.importance import EWC, MAS, NAI, SI, ImportanceState, SIState

METHODS: dict[str, type[Method]] = {
    "finetune": FineTune,
    "joint": Joint,
    "ewc": EWC,
    "mas": MAS,
    "si": SI,
    "nai": NAI,
    "agem": AGEM,
    "gem": GEM,
    "lgd": LGD,
}

__all__ = ["METHODS", "build_method", "Method", "NoState", "FineTune", "Joint", "EWC", "MAS", "SI", "NAI",
           "ImportanceState", "SIState", "AGEM", "GEM", "LGD", "EpisodicState"]


def build_method(method_config, scenario, fns) -> Method:
  """The method ``config.method.name`` names, built from ``config.method``.

  Args:
    method_config: ``config.method``; scenario: the task stream; fns: the model functions.
  Raises:
    ConfigError: an unknown method name, or a bad value of one of the method's keys.
  """
  name = method_config.name
  if name not in METHODS:
    raise ConfigError(f"unknown method.name '{name}'; use one of {', '.join(sorted(METHODS))}")
  return METHODS[name](method_config, scenario, fns)
