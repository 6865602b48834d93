"""What lwcl sets in the process it runs in: XLA:CPU flags (:mod:`lwcl.platform.xla_flags`), JAX's
persistent compilation cache (:mod:`lwcl.platform.compilation_cache`), the device mesh
(:mod:`lwcl.platform.devices`) and the compiled oneDNN convolutions (:mod:`lwcl.platform.native`).

Importing lwcl changes nothing in the process. The entry points (``python -m lwcl.main``, ``bin/run``,
``bin/compare``, ``bin/bench``, ``python -m lwcl.studies.*``, the test suite) call :func:`configure` first;
a user's own program that wants the same settings calls it too, before its first JAX computation.
"""

from __future__ import annotations


def configure() -> dict:
  """Applies lwcl's process settings, as the command line does: the XLA:CPU flags measured for lwcl's
  models (appended to ``$XLA_FLAGS``; only for the jaxlib versions they were measured on, never over the
  user's own setting of the same flag, off with ``LWCL_XLA_CPU_FLAGS=0``) and JAX's persistent compilation
  cache in ``~/.cache/lwcl/jax`` (``LWCL_CACHE_DIR`` moves it, ``LWCL_COMPILATION_CACHE=0`` turns it off,
  the user's own JAX setting wins). Idempotent.

  Call it before the process's first JAX computation: XLA reads its flags once, when the first backend
  is created (after that the flags are not added; :func:`lwcl.platform.xla_flags.check_in_effect` logs
  why). Results differ from an unconfigured process by float rounding at most (the flags choose another
  convolution kernel of XLA's; oneDNN convolutions, ``model.conv_impl=auto`` on CPU, need no flag).

  Returns:
    ``{"xla_flags": the flags added (tuple of str), "compilation_cache": the cache folder lwcl set, or
    None}``.
  """
  from lwcl.platform import compilation_cache, xla_flags  # pylint: disable=g-import-not-at-top
  return {"xla_flags": xla_flags.apply(), "compilation_cache": compilation_cache.apply()}
