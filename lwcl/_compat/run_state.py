"""Deprecated: ``lwcl.run_state`` is ``lwcl.core.record`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.core import record as _new

warnings.warn("lwcl.run_state moved to lwcl.core.record; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
