"""XLA:CPU settings that lwcl applies itself, measured on the jaxlib versions listed here.

:func:`lwcl.platform.configure` (which every entry point calls first: ``bin/run``, ``python -m lwcl.main``,
``bin/compare``, ``bin/bench``, the studies, the test suite) calls :func:`apply`, which appends
:data:`CPU_FLAGS` to ``$XLA_FLAGS`` before JAX creates its backends (XLA reads the variable once, when the
first backend is made). ``import lwcl`` alone changes nothing; a user's own process gets the flags by
calling ``lwcl.configure()`` before its first JAX computation (:func:`check_in_effect` warns once when it
was called too late).

The flag (``docs/results.md``, "Convolutions on CPU"):

* ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``: XLA:CPU (jaxlib 0.10) hands every
  convolution to YNNPACK as an "individual convolution" library fusion by default; taking convolutions out
  of that set sends them to XLA's own (Eigen) convolution: the default ConvNet's training step 1.87x and
  ResNet-20's 1.46x faster on a 2-core AVX-512 Xeon, the ConvNet 1.93x and a ResNet-like stack 3.8x on a
  2-core AVX2 EPYC (issue 15), the MLPs unchanged; results differ by float rounding only. It affects only
  the CPU compiler; GPU and TPU programs are unchanged.

Rules:

* An explicit user setting wins: a flag whose name is already in ``$XLA_FLAGS`` is not added.
* XLA aborts the process on a flag it does not know, so the flags are added only for the jaxlib versions
  in :data:`MEASURED_JAXLIB` (``tests/platform/test_xla_flags.py`` checks the installed jaxlib accepts them);
  with any other version nothing is added (logged once by :func:`check_in_effect`). The jaxlib that
  ``requirements/cpu.lock`` (what ``bin/setup`` installs) locks must be one of them (``tests/test_lock.py``);
  the oneDNN convolutions (:mod:`lwcl.platform.native.build`) were measured on the same versions.
* ``LWCL_XLA_CPU_FLAGS=0`` turns the whole mechanism off.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib import metadata

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
MEASURED_JAXLIB = ("0.10.2",)
ENV_SWITCH = "LWCL_XLA_CPU_FLAGS"
# The values XLA accepts for lwcl's flag in the measured jaxlib versions (its ``LibraryFusionType`` enum,
# ``LIBRARY_FUSION_TYPE_<NAME>``, read from jaxlib 0.10.2's ``_jax.so``): a comma-separated list of names, each
# with at most one ``+`` (add) or ``-`` (remove), any case. XLA aborts the process on anything else, with a
# 94-line usage dump (issue 32); :func:`check_user_flags` refuses it first, with one line.
# ``tests/platform/test_xla_flags.py`` checks the rule against the installed jaxlib.
YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_FUSION_TYPES = ("dot", "eltwise", "individual_convolution", "individual_dot", "reduce", "invalid")

_status = {"applied": (), "reason": "not applied yet"}


def _jaxlib_version() -> str | None:
  try:
    return metadata.version("jaxlib")
  except metadata.PackageNotFoundError:
    return None


def _backends_initialized() -> bool:
  if "jax" not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # a JAX without the helper: assume not initialized
    return False


def flags_to_add(xla_flags: str, jaxlib_version: str | None, switch: str = "1") -> tuple:
  """The subset of :data:`CPU_FLAGS` to append to ``xla_flags`` (the current ``$XLA_FLAGS``).

  Args:
    xla_flags: the user's ``XLA_FLAGS`` string ('' when unset).
    jaxlib_version: the installed jaxlib's version string (None: not installed).
    switch: the value of ``$LWCL_XLA_CPU_FLAGS`` ('0' turns the flags off).
  Returns:
    The flags (strings ``--name=value``) that are not already named in ``xla_flags``; empty when the
    switch is '0' or the jaxlib version was not measured.
  """
  if switch == "0" or jaxlib_version not in MEASURED_JAXLIB:
    return ()
  named = {f.split("=", 1)[0] for f in xla_flags.split()}
  return tuple(f for f in CPU_FLAGS if f.split("=", 1)[0] not in named)


def flag_value_problem(xla_flags: str) -> str | None:
  """What is wrong with the value ``xla_flags`` (a ``$XLA_FLAGS`` string) gives lwcl's flag
  (:data:`YNN_FUSION_FLAG`), or None when it is absent or valid (:data:`YNN_FUSION_TYPES`)."""
  for token in xla_flags.split():
    name, eq, value = token.partition("=")
    if name != YNN_FUSION_FLAG or not eq:
      continue
    for item in value.split(","):
      bare = item[1:] if item[:1] in "+-" else item
      if item and bare.lower() not in YNN_FUSION_TYPES:
        return (f"{name}={value}: '{item}' is not one of XLA's fusion types "
                f"({', '.join(YNN_FUSION_TYPES)}, each with an optional + or -)")
  return None


def check_user_flags(environ=None) -> None:
  """Refuses a ``$XLA_FLAGS`` whose value for lwcl's flag XLA would abort on (only for the jaxlib versions
  in :data:`MEASURED_JAXLIB`, whose accepted values are known); other flags are XLA's to check.

  Raises:
    LwclError: one line naming the value and the fix.
  """
  environ = os.environ if environ is None else environ
  problem = flag_value_problem(environ.get("XLA_FLAGS", ""))
  if problem and _jaxlib_version() in MEASURED_JAXLIB:
    from lwcl.errors import LwclError  # pylint: disable=g-import-not-at-top
    raise LwclError(f"XLA_FLAGS sets {problem}, and XLA would abort on it; fix the value in XLA_FLAGS or "
                    f"remove the flag (lwcl then adds {CPU_FLAGS[0]})")


def apply(environ=None) -> tuple:
  """Appends the measured CPU flags to ``environ['XLA_FLAGS']`` (default ``os.environ``) unless JAX's
  backends already exist; returns the flags added (also on later calls: idempotent).

  Raises:
    LwclError: ``$XLA_FLAGS`` gives lwcl's flag a value XLA would abort on (:func:`check_user_flags`).
  """
  environ = os.environ if environ is None else environ
  check_user_flags(environ)
  if _status["applied"]:
    return _status["applied"]
  version = _jaxlib_version()
  if environ.get(ENV_SWITCH, "1") == "0":
    _status["reason"] = f"{ENV_SWITCH}=0"
    return ()
  if version not in MEASURED_JAXLIB:
    _status["reason"] = (f"jaxlib {version} is not among the versions they were measured on "
                         f"({', '.join(MEASURED_JAXLIB)})")
    return ()
  add = flags_to_add(environ.get("XLA_FLAGS", ""), version)
  if not add:
    _status["reason"] = "XLA_FLAGS already sets them"
    return ()
  if _backends_initialized():
    _status["reason"] = "a JAX computation ran before lwcl.configure()"
    return ()
  environ["XLA_FLAGS"] = " ".join(filter(None, [environ.get("XLA_FLAGS", ""), *add]))
  _status.update(applied=add, reason="")
  return add


def applied() -> tuple:
  """The flags :func:`apply` added to ``$XLA_FLAGS`` in this process (empty when it added none)."""
  return tuple(_status["applied"])


def check_in_effect() -> bool:
  """Whether lwcl's CPU flags are in effect for this process's CPU backend; logs once why not (the
  speed of convolutional models on CPU then falls back to XLA's defaults, results are unchanged)."""
  if _status["applied"] or _status["reason"] in ("", f"{ENV_SWITCH}=0", "XLA_FLAGS already sets them",
                                                "not applied yet"):  # not applied yet: a plain process
    return bool(_status["applied"])
  import jax  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != "cpu":
    return False
  if not _status.get("warned"):
    _status["warned"] = True
    logging.warning("lwcl's XLA:CPU flags (%s) are not in effect: %s; convolutions on CPU run at XLA's "
                    "default speed (call lwcl.configure() before any JAX computation, or set XLA_FLAGS yourself)",
                    " ".join(CPU_FLAGS), _status["reason"])
  return False
