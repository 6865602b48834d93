"""Deprecated: ``lwcl.figures`` is ``lwcl.io.figures`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.io import figures as _new

warnings.warn("lwcl.figures moved to lwcl.io.figures; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
