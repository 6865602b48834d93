"""Deprecated: ``lwcl.report`` is ``lwcl.io.report`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.io import report as _new

warnings.warn("lwcl.report moved to lwcl.io.report; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
