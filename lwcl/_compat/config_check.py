"""Deprecated: ``lwcl.config_check`` is ``lwcl.config.types`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.config import types as _new

warnings.warn("lwcl.config_check moved to lwcl.config.types; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
