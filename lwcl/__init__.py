"""lwcl: layer-wise (locally supervised) training and continual learning in JAX/Flax."""

from lwcl import compilation_cache as _compilation_cache
from lwcl import xla_flags as _xla_flags

__version__ = "0.1.0"

# Before any JAX backend exists: XLA:CPU settings measured for lwcl's models (lwcl/xla_flags.py).
_xla_flags.apply()
# Before the first compilation: JAX's persistent compilation cache (lwcl/compilation_cache.py).
_compilation_cache.apply()
