"""Builds and loads lwcl's oneDNN convolution library (``onednn_conv.cc``, XLA FFI handlers).

``python -m lwcl.platform.native.build`` compiles ``onednn_conv.cc`` against the installed jaxlib's FFI headers and the
system's oneDNN (Debian: ``apt-get install g++ libdnnl-dev``); ``bin/setup`` runs it. The library's file name
carries a fingerprint of the source and the jaxlib version, so a changed source or an upgraded jaxlib needs a
new build and an old build is never loaded in their place.

:func:`load` registers the handlers with JAX (``jax.ffi.register_ffi_target``, CPU platform) once per process
and says why it could not: not built, turned off (``LWCL_ONEDNN=0``), or the library failed to load.
``model.conv_impl=auto`` uses the oneDNN convolutions on CPU when :func:`load` succeeds and XLA's otherwise
(:mod:`lwcl.models.conv`).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

SOURCE = Path(__file__).with_name("onednn_conv.cc")
BUILD_DIR = Path(__file__).with_name("_build")
ENV_SWITCH = "LWCL_ONEDNN"
# FFI target name -> exported handler symbol
TARGETS = {"lwcl_onednn_conv_fwd": "LwclConvFwd", "lwcl_onednn_conv_bwd_data": "LwclConvBwdData",
           "lwcl_onednn_conv_bwd_weights": "LwclConvBwdWeights"}
INSTALL_HINT = ("install a C++ compiler and oneDNN (Debian/Ubuntu: 'sudo apt-get install g++ libdnnl-dev') and "
                "run 'python -m lwcl.platform.native.build' (bin/setup does both)")

_state: dict = {}


class NativeBuildError(RuntimeError):
  """The oneDNN library could not be built; the message names the missing piece and the fix."""


def fingerprint() -> str:
  """16 hex digits of SHA-256 over the C++ source and the installed jaxlib version."""
  try:
    jaxlib = metadata.version("jaxlib")
  except metadata.PackageNotFoundError:
    jaxlib = "none"
  return hashlib.sha256(SOURCE.read_bytes() + jaxlib.encode()).hexdigest()[:16]


def library_path() -> Path:
  """Where the library for this source and jaxlib is (or would be) built."""
  return BUILD_DIR / f"liblwcl_onednn-{fingerprint()}.so"


def build(compiler: str | None = None, quiet: bool = False) -> Path:
  """Compiles ``onednn_conv.cc`` to :func:`library_path` (written to a temporary file and renamed into place,
  so an interrupted build never leaves a broken library); returns the path.

  Args:
    compiler: C++ compiler; default ``$CXX``, then ``g++``, then ``c++``.
    quiet: print nothing on success.
  Raises:
    NativeBuildError: no compiler, no oneDNN headers or library, or the compilation failed (with its output).
  """
  import jax.ffi  # pylint: disable=g-import-not-at-top

  compiler = compiler or os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
  if not compiler or not shutil.which(compiler):
    raise NativeBuildError(f"no C++ compiler found to build lwcl's oneDNN convolutions; {INSTALL_HINT}")
  out = library_path()
  out.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".so.tmp", delete=False) as tmp:
    tmp_path = Path(tmp.name)
  cmd = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp", f"-I{jax.ffi.include_dir()}",
         str(SOURCE), "-o", str(tmp_path), "-ldnnl"]
  try:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
      missing = "oneapi/dnnl/dnnl.hpp" in result.stderr or "-ldnnl" in result.stderr
      raise NativeBuildError(
          ("oneDNN (headers or library) not found" if missing else "compiling lwcl's oneDNN convolutions failed")
          + f"; {INSTALL_HINT}.\n$ {' '.join(cmd)}\n{result.stderr[-4000:]}")
    os.replace(tmp_path, out)
  finally:
    tmp_path.unlink(missing_ok=True)
  for old in out.parent.glob("liblwcl_onednn-*.so"):  # builds of other sources / jaxlibs
    if old != out:
      old.unlink(missing_ok=True)
  if not quiet:
    print(f"lwcl: built {out}")
  return out


def load() -> str | None:
  """Loads the library and registers its FFI targets with JAX, once per process.

  Returns:
    None when the oneDNN convolutions can be used; otherwise the reason they cannot (a sentence naming the
    fix), the same on every later call.
  """
  if "reason" in _state:
    return _state["reason"]
  reason = None
  path = library_path()
  if os.environ.get(ENV_SWITCH, "1") == "0":
    reason = f"oneDNN convolutions turned off by {ENV_SWITCH}=0"
  elif not path.exists():
    reason = f"lwcl's oneDNN convolutions are not built for this source and jaxlib ({path.name}); {INSTALL_HINT}"
  else:
    try:
      import jax.ffi  # pylint: disable=g-import-not-at-top
      lib = ctypes.CDLL(str(path))
      for target, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
      _state["library"] = lib
    except (OSError, AttributeError) as e:
      reason = f"lwcl's oneDNN library {path} failed to load ({e}); rebuild it: python -m lwcl.platform.native.build"
  if reason and os.environ.get(ENV_SWITCH, "1") != "0":  # LWCL_ONEDNN=0 is a choice, not a problem
    logging.warning("%s; convolutions on CPU use XLA's, slower (docs/results.md, \"oneDNN convolutions\")",
                    reason)
  _state["reason"] = reason
  return reason


def main(argv: list | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m lwcl.platform.native.build", description=__doc__.split("\n\n")[0])
  parser.add_argument("--if-missing", action="store_true", help="build only when the library is not there")
  parser.add_argument("--quiet", action="store_true")
  args = parser.parse_args(argv)
  if args.if_missing and library_path().exists():
    return 0
  try:
    build(quiet=args.quiet)
  except NativeBuildError as e:
    print(f"lwcl: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
