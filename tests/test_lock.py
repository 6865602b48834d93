"""requirements/cpu.lock, what bin/setup installs (bin/lock regenerates it), keeps to setup.cfg and to what lwcl's
settings were measured on: every requirement of setup.cfg (install_requires and the test extra, as they apply on
Linux x86_64 with CPython 3.11, the lock's target) is locked at a version inside its range, every locked package
carries its sha256 hashes, and the locked jaxlib is one lwcl's XLA:CPU flag and oneDNN convolutions were measured
on (``lwcl.platform.xla_flags.MEASURED_JAXLIB``). Pure file parsing: no install, no network."""

import configparser
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from lwcl.platform import xla_flags

from helpers import ROOT

LOCK = Path(ROOT, "requirements", "cpu.lock")
# the environment the lock is resolved for (bin/lock: --python-version 3.11 --python-platform x86_64-manylinux_2_28)
TARGET = {"python_version": "3.11", "python_full_version": "3.11.0", "platform_system": "Linux",
          "platform_machine": "x86_64", "sys_platform": "linux", "os_name": "posix",
          "platform_python_implementation": "CPython", "implementation_name": "cpython"}


def _lock_entries():
  """[(Requirement, [sha256 digests])] of the lock, one per locked package (continuation lines joined)."""
  text = re.sub(r"\\\n", " ", LOCK.read_text())
  entries = []
  for line in text.splitlines():
    if not line.strip() or line.lstrip().startswith("#"):
      continue
    assert not line.startswith(("-e", "--", "-r", "-c")), f"an option or editable line in the lock: {line!r}"
    spec = line.split(" --hash=")[0].strip()
    entries.append((Requirement(spec), re.findall(r"--hash=sha256:([0-9a-f]{64})\b", line)))
  return entries


def _pins():
  """{canonical name: locked Version}; each entry must be one exact pin."""
  pins = {}
  for req, _ in _lock_entries():
    (spec,) = req.specifier
    assert spec.operator == "==" and "*" not in spec.version, f"{req} is not pinned to one version"
    name = canonicalize_name(req.name)
    assert name not in pins, f"{req.name} is locked twice"
    pins[name] = Version(spec.version)
  return pins


def _setup_cfg_requirements():
  """setup.cfg's install_requires and test extra that apply on the lock's target."""
  cfg = configparser.ConfigParser()
  cfg.read(Path(ROOT, "setup.cfg"))
  lines = (cfg["options"]["install_requires"].splitlines()
           + cfg["options.extras_require"]["test"].splitlines())
  reqs = [Requirement(l.strip()) for l in lines if l.strip() and not l.strip().startswith("#")]
  return [r for r in reqs if r.marker is None or r.marker.evaluate({**TARGET, "extra": "test"})]


def test_every_setup_cfg_requirement_is_locked_inside_its_range():
  pins = _pins()
  reqs = _setup_cfg_requirements()
  assert any(canonicalize_name(r.name) == "tensorflow-cpu" for r in reqs)  # the markers were evaluated for Linux
  for req in reqs:
    name = canonicalize_name(req.name)
    assert name in pins, f"{req} (setup.cfg) is not in {LOCK.name}: regenerate it with bin/lock"
    assert req.specifier.contains(pins[name], prereleases=True), (
        f"{LOCK.name} locks {req.name}=={pins[name]}, outside setup.cfg's {req}: regenerate it with bin/lock")


def test_every_locked_package_has_a_hash():
  entries = _lock_entries()
  assert len(entries) > 20
  for req, hashes in entries:
    assert hashes, f"{req} has no --hash=sha256: in {LOCK.name} (bin/setup installs with --require-hashes)"


def test_locked_jaxlib_is_one_lwcl_was_measured_on():
  pins = _pins()
  measured = {Version(v) for v in xla_flags.MEASURED_JAXLIB}
  assert pins["jaxlib"] in measured, (
      f"{LOCK.name} locks jaxlib=={pins['jaxlib']}; lwcl's XLA:CPU flag and oneDNN convolutions were measured on "
      f"{', '.join(xla_flags.MEASURED_JAXLIB)} (lwcl/platform/xla_flags.py: MEASURED_JAXLIB): measure the new "
      "jaxlib and add it there, or keep the lock's")
  assert pins["jax"] == pins["jaxlib"], "jax and jaxlib are released together at one version"


@pytest.mark.parametrize("name", ["torch"])
def test_bench_only_packages_stay_out_of_the_lock(name):
  """torch is bin/bench's, which installs the CPU build itself; locked, a plain install would take CUDA's."""
  assert name not in _pins()


def test_readme_accelerator_installs_name_the_locked_jax():
  """The README's GPU and TPU installs add jax's plugin at the locked jax version (any other would move jaxlib)."""
  readme = Path(ROOT, "README.md").read_text()
  named = re.findall(r"jax\[(\w+)\]==([0-9.]+)", readme)
  assert {extra for extra, _ in named} >= {"cuda12", "tpu"}
  jax = str(_pins()["jax"])
  assert all(version == jax for _, version in named), f"README names {named}; the lock has jax=={jax}"
