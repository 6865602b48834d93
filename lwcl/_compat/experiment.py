"""Deprecated: ``lwcl.experiment`` is ``lwcl.engine.experiment`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.engine import experiment as _new

warnings.warn("lwcl.experiment moved to lwcl.engine.experiment; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
