"""Deprecated: ``lwcl.dispatch`` is ``lwcl.engine.dispatch`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.engine import dispatch as _new

warnings.warn("lwcl.dispatch moved to lwcl.engine.dispatch; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
