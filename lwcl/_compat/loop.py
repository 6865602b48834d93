"""Deprecated: ``lwcl.loop`` is ``lwcl.engine.loop`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.engine import loop as _new

warnings.warn("lwcl.loop moved to lwcl.engine.loop; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
