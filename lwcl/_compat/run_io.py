"""Deprecated: ``lwcl.run_io`` is ``lwcl.engine.run_io`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.engine import run_io as _new

warnings.warn("lwcl.run_io moved to lwcl.engine.run_io; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
