"""Deprecated: ``lwcl.orders`` is ``lwcl.runs.orders`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.runs import orders as _new

warnings.warn("lwcl.orders moved to lwcl.runs.orders; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
