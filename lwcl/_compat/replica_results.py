"""Deprecated: ``lwcl.replica_results`` is ``lwcl.runs.summaries`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.runs import summaries as _new

warnings.warn("lwcl.replica_results moved to lwcl.runs.summaries; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
