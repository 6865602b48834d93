"""Deprecated: ``lwcl.replica_axis`` is ``lwcl.runs.axis`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.runs import axis as _new

warnings.warn("lwcl.replica_axis moved to lwcl.runs.axis; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
