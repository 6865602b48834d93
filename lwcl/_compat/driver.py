"""Deprecated: ``lwcl.driver`` is ``lwcl.runs.driver`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.runs import driver as _new

warnings.warn("lwcl.driver moved to lwcl.runs.driver; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
