"""Deprecated: ``lwcl.setup`` is ``lwcl.engine.build`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.engine import build as _new

warnings.warn("lwcl.setup moved to lwcl.engine.build; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
