"""JAX's persistent compilation cache, on by default for lwcl: compiled XLA programs are kept on disk, so a
second run of the same experiment (or a test suite's many small runs) loads its programs instead of
compiling them again.

:func:`lwcl.platform.configure` (called first by every entry point, and by a user's own process that wants
it; ``import lwcl`` alone changes nothing) calls :func:`apply` next to :mod:`lwcl.platform.xla_flags`,
before any compilation. Settings:

* ``$LWCL_COMPILATION_CACHE=0`` turns it off (also in a subprocess that inherited lwcl's setting of
  ``$JAX_COMPILATION_CACHE_DIR``); any other value (or unset) leaves it on.
* ``$LWCL_CACHE_DIR`` (default ``~/.cache/lwcl``, or ``$XDG_CACHE_HOME/lwcl``): the programs go to its
  ``jax/`` folder (:func:`cache_dir`). Delete the folder at any time to empty the cache.
* An explicit JAX setting wins: when ``$JAX_COMPILATION_CACHE_DIR`` is set, or
  ``jax.config.jax_compilation_cache_dir`` was set before :func:`apply`, lwcl changes nothing.

Programs that took at least :data:`MIN_COMPILE_SECONDS` to compile are stored (0: all; looking a program
up and loading it takes about 20 ms on a 2-core CPU, compiling the smallest 10-50 ms), and the folder is
kept under :data:`MAX_BYTES` by JAX, least recently used first (with ``filelock`` installed). Entries
are keyed by the program, the jax/jaxlib version, the backend and the XLA flags, so a changed setting
compiles afresh; a cached program gives the same results as a fresh compilation.
"""

from __future__ import annotations

import os
import sys

ENV_SWITCH = "LWCL_COMPILATION_CACHE"
ENV_DIR = "LWCL_CACHE_DIR"
MIN_COMPILE_SECONDS = 0.0
MAX_BYTES = 2 * 1024 ** 3

_status = {"dir": None, "reason": "not applied yet"}


def cache_dir(environ=None) -> str:
  """The folder of JAX's compiled programs: ``$LWCL_CACHE_DIR/jax``, by default under
  ``$XDG_CACHE_HOME`` or ``~/.cache`` (``lwcl/jax``). An absolute path; the folder may not exist yet."""
  environ = os.environ if environ is None else environ
  root = environ.get(ENV_DIR) or os.path.join(
      environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "lwcl")
  return os.path.abspath(os.path.join(os.path.expanduser(root), "jax"))


def apply(environ=None) -> str | None:
  """Turns JAX's persistent compilation cache on under :func:`cache_dir` unless switched off or set by
  the user; returns the folder in use by lwcl's setting (None: not set by lwcl). Idempotent.

  Before ``import jax`` the settings go to ``environ`` (default ``os.environ``) as JAX's own variables
  (``JAX_COMPILATION_CACHE_DIR``, ...), which JAX reads when imported and subprocesses inherit; after
  it, to ``jax.config``.
  """
  environ = os.environ if environ is None else environ
  if _status["dir"]:
    return _status["dir"]
  if environ.get(ENV_SWITCH, "1") == "0":
    if "jax" not in sys.modules and environ.get("JAX_COMPILATION_CACHE_DIR") == cache_dir(environ):
      del environ["JAX_COMPILATION_CACHE_DIR"]  # inherited from an lwcl parent process, not the user's
    _status["reason"] = f"{ENV_SWITCH}=0"
    return None
  if environ.get("JAX_COMPILATION_CACHE_DIR"):
    _status["reason"] = "JAX_COMPILATION_CACHE_DIR is set"
    return None
  folder = cache_dir(environ)
  settings = {"jax_compilation_cache_dir": folder,
              "jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_SECONDS,
              "jax_compilation_cache_max_size": MAX_BYTES}
  if "jax" in sys.modules:
    import jax  # pylint: disable=g-import-not-at-top
    if jax.config.jax_compilation_cache_dir:
      _status["reason"] = "jax_compilation_cache_dir was already set"
      return None
    for name, value in settings.items():
      jax.config.update(name, value)
  else:
    for name, value in settings.items():
      environ.setdefault(name.upper(), str(value))
  _status.update(dir=folder, reason="")
  return folder
