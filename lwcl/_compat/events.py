"""Deprecated: ``lwcl.events`` is ``lwcl.io.events`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.io import events as _new

warnings.warn("lwcl.events moved to lwcl.io.events; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
