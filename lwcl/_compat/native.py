"""Deprecated: ``lwcl.native`` is ``lwcl.platform.native`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.platform import native as _new
from lwcl.platform.native import build as _build  # noqa: F401  (lwcl.native.build keeps working)

warnings.warn("lwcl.native moved to lwcl.platform.native; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
