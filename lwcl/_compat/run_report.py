"""Deprecated: ``lwcl.run_report`` is ``lwcl.engine.report`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.engine import report as _new

warnings.warn("lwcl.run_report moved to lwcl.engine.report; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
