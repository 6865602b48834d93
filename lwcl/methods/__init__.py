"""Continual-learning methods, found by name: ``config.method.name`` -> a class in :data:`METHODS`.

One module per method, the families' shared code in one module each (the contract every method keeps,
its hooks and rules, is documented once in :mod:`lwcl.methods.base`):

* :mod:`lwcl.methods.base`: the protocol (:class:`Method`), fine-tuning and joint training.
* importance penalties (:mod:`lwcl.methods.importance`: state and bases; maths in
  :mod:`lwcl.methods.regularization`): :mod:`~lwcl.methods.ewc`, :mod:`~lwcl.methods.mas`,
  :mod:`~lwcl.methods.si`, :mod:`~lwcl.methods.nai`, :mod:`~lwcl.methods.l2`.
* episodic-memory gradient projection (:mod:`lwcl.methods.episodic`: state and base; maths in
  :mod:`lwcl.methods.projection`, memory in :mod:`lwcl.methods.memory`): :mod:`~lwcl.methods.agem`,
  :mod:`~lwcl.methods.gem`, :mod:`~lwcl.methods.lgd`.
* rehearsal (:mod:`lwcl.methods.replay`: the reservoir buffer, state and base): :mod:`~lwcl.methods.er`,
  :mod:`~lwcl.methods.der`, :mod:`~lwcl.methods.derpp`.
* distillation: :mod:`~lwcl.methods.lwf`; with herding exemplars and a nearest-mean classifier:
  :mod:`~lwcl.methods.icarl`.

Adding a method (docs/adding.md): one file in this folder, one line in :data:`METHODS`. No import side
effect fills the table.
"""

from __future__ import annotations

from lwcl.errors import ConfigError
from lwcl.methods.agem import AGEM
from lwcl.methods.base import FineTune, Joint, Method, NoState
from lwcl.methods.der import DER
from lwcl.methods.derpp import DERPP
from lwcl.methods.episodic import EpisodicState
from lwcl.methods.er import ER
from lwcl.methods.ewc import EWC
from lwcl.methods.gem import GEM
from lwcl.methods.icarl import ICaRL
from lwcl.methods.importance import ImportanceState
from lwcl.methods.l2 import L2
from lwcl.methods.lgd import LGD
from lwcl.methods.lwf import LwF
from lwcl.methods.mas import MAS
from lwcl.methods.nai import NAI
from lwcl.methods.si import SI, SIState

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
    "l2": L2,
    "er": ER,
    "der": DER,
    "derpp": DERPP,
    "lwf": LwF,
    "icarl": ICaRL,
}

__all__ = ["METHODS", "build_method", "Method", "NoState", "FineTune", "Joint", "EWC", "MAS", "SI", "NAI",
           "ImportanceState", "SIState", "AGEM", "GEM", "LGD", "EpisodicState", "ER", "DER", "DERPP", "LwF",
           "ICaRL"]


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
