"""lwcl's XLA:CPU flags (lwcl/platform/xla_flags.py): added by lwcl.configure() (never by `import lwcl`) for the
measured jaxlib versions, accepted by the installed jaxlib (XLA aborts on an unknown flag), never over a user's
own setting, off on request."""

import os
import subprocess
import sys

import pytest

from lwcl.errors import LwclError
from lwcl.platform import xla_flags

from helpers import ROOT

FLAG = xla_flags.CPU_FLAGS[0]
NAME = FLAG.split("=", 1)[0]
MEASURED = xla_flags.MEASURED_JAXLIB[0]
# A subprocess that configures lwcl's settings, compiles and runs a convolution, and prints the XLA_FLAGS it
# ran under.
PROBE = ("import lwcl, os, jax, jax.numpy as jnp\nlwcl.configure()\n"
         "x = jnp.ones((1, 8, 8, 2)); w = jnp.ones((3, 3, 2, 4))\n"
         "y = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',"
         " dimension_numbers=('NHWC', 'HWIO', 'NHWC')))(x, w)\n"
         "assert float(y[0, 4, 4, 0]) == 18.0\n"
         "print(os.environ.get('XLA_FLAGS', ''))\n")


def probe(**env):
  full = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_flags.ENV_SWITCH)}
  full.update(JAX_PLATFORMS="cpu", **env)
  proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=full, cwd=ROOT,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def test_flags_to_add_rules():
  assert xla_flags.flags_to_add("", MEASURED) == xla_flags.CPU_FLAGS
  assert xla_flags.flags_to_add("--xla_force_host_platform_device_count=4", MEASURED) == xla_flags.CPU_FLAGS
  assert xla_flags.flags_to_add(f"{NAME}=+individual_convolution", MEASURED) == ()  # the user's wins
  assert xla_flags.flags_to_add("", "0.4.30") == ()  # not measured there: XLA might abort on it
  assert xla_flags.flags_to_add("", None) == ()
  assert xla_flags.flags_to_add("", MEASURED, switch="0") == ()


def test_apply_appends_to_the_users_flags_once(monkeypatch):
  monkeypatch.setattr(xla_flags, "_status", {"applied": (), "reason": ""})
  monkeypatch.setattr(xla_flags, "_jaxlib_version", lambda: MEASURED)
  monkeypatch.setattr(xla_flags, "_backends_initialized", lambda: False)
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  assert xla_flags.apply(env) == xla_flags.CPU_FLAGS
  assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 " + " ".join(xla_flags.CPU_FLAGS)
  assert xla_flags.apply(env) == xla_flags.CPU_FLAGS  # idempotent
  assert env["XLA_FLAGS"].count(NAME) == 1


def test_apply_does_nothing_once_a_backend_exists(monkeypatch):
  monkeypatch.setattr(xla_flags, "_status", {"applied": (), "reason": ""})
  monkeypatch.setattr(xla_flags, "_jaxlib_version", lambda: MEASURED)
  monkeypatch.setattr(xla_flags, "_backends_initialized", lambda: True)
  env = {}
  assert xla_flags.apply(env) == () and "XLA_FLAGS" not in env
  assert "ran before" in xla_flags._status["reason"]  # pylint: disable=protected-access


@pytest.mark.skipif(xla_flags._jaxlib_version() not in xla_flags.MEASURED_JAXLIB,  # pylint: disable=protected-access
                    reason="installed jaxlib is not among the measured versions: lwcl adds no flag there")
@pytest.mark.e2e  # subprocesses of python: the full suite, not --fast
def test_installed_jaxlib_accepts_the_flags_through_lwcl_configure():
  assert probe().split() == list(xla_flags.CPU_FLAGS)
  assert probe(XLA_FLAGS="--xla_force_host_platform_device_count=2").split() == [
      "--xla_force_host_platform_device_count=2", *xla_flags.CPU_FLAGS]
  own = f"{NAME}=+individual_convolution"
  assert probe(XLA_FLAGS=own) == own  # an explicit user setting wins
  assert probe(**{xla_flags.ENV_SWITCH: "0"}) == ""


# `import lwcl` and its public names leave the process alone: no XLA flag, no JAX option, no JAX import.
UNTOUCHED = ("import os, sys\nimport lwcl\nfrom lwcl import Experiment, TrainState, METHODS, run, agem\n"
             "import jax\n"
             "print(repr(os.environ.get('XLA_FLAGS')), repr(os.environ.get('JAX_COMPILATION_CACHE_DIR')),"
             " repr(jax.config.jax_compilation_cache_dir),"
             " repr(jax.config.jax_persistent_cache_min_compile_time_secs))\n")
DEFAULTS = "import jax\nprint(repr(jax.config.jax_persistent_cache_min_compile_time_secs))"


@pytest.mark.e2e  # subprocesses of python: the full suite, not --fast
def test_import_lwcl_leaves_xla_flags_and_jax_cache_settings_untouched():
  env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_COMP", "JAX_PERSISTENT", "LWCL_"))}
  env.update(JAX_PLATFORMS="cpu")
  plain = subprocess.run([sys.executable, "-c", DEFAULTS], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
  proc = subprocess.run([sys.executable, "-c", UNTOUCHED], capture_output=True, text=True, env=env, cwd=ROOT,
                        timeout=300)
  assert proc.returncode == 0 and plain.returncode == 0, proc.stderr[-2000:] + plain.stderr[-2000:]
  xla, cache_env, cache_dir, min_secs = proc.stdout.split()
  assert (xla, cache_env, cache_dir) == ("None", "None", "None")
  assert min_secs == plain.stdout.strip()  # JAX's own default, whatever this JAX version makes it


ACCEPTED = ("dot,reduce", "-Individual_Dot,+eltwise", "")
REFUSED = ("bogus", "+-dot", "-")


def test_flag_value_rule():
  for value in ACCEPTED:
    assert xla_flags.flag_value_problem(f"--xla_force_host_platform_device_count=2 {NAME}={value}") is None
  for value in REFUSED:
    problem = xla_flags.flag_value_problem(f"{NAME}={value}")
    assert problem is not None and f"'{value}' is not one of XLA's fusion types" in problem, problem
  assert xla_flags.flag_value_problem("--xla_other_flag=bogus") is None  # XLA's to check, not lwcl's


def test_apply_refuses_a_value_xla_would_abort_on(monkeypatch):
  monkeypatch.setattr(xla_flags, "_jaxlib_version", lambda: MEASURED)
  with pytest.raises(LwclError) as info:
    xla_flags.apply({"XLA_FLAGS": f"{NAME}=bogus"})
  assert "XLA would abort on it" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.e2e  # subprocesses of python: the full suite, not --fast
def test_flag_value_rule_matches_the_installed_jaxlib():
  """The rule of :func:`xla_flags.flag_value_problem` against XLA itself: each accepted value starts a CPU
  backend, each refused one aborts it (a plain process, without lwcl's check)."""
  if xla_flags._jaxlib_version() not in xla_flags.MEASURED_JAXLIB:
    pytest.skip("the fusion types are known for the measured jaxlib versions only")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = {v: subprocess.Popen([sys.executable, "-c", "import jax; jax.devices()"], cwd=ROOT,
                               env=dict(env, JAX_PLATFORMS="cpu", XLA_FLAGS=f"{NAME}={v}"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
           for v in ACCEPTED + REFUSED}
  codes = {v: p.wait(timeout=300) for v, p in procs.items()}
  assert all(codes[v] == 0 for v in ACCEPTED), codes
  assert all(codes[v] != 0 for v in REFUSED), codes
