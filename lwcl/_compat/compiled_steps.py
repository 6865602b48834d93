"""Deprecated: ``lwcl.compiled_steps`` is ``lwcl.engine.compiled`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.engine import compiled as _new

warnings.warn("lwcl.compiled_steps moved to lwcl.engine.compiled; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
