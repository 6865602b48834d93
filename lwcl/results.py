"""What identifies a run's results: the result-relevant config, its fingerprint, and finished workdirs.

A workdir's ``results.json`` belongs to the experiment of a config when the two configs agree on every
result-relevant key both have (``OPERATIONAL_KEYS`` -- devices, progress bars, data paths, checkpoint
cadence -- may differ). A finished workdir is reported again instead of recomputed; a workdir holding
another experiment's results is refused, never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os

from lwcl import config_files
from lwcl.checkpoint import config_differences, read_json
from lwcl.errors import ConfigError

RESULTS_FILE = "results.json"
# Config keys that do not change results (they may differ when a run is resumed).
OPERATIONAL_KEYS = ("checkpoint", "devices", "train.progress", "train.log_every_steps",
                    "train.eval_batch_size", "data.idx_dir", "data.data_dir", "data.download",
                    "data.source", "method.memory_grad_chunk")


def result_config(config_dict: dict) -> dict:
  """The result-relevant part of a config dict (``OPERATIONAL_KEYS`` removed), JSON-compatible."""
  d = json.loads(json.dumps(config_dict, sort_keys=True, default=str))
  for key in OPERATIONAL_KEYS:
    config_files.pop_key(d, key)
  return d


def fingerprint(config_dict: dict) -> str:
  """SHA-256 (16 hex digits) of the result-relevant part of the config; a label in ``results.json``."""
  return hashlib.sha256(json.dumps(result_config(config_dict), sort_keys=True).encode()).hexdigest()[:16]


def same_experiment(results: dict | None, config_dict: dict) -> bool:
  """Whether finished ``results`` (a results.json dict) belong to the experiment of ``config_dict``:
  their configs agree on every result-relevant key both have (see ``checkpoint.config_differences``)."""
  if results is None or "config" not in results:
    return False
  return not config_differences(result_config(results["config"]), result_config(config_dict))


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


def finished_results(config, workdir: str) -> dict | None:
  """The results dict in ``workdir/results.json`` when it holds this config's finished experiment, None
  when the workdir has no results yet.

  Raises:
    ConfigError: ``workdir`` holds results of a different experiment, or results missing what a finished
      run writes (:func:`incomplete`); nothing is overwritten.
  """
  existing = read_json(os.path.join(workdir, RESULTS_FILE))
  if existing is None:
    return None
  missing = incomplete(existing)
  if missing:
    raise ConfigError(f"{workdir}/{RESULTS_FILE} is incomplete (no {missing}); move it away to run the "
                      "experiment in this workdir, or choose a new --workdir (nothing was overwritten)")
  if same_experiment(existing, config.to_dict()):
    return existing
  raise ConfigError(f"{workdir} already holds results.json of a different experiment; choose a new "
                    "--workdir (nothing was overwritten)")
