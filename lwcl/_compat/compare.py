"""Deprecated: ``lwcl.compare`` is ``lwcl.cli.compare`` (removed in lwcl 0.3)."""
import sys
import warnings

from lwcl.cli import compare as _new

warnings.warn("lwcl.compare moved to lwcl.cli.compare; import it from there (the old path goes in lwcl 0.3)",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _new
