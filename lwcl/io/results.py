"""What identifies a run's results: the result-relevant config, its fingerprint, the data fingerprint, and
finished workdirs.

A workdir's ``results.json`` belongs to the experiment of a config when the two configs agree on every
result-relevant key (``OPERATIONAL_KEYS`` -- devices, progress bars, data paths, checkpoint cadence -- may
differ; a key the results lack, written before lwcl had it, must hold its default in the config, given the
options' defaults) and, when it records one, the data set it was made from has the fingerprint of the
data the config loads now (:func:`data_fingerprint`: data paths may change, the data may not). A finished
workdir is reported again instead of recomputed; a workdir holding another experiment's results, or a
``results.json`` that cannot be read, is refused, never overwritten.

A results file's ``provenance`` (the commit, package versions, CPU, flags that produced it:
:mod:`lwcl.platform.provenance`) is a label, not part of its identity: :func:`result_config`,
:func:`fingerprint` and :func:`finished_results` read only the config (and the data fingerprint), so a
finished workdir stays finished on another machine or commit, and results written before provenance was
recorded still load.
"""

from __future__ import annotations

import hashlib
import json
import os

from lwcl.core import keys
from lwcl.data import sources
from lwcl.errors import ConfigError
from lwcl.io.checkpoint import config_differences

RESULTS_FILE = "results.json"
# Config keys that do not change results (they may differ when a run is resumed).
OPERATIONAL_KEYS = ("checkpoint", "devices", "train.progress", "train.log_every_steps",
                    "train.eval_batch_size", "data.idx_dir", "data.data_dir", "data.download",
                    "data.source", "data.record_dir", "data.stream", "method.memory_grad_chunk",
                    "orders_as_replicas")
_DATA_FINGERPRINTS = {}  # data config and its IDX files' sizes and times -> fingerprint (one load a process)


def result_config(config_dict: dict) -> dict:
  """The result-relevant part of a config dict (``OPERATIONAL_KEYS`` removed), JSON-compatible."""
  d = json.loads(json.dumps(config_dict, sort_keys=True, default=str))
  for key in OPERATIONAL_KEYS:
    keys.pop_key(d, key)
  return d


def fingerprint(config_dict: dict) -> str:
  """SHA-256 (16 hex digits) of the result-relevant part of the config; a label in ``results.json``."""
  return hashlib.sha256(json.dumps(result_config(config_dict), sort_keys=True).encode()).hexdigest()[:16]


def data_fingerprint(data_config, dataset: sources.ImageDataset | None = None) -> str:
  """The :func:`~lwcl.data.sources.dataset_fingerprint` of the data set ``data_config`` loads.

  Args:
    data_config: ``config.data``.
    dataset: that data set when already loaded (an Experiment's); else it is loaded here.
  Returns:
    str: 64 hex digits. Remembered for the process, keyed by the data config and the sizes and
    modification times of the IDX folder's files, so the finished-results checks of a study's many
    folders load the data once.
  Raises:
    DataError: the data set cannot be loaded (:func:`lwcl.data.sources.load_dataset`).
  """
  directory = sources.idx_dir_for(data_config)
  files = sorted(os.scandir(directory), key=lambda e: e.name) if directory and os.path.isdir(directory) else []
  stamps = [(e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in files]
  key = json.dumps([data_config.to_dict(), directory, stamps], sort_keys=True, default=str)
  if dataset is not None or key not in _DATA_FINGERPRINTS:
    _DATA_FINGERPRINTS[key] = sources.dataset_fingerprint(
        dataset if dataset is not None else sources.load_dataset(data_config))
  return _DATA_FINGERPRINTS[key]


def common_data_fingerprint(per_run: list) -> dict:
  """``{'data_fingerprint': fp}`` for a study's summary when every run's results record the same ``fp``,
  else ``{}`` (results of an lwcl that did not record it)."""
  found = {res.get("data_fingerprint") for res in per_run}
  return {"data_fingerprint": found.pop()} if len(found) == 1 and None not in found else {}


def same_experiment(results: dict | None, config_dict: dict, defaults: dict | None = None) -> bool:
  """Whether finished ``results`` (a results.json dict) belong to the experiment of ``config_dict``:
  their configs agree on every result-relevant key (a key one of them lacks: its default, with ``defaults``;
  see ``checkpoint.config_differences``)."""
  if results is None or "config" not in results:
    return False
  return not config_differences(result_config(results["config"]), result_config(config_dict), defaults=defaults)


def differences_text(stored: dict, wanted: dict, defaults: dict | None = None, shown: int = 3) -> str:
  """``'config differs in num_seeds: 5 there, 10 here'``: the first ``shown`` result-relevant keys where the
  config dict of finished results (``stored``) and the one asked for (``wanted``) differ
  (:func:`lwcl.io.checkpoint.config_differences`), with both values (``default`` for a key one of them lacks),
  and how many more."""
  a, b = result_config(stored), result_config(wanted)
  diff = config_differences(a, b, defaults=defaults)

  def value(d, key):
    try:
      return repr(keys.get_key(d, key))
    except KeyError:
      return "default"
  parts = [f"{k}: {value(a, k)} there, {value(b, k)} here" for k in diff[:shown]]
  more = f" and {len(diff) - shown} more" if len(diff) > shown else ""
  return f"config differs in {'; '.join(parts) or 'unknown keys'}{more}"


def incomplete(results) -> str | None:
  """What a results dict lacks of a finished run's (``'config'``, ``'method'``, the accuracies of a
  single run, a task-order study or replicas), or None when complete."""
  if not isinstance(results, dict) or not isinstance(results.get("config"), dict) or not results["config"]:
    return "'config'"
  if "method" not in results:
    return "'method'"
  if not any(k in results for k in ("accuracy_matrix", "orders", "runs")):
    return "'accuracy_matrix'"
  return None


def read_results(path: str) -> dict | None:
  """The dict in a ``results.json``, or None when there is no such file.

  Raises:
    ConfigError: the file exists but cannot be read, is not valid JSON (e.g. truncated) or holds no JSON
      object; it is never taken for "no results" (that would let a new run replace it).
  """
  try:
    with open(path, "rb") as f:
      data = json.loads(f.read().decode("utf-8"))
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:  # unreadable, not UTF-8, or not JSON
    reason = (e.strerror or type(e).__name__) if isinstance(e, OSError) else f"not valid JSON: {e}"
    raise ConfigError(f"{path} is unreadable ({reason}); move it away (e.g. mv {path} {path}.bad) and "
                      "rerun, or use a new --workdir (nothing was overwritten)") from None
  if not isinstance(data, dict):
    raise ConfigError(f"{path} is not a results file (JSON {type(data).__name__}, not an object); move it "
                      f"away (e.g. mv {path} {path}.bad) and rerun, or use a new --workdir (nothing was "
                      "overwritten)")
  return data


def finished_results(config, workdir: str, defaults: dict | None = None) -> dict | None:
  """The results dict in ``workdir/results.json`` when it holds this config's finished experiment, None
  when the workdir has no results yet. ``defaults``: every option's default (:func:`same_experiment`;
  :func:`lwcl.config.options.defaults`), so that results written before a key existed count only when this
  config holds its default.

  Loads the data set (:func:`data_fingerprint`) when the results record the fingerprint of theirs.

  Raises:
    ConfigError: ``workdir`` holds results of a different experiment (another config, or made from other
      data), results missing what a finished run writes (:func:`incomplete`), or a ``results.json`` that
      cannot be read (:func:`read_results`); nothing is overwritten.
    DataError: the data set cannot be loaded to compare it with the results'.
  """
  existing = read_results(os.path.join(workdir, RESULTS_FILE))
  if existing is None:
    return None
  missing = incomplete(existing)
  if missing:
    raise ConfigError(f"{workdir}/{RESULTS_FILE} is incomplete (no {missing}); move it away to run the "
                      "experiment in this workdir, or choose a new --workdir (nothing was overwritten)")
  if not same_experiment(existing, config.to_dict(), defaults):
    raise ConfigError(f"{workdir} already holds results.json of a different experiment ("
                      f"{differences_text(existing['config'], config.to_dict(), defaults)}); choose a new "
                      "--workdir (nothing was overwritten)")
  stored = existing.get("data_fingerprint")
  if stored is not None and stored != data_fingerprint(config.data):
    raise ConfigError(f"{workdir} already holds results.json of a different experiment (made from other "
                      f"data: data fingerprint {str(stored)[:16]}, the data loaded now "
                      f"{data_fingerprint(config.data)[:16]}); point {sources.location_key(config.data)} (and "
                      "data.source) at the run's original data, or choose a new --workdir (nothing was "
                      "overwritten)")
  return existing
