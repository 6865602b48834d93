"""Deprecated: ``lwcl.checkpoint`` is ``lwcl.io.checkpoint`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.io import checkpoint as _new

warnings.warn("lwcl.checkpoint moved to lwcl.io.checkpoint; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
