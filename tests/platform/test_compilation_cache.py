"""lwcl.platform.compilation_cache: JAX's persistent compilation cache is on by default, movable and can
be turned off."""

import os
import subprocess
import sys

import pytest

from lwcl.platform import compilation_cache

from helpers import ROOT

CACHE_SETTING = ("import {first}; import lwcl; lwcl.configure(); import jax; "
                 "print('DIR', jax.config.jax_compilation_cache_dir)")


def _cache_dir_seen(tmp_path, env: dict, first="lwcl") -> str:
  full = {k: v for k, v in os.environ.items() if not k.startswith(("LWCL_CACHE", "LWCL_COMPILATION", "JAX_COMP"))}
  # this checkout's lwcl, not an installed one (the subprocess runs outside the checkout)
  full["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
  full.update(env)
  proc = subprocess.run([sys.executable, "-c", CACHE_SETTING.format(first=first)],
                        capture_output=True, text=True, env=full, cwd=str(tmp_path), timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout.split("DIR ")[-1].strip()


@pytest.mark.e2e  # subprocesses of python: the full suite, not --fast
def test_compilation_cache_is_on_by_default_movable_and_can_be_turned_off(tmp_path):
  home = str(tmp_path / "home")
  assert _cache_dir_seen(tmp_path, {"HOME": home}) == os.path.join(home, ".cache", "lwcl", "jax")
  assert _cache_dir_seen(tmp_path, {"HOME": home, "XDG_CACHE_HOME": str(tmp_path / "x")}) == \
      str(tmp_path / "x" / "lwcl" / "jax")
  moved = str(tmp_path / "moved")
  assert _cache_dir_seen(tmp_path, {"LWCL_CACHE_DIR": moved}) == os.path.join(moved, "jax")
  assert _cache_dir_seen(tmp_path, {"LWCL_CACHE_DIR": moved}, first="jax") == os.path.join(moved, "jax")
  assert _cache_dir_seen(tmp_path, {"LWCL_CACHE_DIR": moved, "LWCL_COMPILATION_CACHE": "0"}) == "None"
  # A child of an lwcl process inherits lwcl's JAX setting; its own switch still turns it off.
  inherited = {"LWCL_CACHE_DIR": moved, "JAX_COMPILATION_CACHE_DIR": os.path.join(moved, "jax")}
  assert _cache_dir_seen(tmp_path, {**inherited, "LWCL_COMPILATION_CACHE": "0"}) == "None"
  # The user's own JAX setting wins.
  mine = str(tmp_path / "mine")
  assert _cache_dir_seen(tmp_path, {"LWCL_CACHE_DIR": moved, "JAX_COMPILATION_CACHE_DIR": mine}) == mine
  assert compilation_cache.cache_dir({"LWCL_CACHE_DIR": "~/c"}) == os.path.join(os.path.expanduser("~"), "c", "jax")
