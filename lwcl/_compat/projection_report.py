"""Deprecated: ``lwcl.projection_report`` is ``lwcl.methods.gem_report`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.methods import gem_report as _new

warnings.warn("lwcl.projection_report moved to lwcl.methods.gem_report; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
