"""What produced a result: the ``provenance`` block of every ``results.json``, where two blocks differ, and
what ``bin/compare`` says of the runs it compares (:func:`notes`).

The same config and seed give other numbers on another CPU instruction set or with other package versions
(GEM at 20 tasks: ACC 52.7 on an AVX2 EPYC, 69.1 on an AVX-512 EPYC, both "AMD EPYC" in lscpu), so each
results file records (:func:`collect`):

* ``lwcl``: the package's version, and when it is imported from a git checkout the checkout's ``commit``
  and whether tracked files had uncommitted changes (``dirty``); both null otherwise (no git, not a
  checkout, git refusing the folder);
* ``python``, and ``packages``: the version of each of :data:`PACKAGES` (importlib.metadata; null when
  not installed);
* ``xla_flags``: ``$XLA_FLAGS`` as XLA read it (values naming a path shown as ``<path>``) and the flags lwcl
  added (:mod:`lwcl.platform.xla_flags`);
* ``conv_impl`` (how the convolutions were computed) and ``devices`` (platform, kind, count) of the run;
* ``cpu``: model name, vendor, family, model and which of :data:`ISA_FLAGS` the CPU has (``/proc/cpuinfo``
  on Linux; null elsewhere);
* ``lock_file``: :data:`LOCK_FILE` and the SHA-256 of that file in the checkout (null when there is none).

Nothing names the host or a person (no host name, user name or home path). The process-wide part is
gathered once per process (cached). Provenance is a label, never part of a result's identity: the
finished-results checks and fingerprints (:mod:`lwcl.io.results`) read only the config and the data.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import platform as platform_lib
import subprocess
import sys
from importlib import metadata

from lwcl.errors import ConfigError
from lwcl.platform import xla_flags

# The packages whose versions change what a run computes.
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "grain", "scipy", "jax-cuda12-plugin")
# The CPU features (as /proc/cpuinfo spells them) that choose the kernels XLA, oneDNN and NumPy run, and so the
# float rounding: x86 vector widths and fused multiply-add, AVX-512 and AMX extensions; ARM's SIMD extensions.
ISA_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512dq", "avx512cd",
             "avx512bw", "avx512vl", "avx512ifma", "avx512vbmi", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm")
# The pinned package versions of the checkout (relative to its root), hashed when present.
LOCK_FILE = "requirements/cpu.lock"
# Keys (dotted, as :func:`flatten` names them) whose difference changes the numbers a run computes: the
# instruction set and CPU generation, package versions, the convolution lowering, the devices, XLA's flags.
# The commit, Python's version and the CPU's marketing name are recorded but do not count here.
NUMERIC_KEYS = ("packages", "cpu.vendor", "cpu.family", "cpu.model", "cpu.isa", "conv_impl", "devices",
                "xla_flags")
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GIT_TIMEOUT_S = 10


def collect(conv_impl: str | None = None, devices: dict | None = None) -> dict:
  """The provenance block of a results file (a fresh copy: callers may change it).

  Args:
    conv_impl: how the run computed its convolutions (``model.conv_impl`` resolved), or None.
    devices: ``{'platform', 'kind', 'count'}`` of the run's devices (:func:`device_info`), or None.
  """
  out = copy.deepcopy(_process())
  out["conv_impl"] = conv_impl
  out["devices"] = devices
  return dict(sorted(out.items()))


def device_info(count: int) -> dict:
  """``{'platform', 'kind', 'count'}`` of the first JAX device, with ``count`` the devices a run uses."""
  import jax  # pylint: disable=g-import-not-at-top
  first = jax.devices()[0]
  return {"platform": first.platform, "kind": str(first.device_kind), "count": int(count)}


@functools.cache
def _process() -> dict:
  """The part of the provenance that is the same for every run of this process."""
  # lwcl's own version string (the package is imported before any of its modules; an installed
  # distribution's metadata may be older than an editable checkout's code)
  version = getattr(sys.modules.get("lwcl"), "__version__", None)
  return {"lwcl": {"version": version, **git_state(CHECKOUT)},
          "python": platform_lib.python_version(),
          "packages": {p: _version(p) for p in PACKAGES},
          "xla_flags": {"env": redact_flags(os.environ.get("XLA_FLAGS", "")), "lwcl": list(xla_flags.applied())},
          "cpu": cpu_info(),
          "lock_file": {"path": LOCK_FILE, "sha256": file_sha256(os.path.join(CHECKOUT, LOCK_FILE))}}


def _version(package: str) -> str | None:
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


def git_state(folder: str) -> dict:
  """``{'commit', 'dirty'}`` of the git checkout whose top is ``folder`` (the commit's 40 hex digits;
  whether tracked files differ from it), both None when ``folder`` is not the top of a checkout or git is
  missing or fails. Untracked files do not count (outputs such as ``runs/`` would)."""
  none = {"commit": None, "dirty": None}
  env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")  # status takes no index lock: runs in parallel

  def git(*args):
    return subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                          env=env, check=True).stdout.strip()

  try:
    top = git("rev-parse", "--show-toplevel")
    if os.path.realpath(top) != os.path.realpath(folder):  # lwcl installed inside some other repository
      return none
    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
  except (OSError, subprocess.SubprocessError):  # no git, not a checkout, a folder git refuses, a timeout
    return none
  return {"commit": commit, "dirty": dirty}


def redact_flags(text: str) -> str:
  """``XLA_FLAGS`` with every value that names a path (contains ``/``) replaced by ``<path>`` (e.g.
  ``--xla_dump_to``): paths do not change results and may name a user."""
  out = []
  for flag in text.split():
    name, sep, value = flag.partition("=")
    out.append(f"{name}=<path>" if sep and ("/" in value or "\\" in value) else flag)
  return " ".join(out)


def cpu_info(cpuinfo: str | None = None) -> dict:
  """``{'model_name', 'vendor', 'family', 'model', 'isa'}`` of the CPU.

  Args:
    cpuinfo: the text of ``/proc/cpuinfo`` (read when None; on systems without it every value but
      ``model_name`` (:func:`platform.processor`) is None).
  Returns:
    The first processor's fields: x86 ``model name``, ``vendor_id``, ``cpu family``, ``model`` (integers);
    ARM ``CPU implementer``, ``CPU architecture``, ``CPU part``; ``isa``: the :data:`ISA_FLAGS` among its
    ``flags`` (ARM: ``Features``), in that order.
  """
  if cpuinfo is None:
    try:
      with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        cpuinfo = f.read()
    except OSError:
      return {"model_name": platform_lib.processor() or None, "vendor": None, "family": None, "model": None,
              "isa": None}
  fields = {}
  for line in cpuinfo.splitlines():
    key, sep, value = line.partition(":")
    if not sep:
      if fields and not line.strip():  # the end of the first processor's block (x86)
        break
      continue
    fields.setdefault(key.strip(), value.strip())
  present = set(fields.get("flags", fields.get("Features", "")).split())

  def number(*names):
    for n in names:
      if n in fields:
        text = fields[n]
        try:
          return int(text, 16) if text.lower().startswith("0x") else int(text)
        except ValueError:
          return text
    return None

  return {"model_name": fields.get("model name") or fields.get("Model name") or platform_lib.processor() or None,
          "vendor": fields.get("vendor_id") or fields.get("CPU implementer"),
          "family": number("cpu family", "CPU architecture"), "model": number("model", "CPU part"),
          "isa": [f for f in ISA_FLAGS if f in present]}


def file_sha256(path: str) -> str | None:
  """SHA-256 (64 hex digits) of the file at ``path``, or None when there is none."""
  try:
    with open(path, "rb") as f:
      return hashlib.sha256(f.read()).hexdigest()
  except OSError:
    return None


def flatten(block: dict | None, prefix: str = "") -> dict:
  """``{dotted key: value}`` of a provenance block's leaves (lists are leaves); ``{}`` for None."""
  out = {}
  for k, v in (block or {}).items():
    if isinstance(v, dict) and v:
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def numeric(key: str) -> bool:
  """Whether a dotted key is one of :data:`NUMERIC_KEYS` or under one."""
  return any(key == k or key.startswith(k + ".") for k in NUMERIC_KEYS)


def differences(named: list) -> dict:
  """Where the provenance of several runs differs.

  Args:
    named: ``[(name, provenance block or None), ...]``; None (results of an lwcl that did not record it) is
      left out: unknown, not different.
  Returns:
    ``{dotted key: {value as JSON text: [names]}}`` for every key whose value is not the same in every
    block that records provenance, keys in sorted order, values in order of first appearance.
  """
  flat = [(name, flatten(block)) for name, block in named if block is not None]
  keys = sorted({k for _, f in flat for k in f})
  out = {}
  for k in keys:
    groups = {}
    for name, f in flat:
      groups.setdefault(json.dumps(f.get(k), sort_keys=True), []).append(name)
    if len(groups) > 1:
      out[k] = groups
  return out


def merge(blocks: list) -> dict | None:
  """The provenance of a summary over runs: the first run's block (None when no run records one), with
  ``differs_across_runs`` (the dotted keys) added when the runs' blocks differ."""
  recorded = [b for b in blocks if b is not None]
  if not recorded:
    return None
  inner = [{k: v for k, v in b.items() if k != "differs_across_runs"} for b in recorded]
  out = copy.deepcopy(inner[0])
  differ = sorted(set(differences(list(enumerate(inner))))
                  | {k for b in recorded for k in b.get("differs_across_runs", [])})
  if differ:
    out["differs_across_runs"] = differ
  return out


def parts(name: str, results: dict) -> list:
  """``[(name, provenance block or None)]`` of a results dict: its ``provenance``, or, for a run resumed in
  another environment (``provenance_segments``: :func:`lwcl.engine.report.add_segment`), each part's block
  named ``NAME from task T step S`` (T from 1)."""
  segments = results.get("provenance_segments") or []
  if len(segments) < 2:
    return [(name, results.get("provenance"))]
  return [(f"{name} from task {s['task'] + 1} step {s['task_step']}", s["provenance"]) for s in segments]


def numeric_differences(named: list) -> list:
  """The dotted keys of :func:`differences` that change numbers (:func:`numeric`)."""
  return [k for k in differences(named) if numeric(k)]


def describe(key: str, groups: dict) -> str:
  """``KEY: VALUE (names); VALUE (names)`` of one entry of :func:`differences` (a list as its words)."""
  def text(value_json):
    value = json.loads(value_json)
    return (" ".join(map(str, value)) or "(none)") if isinstance(value, list) else value_json

  return f"{key}: " + "; ".join(f"{text(v)} ({', '.join(map(str, names))})" for v, names in groups.items())


def difference_lines(named: list) -> list:
  """One line per key where the provenance of ``named`` runs (``[(name, block or None)]``) differs,
  ``provenance differs: KEY: VALUE (names); VALUE (names)``, and one naming the runs that record none."""
  lines = [f"provenance differs: {describe(key, groups)}" for key, groups in differences(named).items()]
  missing = [str(name) for name, block in named if block is None]
  if missing and len(missing) < len(named):
    lines.append(f"provenance not recorded (results of an older lwcl): {', '.join(missing)}")
  return lines


def notes(names, per_run_lists, mixed_provenance: bool = False, seeds: bool = True) -> tuple:
  """What the compared runs' provenance says (``bin/compare``'s lines before its table and notes under it).

  Args:
    names: the runs' names; per_run_lists: each run's list of results dicts (its seeds; one for a run
      without ``--seeds``); mixed_provenance: average seeds whose provenance differs in what changes numbers;
    seeds: name each results dict ``name/seed<s>`` (else ``name``).
  Returns:
    ``(lines, notes)``: ``lines``, one per key where any two results differ (printed before the table);
    ``notes``, the lines under the table when results averaged together (with ``mixed_provenance``) or
    compared differ in what changes numbers.

  A seed resumed in another environment counts as its parts (:func:`parts`), so a seed whose parts differ in
  what changes numbers is refused as seeds that differ are.

  Raises:
    ConfigError: the seeds of one run, or the parts of one seed, differ in what changes numbers
      (:func:`numeric_differences`) and ``mixed_provenance`` is False.
  """
  named = [[b for r in runs for b in parts(f"{name}/seed{r['config']['seed']}" if seeds else name, r)]
           for name, runs in zip(names, per_run_lists)]
  everything = [n for group in named for n in group]
  said, within = [], set()
  for name, group in zip(names, named):
    diffs = {k: g for k, g in differences(group).items() if numeric(k)}
    if diffs and not mixed_provenance:
      resumed = " (or the parts of a resumed seed)" if any(" from task " in n for n, _ in group) else ""
      raise ConfigError(f"the seeds of {name}{resumed} were computed on different platforms or software ("
                        + "; ".join(describe(k, g) for k, g in diffs.items()) + "), so their mean "
                        "would mix numerics; rerun the seeds that differ on one machine (move their seed<s> "
                        "folders away), or pass --mixed-provenance to average them anyway")
    if diffs:
      within |= set(diffs)
      said.append(f"note: --mixed-provenance: the seeds of {name} differ in {', '.join(diffs)}; its mean mixes "
                   "platforms or software.")
  # conv_impl follows each config's model (and model.conv_impl) too: between configs it is no platform's doing
  across = [k for k in numeric_differences(everything) if k not in within and k != "conv_impl"]
  if across:
    said.append(f"note: the compared runs differ in {', '.join(across)} (lines above the table); their "
                 "differences include the platform's.")
  return difference_lines(everything), said
