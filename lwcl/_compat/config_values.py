"""Deprecated: ``lwcl.config_values`` is ``lwcl.config.values`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.config import values as _new

warnings.warn("lwcl.config_values moved to lwcl.config.values; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
