"""Deprecated: ``lwcl.compilation_cache`` is ``lwcl.platform.compilation_cache`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.platform import compilation_cache as _new

warnings.warn("lwcl.compilation_cache moved to lwcl.platform.compilation_cache; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
