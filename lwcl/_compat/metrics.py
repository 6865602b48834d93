"""Deprecated: ``lwcl.metrics`` is ``lwcl.core.metrics`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.core import metrics as _new

warnings.warn("lwcl.metrics moved to lwcl.core.metrics; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
