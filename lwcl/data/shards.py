"""What the writer of a record folder recorded about its shards, and the checks that they are still that.

:func:`lwcl.data.records.write_split` records, per split, in ``features.json`` (its ``splits`` entry, the
*manifest*): the shard files in order, each one's record count, size and SHA-256 and its labels file's
SHA-256, the image format the records were written in, and the layout (``interleaved``: record ``g`` of a
split of ``n`` shards is record ``g // n`` of shard ``g % n``, so a split reads back in the order it was
written whatever ``n``); ``features.json`` carries the SHA-256 of its own contents (``sha256``).
:class:`lwcl.data.records.RecordReader` checks all of it when it opens a split, before a record is used:
a listed shard missing, a shard of the split that is not listed (stale: left from an earlier write), a
size, digest or record count that differs (truncated, replaced, records moved), a labels file that differs,
an image format that is not the one written, an edited ``features.json``: each is refused with one line
naming the file and the fix. The data fingerprint is then the verified digests (every byte).

Verified once at open, not per record as read. Measured on the Fashion-MNIST record set (``bin/bench stream
write --copies=1``: 60,000 + 10,000 records in 8 shards per split, 42.3 MB) on this project's 2-core
machine, an AMD EPYC of family 25, model 17 (Zen 4; x86-64 with SHA-NI and AVX-512): SHA-256 of every byte
of the folder takes 0.032 s from the page cache (1,330 MB/s; BLAKE2b 794 MB/s, MD5 664 MB/s) and
0.056-0.067 s with the files evicted from it (640-750 MB/s), once per process. Checking a digest per record
as each is read instead would cost 0.75 us (SHA-256) to 1.6 us (BLAKE2b-128) on every read of every epoch
(3-6% of the 26 us a record takes to read and decode), a digest table of 1 MB, and would find a moved
record only when reading it, mid-run. At 1.3 GB/s a 150 GB ImageNet folder takes about two minutes to open
(more where the disk is slower).

Folders written before the manifest (a ``features.json`` without ``splits``) and TFDS-prepared data sets
(:mod:`lwcl.data.tfds_stream`) have nothing recorded: their shards are hashed whole for the fingerprint, their
``-of-N`` set must be complete (TFDS: each shard holds the builder's record count), they are read shard
after shard, and their labels are parsed from the records (no ``.labels.npy`` is trusted).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from typing import Iterator

import numpy as np

from lwcl.errors import DataError

FEATURES_FILE = "features.json"
LABELS_SUFFIX = ".labels.npy"
INTERLEAVED = "interleaved"  # record g of a split of n shards: record g // n of shard g % n
CONCATENATED = "concatenated"  # the shards one after the other (TFDS; folders written before the manifest)
REWRITE = "rewrite the split (bin/bench stream write, or lwcl.data.records.write_split)"
_SHARD = re.compile(r"-(\d+)-of-(\d+)$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_folder(directory: str) -> None:
  """Refuses a record folder to write that is a file (DataError)."""
  if os.path.exists(directory) and not os.path.isdir(directory):
    raise DataError(f"{directory} is a file, not a folder; pass a folder for the records (it is created when "
                    "missing)")


@contextlib.contextmanager
def writing(directory: str) -> Iterator[None]:
  """Creates the record folder ``directory`` (:func:`check_folder`) and turns a write in it that fails
  (riegeli's ``RuntimeError``, an ``OSError``: a full disk, too many files open) into one DataError naming
  it."""
  check_folder(directory)
  try:
    os.makedirs(directory, exist_ok=True)
    yield
  except (OSError, RuntimeError) as e:
    text = (e.strerror if isinstance(e, OSError) else "") or " ".join(str(e).split())
    raise DataError(f"cannot write the records in {directory} ({type(e).__name__}: {text[:200]}); free "
                    f"space or use fewer shards, then write them again (a split written in part is refused "
                    "when read)") from None


def shard_name(split: str, i: int, n: int) -> str:
  return f"{split}.array_record-{i:05d}-of-{n:05d}"


def file_digest(path: str) -> tuple[int, str]:
  """``(bytes read, SHA-256 hex)`` of every byte of ``path``; DataError when it cannot be read."""
  h, size = hashlib.sha256(), 0
  try:
    with open(path, "rb") as f:
      while chunk := f.read(1 << 20):
        h.update(chunk)
        size += len(chunk)
  except OSError as e:
    raise DataError(f"cannot read {path} ({e.strerror or type(e).__name__}); restore it or {REWRITE}") from None
  return size, h.hexdigest()


def self_digest(body: dict) -> str:
  """The SHA-256 a ``features.json`` carries: of its canonical JSON without the ``sha256`` entry."""
  rest = {k: v for k, v in body.items() if k != "sha256"}
  return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_self_digest(d: dict, path: str) -> None:
  """Refuses a ``features.json`` with a manifest or a digest whose contents no longer match its digest."""
  if ("splits" in d or "sha256" in d) and d.get("sha256") != self_digest(d):
    raise DataError(f"{path} was changed after it was written (its contents no longer match the SHA-256 it "
                    f"carries); restore it, or {REWRITE} and write the spec again "
                    "(lwcl.data.records.write_features)")


def recorded_splits(directory: str) -> dict:
  """The manifest of the folder's ``features.json`` when it has a valid one, else ``{}``."""
  try:
    with open(os.path.join(directory, FEATURES_FILE)) as f:
      d = json.load(f)
  except (OSError, ValueError):
    return {}
  if not isinstance(d, dict) or not isinstance(d.get("splits"), dict) or d.get("sha256") != self_digest(d):
    return {}
  return dict(d["splits"])


def write_features_file(directory: str, body: dict) -> None:
  """Writes ``features.json`` (``body`` and its digest) whole or not at all."""
  body = {**body, "sha256": self_digest(body)}
  path = os.path.join(directory, FEATURES_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump(body, f, indent=1)
  os.replace(path + ".tmp", path)


def shard_entry(directory: str, name: str, records: int) -> dict:
  """The manifest's entry of a shard just written (and its labels file)."""
  path = os.path.join(directory, name)
  size, digest = file_digest(path)
  return {"file": name, "records": int(records), "bytes": size, "sha256": digest,
          "labels_sha256": file_digest(path + LABELS_SUFFIX)[1]}


def interleaved_counts(total: int, n: int) -> list:
  """Records of each of ``n`` interleaved shards of a split of ``total``."""
  return [len(range(k, total, n)) for k in range(n)]


def parse_manifest(split: str, m, where: str) -> dict:
  """A split's manifest, its form checked (DataError naming what is wrong)."""
  def bad(what):
    return DataError(f"{where}: splits.{split} {what}; {REWRITE}")
  if not isinstance(m, dict) or not isinstance(m.get("shards"), list) or not m["shards"]:
    raise bad("lists no shards")
  if m.get("layout") != INTERLEAVED:
    raise bad(f"has layout {m.get('layout')!r}, not '{INTERLEAVED}'")
  for k, s in enumerate(m["shards"]):
    ok = (isinstance(s, dict) and s.get("file") == shard_name(split, k, len(m["shards"]))
          and all(isinstance(s.get(f), int) and s[f] >= 0 for f in ("records", "bytes"))
          and all(isinstance(s.get(f), str) and _HEX64.match(s[f]) for f in ("sha256", "labels_sha256")))
    if not ok:
      raise bad(f"has a malformed entry for shard {k} ({json.dumps(s)[:80]})")
  counts = [s["records"] for s in m["shards"]]
  if not isinstance(m.get("examples"), int) or counts != interleaved_counts(m["examples"], len(counts)):
    raise bad(f"says {m.get('examples')} examples in shards of {counts} records, which do not interleave")
  if not isinstance(m.get("written_as"), dict):
    raise bad("lacks the image format it was written in (written_as)")
  return m


def check_listed(directory: str, split: str, manifest: dict, found: list) -> list:
  """The paths of the shards ``manifest`` lists; DataError for a listed one missing or a ``found`` one
  (a shard of the split in the folder) not listed."""
  listed = [os.path.join(directory, s["file"]) for s in manifest["shards"]]
  missing = [p for p in listed if not os.path.isfile(p)]
  if missing:
    raise DataError(f"{missing[0]} is missing ({len(missing)} of the {len(listed)} shards {FEATURES_FILE} lists "
                    f"for split '{split}'); restore it or {REWRITE}")
  stale = sorted(set(found) - set(listed))
  if stale:
    raise DataError(f"{stale[0]} is not one of the {len(listed)} shards {FEATURES_FILE} lists for split "
                    f"'{split}' ({len(stale)} such file(s): stale, left from an earlier write?); delete "
                    f"{'it' if len(stale) == 1 else 'them'}, or {REWRITE}")
  return listed


def check_shard_set(paths: list, where: str) -> None:
  """The ``-of-N`` names of a split without a manifest: one complete set of N shards."""
  if len(paths) < 2 and not any(_SHARD.search(p) for p in paths):
    return
  named = [(_SHARD.search(os.path.basename(p)), p) for p in paths]
  odd = [p for m, p in named if not m]
  if odd:
    raise DataError(f"{odd[0]} is not named <split>.array_record-<i>-of-<n> like the other shards of {where}; "
                    "rename or delete it")
  totals = sorted({int(m.group(2)) for m, _ in named})
  if len(totals) > 1:
    raise DataError(f"{where} mixes shard sets ({', '.join(f'-of-{n:05d}' for n in totals)}: stale shards of an "
                    f"earlier write); delete the older set or {REWRITE}")
  have = {int(m.group(1)): p for m, p in named}
  base = _SHARD.sub("", named[0][1])
  missing = [i for i in range(totals[0]) if i not in have]
  if missing or len(have) != totals[0]:
    first = f"{base}-{missing[0]:05d}-of-{totals[0]:05d}" if missing else sorted(have.values())[-1]
    raise DataError(f"{first} is missing or out of range ({len(have)} of {totals[0]} shards in {where}); "
                    f"restore it or {REWRITE}")


def verify_files(paths: list, expected: list | None, listed_by: str) -> list:
  """``'<bytes>:<sha256>'`` of every byte of each of ``paths``, checked against ``expected`` (the manifest's
  entries) when given; DataError naming the first file that differs."""
  out = []
  for k, p in enumerate(paths):
    want = expected[k] if expected else {}
    if "bytes" in want and os.path.getsize(p) != want["bytes"]:
      raise DataError(f"{p} has {os.path.getsize(p)} bytes, {listed_by} says {want['bytes']} (truncated or "
                      f"replaced since it was written); restore it or {REWRITE}")
    size, digest = file_digest(p)
    if "sha256" in want and digest != want["sha256"]:
      raise DataError(f"{p} is not the shard that was written (SHA-256 {digest[:12]}, {listed_by} says "
                      f"{want['sha256'][:12]}: its records changed since); restore it or {REWRITE}")
    out.append(f"{size}:{digest}")
  return out


def check_counts(paths: list, counts: list, expected: list | None, listed_by: str) -> None:
  """Each shard holds the records ``expected`` says (a truncated shard reads as fewer, or none)."""
  for p, n, want in zip(paths, counts, expected or [{}] * len(paths)):
    if "records" in want and n != want["records"]:
      raise DataError(f"{p} holds {n} records, {listed_by} says {want['records']} (truncated or replaced); "
                      f"restore it or {REWRITE}")


def sidecar_length(side: str) -> int | None:
  """The length of a labels file without reading it, or None when it is no readable 1-D array."""
  try:
    a = np.load(side, mmap_mode="r", allow_pickle=False)
  except Exception:  # pylint: disable=broad-except  (garbage: np.load raises many kinds)
    return None
  return int(a.shape[0]) if a.ndim == 1 else None


def load_sidecar(side: str, digest: str, n: int) -> np.ndarray:
  """int32 ``[n]``: the labels file written with a shard, verified against its recorded ``digest``."""
  got = file_digest(side)[1]
  if got != digest:
    raise DataError(f"{side} is not the labels file written with its shard (SHA-256 {got[:12]}, "
                    f"{FEATURES_FILE} says {digest[:12]}: edited since?); delete it (the labels are then read "
                    f"from the records) or {REWRITE}")
  try:
    labels = np.load(side, allow_pickle=False)
  except Exception as e:  # pylint: disable=broad-except  (np.load raises many kinds for garbage)
    raise DataError(f"{side} is not a NumPy labels file ({type(e).__name__}); delete it or {REWRITE}") from None
  if labels.shape != (n,) or labels.dtype.kind not in "iu":
    raise DataError(f"{side} holds {labels.dtype} {list(labels.shape)}, not {n} integer labels; delete it or "
                    f"{REWRITE}")
  return labels.astype(np.int32)
