"""Deprecated: ``lwcl.replicas`` is ``lwcl.runs.seeds`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.runs import seeds as _new

warnings.warn("lwcl.replicas moved to lwcl.runs.seeds; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
