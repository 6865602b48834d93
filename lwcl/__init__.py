"""lwcl: layer-wise (locally supervised) training and continual learning in JAX/Flax."""

from lwcl import xla_flags as _xla_flags

__version__ = "0.1.0"

# Before any JAX backend exists: XLA:CPU settings measured for lwcl's models (lwcl/xla_flags.py).
_xla_flags.apply()
