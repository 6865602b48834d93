"""Deprecated: ``lwcl.results`` is ``lwcl.io.results`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.io import results as _new

warnings.warn("lwcl.results moved to lwcl.io.results; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
