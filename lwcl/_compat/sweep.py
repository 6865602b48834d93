"""Deprecated: ``lwcl.sweep`` is ``lwcl.runs.sweep`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.runs import sweep as _new

warnings.warn("lwcl.sweep moved to lwcl.runs.sweep; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
