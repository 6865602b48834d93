"""Deprecated: ``lwcl.qp`` is ``lwcl.methods.qp`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.methods import qp as _new

warnings.warn("lwcl.qp moved to lwcl.methods.qp; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
