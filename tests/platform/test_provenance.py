"""lwcl/platform/provenance.py: the provenance block of every results.json (what produced it), gathered once per
process, naming no host or person; never part of a result's identity (a finished workdir stays finished,
results without it still load)."""

import getpass
import hashlib
import json
import os
import re
import socket
import subprocess

import jax
import pytest

import lwcl
from lwcl.engine import loop
from lwcl.io import results as results_lib
from lwcl.platform import provenance
from lwcl.runs import driver

import helpers

AVX2_EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 sha_ni

processor\t: 1
vendor_id\t: AuthenticAMD
flags\t\t: fpu avx512f
"""
AVX512_EPYC = AVX2_EPYC.replace("23", "25", 1).replace("49", "17", 1).replace(
    "avx2 sha_ni", "avx2 avx512f avx512dq avx512_bf16 avx512_vnni sha_ni", 1)
ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes sha1 asimdhp sve sve2 i8mm bf16
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd4f
"""


def test_cpu_info_reads_the_first_processor_and_only_the_fixed_isa_flags():
  avx2, avx512 = provenance.cpu_info(AVX2_EPYC), provenance.cpu_info(AVX512_EPYC)
  assert avx2 == {"model_name": "AMD EPYC", "vendor": "AuthenticAMD", "family": 23, "model": 49,
                  "isa": ["sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c"]}  # not processor 1's avx512f
  assert avx512["model_name"] == avx2["model_name"]  # what lscpu's "Model name" cannot tell apart ...
  assert (avx512["family"], avx512["model"]) == (25, 17)  # ... family, model and the ISA flags do
  assert set(avx512["isa"]) - set(avx2["isa"]) == {"avx512f", "avx512dq", "avx512_bf16", "avx512_vnni"}
  assert provenance.numeric_differences([("a", {"cpu": avx2}), ("b", {"cpu": avx512})]) == \
      ["cpu.family", "cpu.isa", "cpu.model"]
  arm = provenance.cpu_info(ARM)
  assert (arm["vendor"], arm["family"], arm["model"]) == ("0x41", 8, 0xd4f)
  assert arm["isa"] == ["asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm"]


def test_flags_naming_a_path_are_redacted():
  home = os.path.expanduser("~")
  text = f"--xla_force_host_platform_device_count=2 --xla_dump_to={home}/dumps --xla_cpu_use_thunk_runtime=false"
  assert provenance.redact_flags(text) == ("--xla_force_host_platform_device_count=2 --xla_dump_to=<path> "
                                           "--xla_cpu_use_thunk_runtime=false")


def test_git_state_is_null_outside_a_checkout_and_without_git(tmp_path, monkeypatch):
  assert provenance.git_state(str(tmp_path)) == {"commit": None, "dirty": None}
  monkeypatch.setenv("PATH", str(tmp_path))  # no git on the path: null, never an error
  assert provenance.git_state(provenance.CHECKOUT) == {"commit": None, "dirty": None}
  assert provenance.file_sha256(str(tmp_path / "missing.lock")) is None
  (tmp_path / "x.lock").write_bytes(b"jax==0.10.2\n")
  assert provenance.file_sha256(str(tmp_path / "x.lock")) == hashlib.sha256(b"jax==0.10.2\n").hexdigest()


def test_gathered_once_per_process_and_handed_out_as_copies():
  a, b = provenance.collect("native", {"platform": "cpu", "kind": "cpu", "count": 1}), provenance.collect()
  assert provenance._process.cache_info().currsize == 1
  a["packages"]["jax"] = "changed"
  assert provenance.collect()["packages"]["jax"] != "changed" and b["conv_impl"] is None


def test_differences_merge_and_what_changes_numbers():
  base = provenance.collect("onednn", {"platform": "cpu", "kind": "cpu", "count": 1})
  other = json.loads(json.dumps(base))
  other["lwcl"]["commit"], other["packages"]["jaxlib"] = "f" * 40, "0.0.1"
  diffs = provenance.differences([("a", base), ("b", other), ("c", None)])
  assert list(diffs) == ["lwcl.commit", "packages.jaxlib"]
  assert list(diffs["packages.jaxlib"].values()) == [["a"], ["b"]]  # None: unknown, not different
  assert provenance.numeric_differences([("a", base), ("b", other)]) == ["packages.jaxlib"]  # a commit does not
  merged = provenance.merge([base, other, None])
  assert merged["differs_across_runs"] == ["lwcl.commit", "packages.jaxlib"] and merged["packages"] == base["packages"]
  assert provenance.merge([base, base]) == base and provenance.merge([None]) is None
  assert provenance.merge([merged, base])["differs_across_runs"] == merged["differs_across_runs"]  # kept upward
  lines = provenance.difference_lines([("a", base), ("b", other), ("c", None)])
  jaxlib = base["packages"]["jaxlib"]
  assert lines[1] == f'provenance differs: packages.jaxlib: "{jaxlib}" (a); "0.0.1" (b)'
  assert lines[2] == "provenance not recorded (results of an older lwcl): c"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A real tiny run through the driver: ``(config, workdir, results dict)``."""
  config = helpers.tiny_config("finetune", "backprop")
  workdir = str(tmp_path_factory.mktemp("prov") / "run")
  return config, workdir, driver.run(config, workdir)


@pytest.mark.e2e  # a whole stream through the driver
def test_a_real_run_records_every_provenance_key(tiny_run):
  _, workdir, _ = tiny_run
  block = helpers.load_results(workdir)["provenance"]
  assert set(block) == {"lwcl", "python", "packages", "xla_flags", "conv_impl", "devices", "cpu", "lock_file"}
  commit, dirty = block["lwcl"]["commit"], block["lwcl"]["dirty"]
  assert block["lwcl"]["version"] == lwcl.__version__
  head = subprocess.run(["git", "-C", helpers.ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
  if head.returncode == 0:  # the tests run from a checkout
    assert commit == head.stdout.strip() and isinstance(dirty, bool)
  else:
    assert commit is None and dirty is None
  assert re.fullmatch(r"\d+\.\d+\.\d+\S*", block["python"])
  assert set(block["packages"]) == set(provenance.PACKAGES)
  for p in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "grain"):
    assert isinstance(block["packages"][p], str) and block["packages"][p][0].isdigit(), p
  assert isinstance(block["xla_flags"]["env"], str) and isinstance(block["xla_flags"]["lwcl"], list)
  assert all(f in block["xla_flags"]["env"] for f in block["xla_flags"]["lwcl"])
  assert block["conv_impl"] == helpers.load_results(workdir)["conv_impl"]
  devices = block["devices"]
  assert devices["platform"] == jax.default_backend() and isinstance(devices["kind"], str)
  assert devices["count"] == helpers.load_results(workdir)["devices"]["count"] >= 1
  cpu = block["cpu"]
  assert set(cpu) == {"model_name", "vendor", "family", "model", "isa"}
  if os.path.exists("/proc/cpuinfo"):
    assert isinstance(cpu["isa"], list) and set(cpu["isa"]) <= set(provenance.ISA_FLAGS)
    assert cpu["isa"] == [f for f in provenance.ISA_FLAGS if f in cpu["isa"]]  # in the fixed order
  assert block["lock_file"]["path"] == provenance.LOCK_FILE
  sha = block["lock_file"]["sha256"]
  assert sha is None if not os.path.exists(os.path.join(helpers.ROOT, provenance.LOCK_FILE)) else \
      re.fullmatch("[0-9a-f]{64}", sha)
  # Nothing names the host or a person.
  text = json.dumps(block)
  for word in {socket.gethostname(), getpass.getuser()} - {""}:
    assert not re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", text), word
  assert os.path.expanduser("~") not in text and helpers.ROOT not in text


@pytest.mark.e2e  # a whole stream through the driver
def test_provenance_is_not_identity_finished_stays_finished_and_old_results_load(tiny_run, monkeypatch):
  config, workdir, results = tiny_run
  on_disk = helpers.load_results(workdir)
  assert on_disk["fingerprint"] == results_lib.fingerprint(on_disk["config"]) == \
      results_lib.fingerprint(config.to_dict())
  monkeypatch.setattr(loop, "run_stream", lambda *a, **k: pytest.fail("retrained a finished workdir"))
  # Another machine and commit, then an lwcl that recorded no provenance: the same experiment, finished.
  other = json.loads(json.dumps(on_disk))
  other["provenance"]["cpu"].update(family=23, model=49, isa=["avx", "avx2", "fma"])
  other["provenance"]["lwcl"]["commit"] = "0" * 40
  old = {k: v for k, v in on_disk.items() if k != "provenance"}
  for variant in (other, old):
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(variant, f)
    assert results_lib.finished_results(config, workdir) == variant
    assert driver.run(config, workdir) == variant  # reported again, nothing trained
