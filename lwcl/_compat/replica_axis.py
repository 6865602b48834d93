"""Deprecated: ``lwcl.replica_axis`` is ``lwcl.engine.replica_axis`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.engine import replica_axis as _new

warnings.warn("lwcl.replica_axis moved to lwcl.engine.replica_axis; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
