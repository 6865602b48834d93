"""Deprecated: ``lwcl.parallel`` is ``lwcl.platform.devices`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.platform import devices as _new

warnings.warn("lwcl.parallel moved to lwcl.platform.devices; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
