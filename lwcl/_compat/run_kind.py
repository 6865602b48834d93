"""Deprecated: ``lwcl.run_kind`` is ``lwcl.runs.kinds`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.runs import kinds as _new

warnings.warn("lwcl.run_kind moved to lwcl.runs.kinds; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
