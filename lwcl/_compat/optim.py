"""Deprecated: ``lwcl.optim`` is ``lwcl.engine.optim`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.engine import optim as _new

warnings.warn("lwcl.optim moved to lwcl.engine.optim; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
