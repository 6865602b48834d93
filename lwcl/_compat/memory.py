"""Deprecated: ``lwcl.memory`` is ``lwcl.methods.memory`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.methods import memory as _new

warnings.warn("lwcl.memory moved to lwcl.methods.memory; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
