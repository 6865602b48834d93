"""Deprecated: ``lwcl.config_files`` is ``lwcl.config.files`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.config import files as _new

warnings.warn("lwcl.config_files moved to lwcl.config.files; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
