"""Deprecated: ``lwcl.workdir_lock`` is ``lwcl.io.lock`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.io import lock as _new

warnings.warn("lwcl.workdir_lock moved to lwcl.io.lock; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
