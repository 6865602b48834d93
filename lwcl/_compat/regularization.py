"""Deprecated: ``lwcl.regularization`` is ``lwcl.methods.regularization`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.methods import regularization as _new

warnings.warn("lwcl.regularization moved to lwcl.methods.regularization; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
