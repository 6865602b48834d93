"""lwcl.data.shards: a record folder is read only as it was written (issue 32). Every byte of the shards and
labels files, the shard set, each shard's record count and features.json are checked against what the
writer recorded, and each tampering is refused with one line naming the file; the writer is deterministic;
a split reads back in the order written, whatever its shard count. Tiny folders (4 x 4 images)."""

import hashlib
import inspect
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lwcl.data import records, shards, sources, stream_loader
from lwcl.data.examples import Examples
from lwcl.data.lazy import LazyImages
from lwcl.errors import DataError

from helpers import ROOT
from streaming_cases import data_config

SPEC = records.FeatureSpec((4, 4, 1), "raw", 5)
N_TRAIN, N_TEST = 40, 10


def arrays(n, seed):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8), (np.arange(n) % 5).astype(np.int32)


def write_tiny(directory, shards_train=2):
  """Train: 40 examples in ``shards_train`` shards, written in chunks of 1-3 (the order a chunked writer
  once scrambled across shards); test: 10 in one shard."""
  x, y = arrays(N_TRAIN, 0)
  bounds = [0, 1, 3, 6, 7, 10, 13, 20, 21, 33, 40]
  records.write_split(directory, "train", [(x[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])], SPEC,
                      shards_train)
  records.write_split(directory, "test", [arrays(N_TEST, 1)], SPEC, 1)
  records.write_features(directory, SPEC)
  return directory


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return write_tiny(str(tmp_path_factory.mktemp("tiny") / "rec"))


@pytest.fixture
def copy(tiny, tmp_path):
  return shutil.copytree(tiny, str(tmp_path / "rec"))


def load(directory):
  return sources.load_dataset(data_config(record_dir=directory))


def shard(directory, i=0, n=2, split="train"):
  return os.path.join(directory, shards.shard_name(split, i, n))


def rewrite_shard(path, order):
  """Writes ``path``'s records again in ``order`` (the same records moved: same size)."""
  from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter
  reader = ArrayRecordReader(path, "readahead_buffer_size:0")
  recs = reader.read(list(range(reader.num_records())))
  reader.close()
  writer = ArrayRecordWriter(path, records.WRITER_OPTIONS)
  for i in order(len(recs)):
    writer.write(recs[i])
  writer.close()


def edit_features(directory, edit, digest="keep"):
  """Edits features.json in place: its digest kept (a hand edit), dropped (as an older lwcl wrote it), or
  recomputed (as if lwcl had written the edited file)."""
  path = os.path.join(directory, records.FEATURES_FILE)
  with open(path) as f:
    d = json.load(f)
  edit(d)
  d.pop("sha256", None) if digest == "drop" else None
  if digest == "recompute":
    d["sha256"] = shards.self_digest(d)
  with open(path, "w") as f:
    json.dump(d, f)


def moved(d):
  rewrite_shard(shard(d), lambda n: list(range(n))[::-1])


def truncated(d):
  with open(shard(d), "r+b") as f:
    f.truncate(os.path.getsize(shard(d)) // 2)


def stale(d):
  x, y = arrays(N_TRAIN, 0)
  records.write_split(d, "train", [(x, y)], SPEC, 1)  # the 2-shard set of the first write stays beside it


def sidecar_edited(d):
  side = shard(d, 1) + records.LABELS_SUFFIX
  labels = np.load(side)
  labels[3] = (labels[3] + 1) % 5
  np.save(side, labels)


def sidecar_garbage(d):
  with open(shard(d, 1) + records.LABELS_SUFFIX, "wb") as f:
    f.write(b"\x93NUMPY garbage")


def flipped(d):  # 16 bytes inside the records (a tiny shard's records fill its first 2 KB)
  with open(shard(d), "r+b") as f:
    f.seek(1024)
    data = f.read(16)
    f.seek(1024)
    f.write(bytes(b ^ 0xFF for b in data))


def spec_of_another_shape(d):  # the same bytes per image, scrambled: [2, 8, 1]
  records.write_features(d, records.FeatureSpec((2, 8, 1), "raw", 5))


# id: (tampering, fragments of the one-line error)
TAMPERED = {
    "records moved, same size": (moved, ["train.array_record-00000-of-00002 is not the shard that was written"]),
    "shard truncated to half": (truncated, ["train.array_record-00000-of-00002 has", "truncated"]),
    "one of two shards deleted": (lambda d: os.remove(shard(d, 1)),
                                  ["train.array_record-00001-of-00002 is missing", "1 of the 2 shards"]),
    "stale shards of an earlier write": (stale, ["train.array_record-00000-of-00002 is not one of the 1 shards",
                                                 "stale", "delete them"]),
    "labels file edited": (sidecar_edited, ["00001-of-00002.labels.npy is not the labels file written",
                                            "delete it"]),
    "labels file garbage": (sidecar_garbage, ["00001-of-00002.labels.npy is not the labels file written"]),
    "bytes flipped in a shard": (flipped, ["train.array_record-00000-of-00002 is not the shard that was written"]),
    "features.json: shape edited": (lambda d: edit_features(d, lambda j: j["image"].update(shape=[2, 8, 1])),
                                    ["features.json was changed after it was written", "restore it"]),
    "features.json: classes edited": (lambda d: edit_features(d, lambda j: j["label"].update(num_classes=7)),
                                      ["features.json was changed after it was written"]),
    "features.json: a shard digest edited": (
        lambda d: edit_features(d, lambda j: j["splits"]["train"]["shards"][0].update(sha256="0" * 64)),
        ["features.json was changed after it was written"]),
    "features.json: digest removed": (lambda d: edit_features(d, lambda j: None, digest="drop"),
                                      ["features.json was changed after it was written"]),
    "spec written with another shape": (spec_of_another_shape, ["declares shape [2, 8, 1]",
                                                                "written with [4, 4, 1]"]),
    "split missing from the manifest": (
        lambda d: edit_features(d, lambda j: j["splits"].pop("test"), digest="recompute"),
        ["features.json lists no shards of split 'test' (it lists train)"]),
    "shard counts that do not interleave": (
        lambda d: edit_features(d, lambda j: j["splits"]["train"].update(examples=41), digest="recompute"),
        ["splits.train says 41 examples in shards of [20, 20] records, which do not interleave"]),
}


@pytest.mark.parametrize("name", list(TAMPERED))
def test_a_tampered_folder_is_refused_with_one_line_naming_the_file(copy, name):
  tamper, fragments = TAMPERED[name]
  size = os.path.getsize(shard(copy))
  tamper(copy)
  if name == "records moved, same size":  # what a size-and-ends fingerprint let through
    assert os.path.getsize(shard(copy)) == size
  with pytest.raises(DataError) as e:
    load(copy)
  msg = str(e.value)
  assert "\n" not in msg and "; " in msg, msg
  for fragment in fragments:
    assert fragment in msg, msg


def test_an_intact_folder_reads_back_in_the_written_order_whatever_its_shard_count(tiny, tmp_path):
  x, y = arrays(N_TRAIN, 0)
  for n in (1, 3, 7):
    d = write_tiny(str(tmp_path / f"s{n}"), shards_train=n)
    ds = load(d)
    np.testing.assert_array_equal(ds.train_labels, y)
    np.testing.assert_array_equal(ds.train_images[np.arange(N_TRAIN)], x)
    np.testing.assert_array_equal(ds.train_images[[39, 0, 17, 17]], x[[39, 0, 17, 17]])
  ds = load(tiny)
  np.testing.assert_array_equal(ds.train_images[:], x)
  os.remove(shard(tiny, 1) + records.LABELS_SUFFIX)  # without its labels file: parsed from the records
  try:
    np.testing.assert_array_equal(load(tiny).train_labels, y)
  finally:
    sidecar = np.asarray(y[1::2], np.int32)
    np.save(shard(tiny, 1) + records.LABELS_SUFFIX, sidecar)


def test_the_fingerprint_covers_every_byte_and_ignores_where_the_folder_is(tiny, tmp_path):
  ds = load(tiny)
  reader = ds.train_images.segments[0].reader
  with open(shard(tiny), "rb") as f:
    whole = f.read()
  assert f"20:{len(whole)}:{hashlib.sha256(whole).hexdigest()}" in reader.fingerprint_parts()
  elsewhere = shutil.copytree(tiny, str(tmp_path / "elsewhere"))
  assert sources.dataset_fingerprint(load(elsewhere)) == sources.dataset_fingerprint(ds)


def test_a_folder_without_a_manifest_is_hashed_whole_and_its_shard_set_checked(copy):
  edit_features(copy, lambda j: j.pop("splits"), digest="drop")  # as an older lwcl wrote it
  ds = load(copy)
  before = sources.dataset_fingerprint(ds)
  np.testing.assert_array_equal(ds.train_labels, np.concatenate([arrays(N_TRAIN, 0)[1][k::2] for k in (0, 1)]))
  size = os.path.getsize(shard(copy))
  moved(copy)  # the case: records moved within a shard of the same size
  assert os.path.getsize(shard(copy)) == size
  assert sources.dataset_fingerprint(load(copy)) != before
  truncated(copy)  # its labels file says how many records it held
  with pytest.raises(DataError, match="holds 0 records, its labels file 20"):
    load(copy)
  os.remove(shard(copy))
  with pytest.raises(DataError, match="00000-of-00002 is missing or out of range"):
    load(copy)
  stale(copy)
  edit_features(copy, lambda j: j.pop("splits"), digest="drop")
  with pytest.raises(DataError, match=r"mixes shard sets \(-of-00001, -of-00002: stale"):
    load(copy)


def test_the_writer_gives_the_same_bytes_in_every_process(tiny, tmp_path):
  # protobuf's map order follows the process's string hashes: seeds 1 and 4 ordered image and label apart.
  code = "\n".join(["import sys", "import numpy as np", "from lwcl.data import records",
                    f"SPEC = records.{SPEC!r}", f"N_TRAIN, N_TEST = {N_TRAIN}, {N_TEST}",
                    inspect.getsource(arrays), inspect.getsource(write_tiny), "write_tiny(sys.argv[1])"])
  procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"seed{s}")], cwd=ROOT,
                            env=dict(os.environ, PYTHONHASHSEED=str(s), PYTHONPATH=ROOT)) for s in (1, 4)]
  assert [p.wait(timeout=300) for p in procs] == [0, 0]
  names = sorted(os.listdir(tiny))
  for s in (1, 4):
    assert sorted(os.listdir(tmp_path / f"seed{s}")) == names
    for name in names:
      with open(os.path.join(tiny, name), "rb") as a, open(tmp_path / f"seed{s}" / name, "rb") as b:
        assert a.read() == b.read(), name


def test_bad_features_json_and_records_end_in_one_line(copy):
  base = SPEC.to_json()
  for spec, match in (
      ([], "holds a JSON list, not an object"),
      ({"image": [], "label": {}}, "lacks or mistypes"),
      ({**base, "image": {"shape": [4, 4, 1.5]}}, "1.5 is not an integer"),
      ({**base, "label": {"num_classes": 5, "names": ["a"]}}, "not a list of 5 names"),
      ({**base, "label": {"num_classes": 5, "names": 5}}, "not a list of 5 names"),
      ({**base, "label": {"num_classes": 10 ** 9}}, r"is not in \[1, 1048576\]"),
      ({**base, "stats": {"mean": [0.5]}}, "stats"),
      ({**base, "stats": "x"}, "stats"),
      ({**base, "image_key": None}, "are not feature names"),
      ({**base, "splits": {"train": {"shards": "x"}}}, "splits.train lists no shards"),
      ({**base, "splits": []}, "splits is not an object")):
    with pytest.raises(DataError, match=match) as e:
      records.FeatureSpec.from_json(spec, "f.json")
    assert "\n" not in str(e.value)
  # Records that do not fit the spec of a folder without a manifest (nothing recorded to check them by).
  for spec, match in ((records.FeatureSpec((4, 4, 1), "png", 5), "is no readable PNG image"),
                      (records.FeatureSpec((4, 4, 1), "raw", 5, image_key="label", label_key="image"),
                       "not one each")):
    edit_features(copy, lambda j, spec=spec: (j.clear(), j.update(spec.to_json())), digest="drop")
    with pytest.raises(DataError, match=match):
      load(copy)
  buf = io.BytesIO()
  Image.fromarray(np.full((4, 4), 300, np.uint16)).save(buf, format="PNG")
  with pytest.raises(DataError, match=r"is a I;16.*-mode image .*not 8-bit"):
    records.decode_image(buf.getvalue(), records.FeatureSpec((4, 4, 1), "png", 5), "x")


def test_a_shard_corrupted_mid_run_ends_in_one_line_from_the_read_threads(copy):
  ds = load(copy)
  flipped(copy)  # after the folder was opened and verified
  data = Examples.of_task(ds.train_images, ds.train_labels, 0)
  assert isinstance(data.images, LazyImages)
  with pytest.raises(DataError, match="cannot read records of .*00000-of-00002 .*chunk data hash mismatch") as e:
    for _ in stream_loader.train_batches(data, 4, 0, 0, 0):
      pass
  assert "\n" not in str(e.value)


def test_writes_that_fail_end_in_one_line(tmp_path):
  # Issue 32: bin/bench stream write --encoding=bogus wrote a folder no reader accepts (exit 0); --out a file
  # and a shard count past the open-file limit ended in tracebacks.
  with pytest.raises(DataError, match="image encoding 'bogus' is not one of"):
    records.write_split(str(tmp_path / "a"), "train", [arrays(4, 0)], records.FeatureSpec((4, 4, 1), "bogus", 5))
  assert not os.path.exists(tmp_path / "a")
  (tmp_path / "file").write_text("kept\n")
  with pytest.raises(DataError, match="file is a file, not a folder; pass a folder"):
    records.write_split(str(tmp_path / "file"), "train", [arrays(4, 0)], SPEC)
  assert (tmp_path / "file").read_text() == "kept\n"
  import resource
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
  try:
    with pytest.raises(DataError, match=r"cannot write the records in .*b \(RuntimeError: open\(\) failed: Too many "
                                        "open files.*use fewer shards") as e:
      records.write_split(str(tmp_path / "b"), "train", [arrays(N_TRAIN, 0)], SPEC, 40)
  finally:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
  assert "\n" not in str(e.value)


def test_a_full_disk_while_writing_is_one_line_and_the_split_is_refused_when_read(tmp_path):
  disk = tmp_path / "disk"
  disk.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True).returncode:
    pytest.skip("cannot mount a tmpfs here (needs root)")
  try:
    d = str(disk / "rec")
    records.write_split(d, "test", [arrays(N_TEST, 1)], SPEC)
    x = np.random.default_rng(0).integers(0, 256, (400, 32, 32, 1), dtype=np.uint8)  # 400 KB, incompressible
    with pytest.raises(DataError, match=r"cannot write the records in .*rec \(RuntimeError: .*No space left"):
      records.write_split(d, "train", [(x, np.arange(400) % 5)], records.FeatureSpec((32, 32, 1), "raw", 5))
    with pytest.raises(DataError, match="lists no shards of split 'train'"):  # the test split's manifest only
      load(d)
  finally:
    subprocess.run(["umount", str(disk)], capture_output=True)
