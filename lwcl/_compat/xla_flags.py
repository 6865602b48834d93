"""Deprecated: ``lwcl.xla_flags`` is ``lwcl.platform.xla_flags`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.platform import xla_flags as _new

warnings.warn("lwcl.xla_flags moved to lwcl.platform.xla_flags; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
