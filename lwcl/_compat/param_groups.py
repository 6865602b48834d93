"""Deprecated: ``lwcl.param_groups`` is ``lwcl.methods.param_groups`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.methods import param_groups as _new

warnings.warn("lwcl.param_groups moved to lwcl.methods.param_groups; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
