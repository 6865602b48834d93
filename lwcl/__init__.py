"""lwcl: layer-wise (locally supervised) training and continual learning in JAX/Flax."""

from lwcl.platform import compilation_cache as _compilation_cache
from lwcl.platform import xla_flags as _xla_flags

__version__ = "0.1.0"

# Import paths that moved in 0.2 (lwcl.setup, lwcl.train, ...) keep working for one release, with a
# DeprecationWarning: their shims live in _compat/ (see its __init__).
__path__.append(__import__("os").path.join(__path__[0], "_compat"))

# Before any JAX backend exists: XLA:CPU settings measured for lwcl's models (lwcl/platform/xla_flags.py).
_xla_flags.apply()
# Before the first compilation: JAX's persistent compilation cache (lwcl/platform/compilation_cache.py).
_compilation_cache.apply()
