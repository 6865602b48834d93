"""Deprecated: ``lwcl.projection`` is ``lwcl.methods.projection`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.methods import projection as _new

warnings.warn("lwcl.projection moved to lwcl.methods.projection; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
