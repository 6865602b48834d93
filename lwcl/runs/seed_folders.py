"""A config's seeds in one folder, as ``bin/compare --seeds=N`` runs them: ``OUT/<name>/seed<s>/`` holds each
seed's finished results and ``OUT/<name>/results.json`` their summary (:mod:`lwcl.runs.seeds`,
:mod:`lwcl.runs.summaries`). Finished seeds are read, missing ones trained as replicas of one program; more
seeds than a finished run has (our rule: 3 seeds at least, 10 where seeds spread by more than 3 points of
ACC) train alone, in a program of their own (:func:`more_seeds`), and join the summary.
"""

from __future__ import annotations

import os
import shutil

from lwcl.config import options as config_options
from lwcl.errors import LwclError
from lwcl.io import safe_files
from lwcl.io.checkpoint import config_differences
from lwcl.io.results import RESULTS_FILE, finished_results, read_results, result_config
from lwcl.runs import driver
from lwcl.runs import summaries as replica_results
from lwcl.runs.axis import ReplicaAxis, finished_replicas


def with_seeds(config, num_seeds: int, seed: int | None = None):
  """A locked copy of ``config`` with ``num_seeds`` set (and its first ``seed``, when given)."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.num_seeds = num_seeds
    if seed is not None:
      c.seed = seed
  c.lock()
  return c


def run(config, workdir: str, num_seeds: int) -> list:
  """The results dicts of seeds ``config.seed .. config.seed + num_seeds - 1`` of ``config``: finished ones
  read from ``workdir/seed<s>/``, the others run as replicas of one program (``num_seeds``, writing
  ``workdir/results.json`` with the summary as ``bin/run --config.num_seeds`` does).

  More seeds for a folder with some finished (``--seeds=10`` after ``--seeds=5``; our rule asks for 10
  seeds where 5 spread by more than 3 points), or seeds copied into a folder without checkpoints: only the
  missing seeds train (:func:`more_seeds`; consecutive ones, else every seed), and the summary of every seed
  replaces ``workdir/results.json``, the earlier summary kept as ``results.seeds<first>-<last>.json``. A run
  of every seed that stopped before writing all its seeds' folders resumes instead. Fewer seeds than the
  folder's summary holds (``--seeds=5`` after ``--seeds=10``) are reported from their folders, the summary
  left as it is.

  Raises:
    ConfigError: a seed folder or the summary holds another experiment's results (nothing is overwritten).
    LwclError: added seeds trained but missing from their folders afterwards (a rerun copies them again);
      a symbolic link below ``workdir`` (:func:`lwcl.io.safe_files.check_tree`: nothing is written).
  """
  safe_files.check_tree(workdir)  # it moves and writes files there outside a run's own checks
  c = with_seeds(config, num_seeds)
  seeds = replica_results.seeds_of(c)
  read = lambda: finished_replicas(c, ReplicaAxis.of_seeds(seeds), workdir)  # noqa: E731
  per_seed = read()
  missing = [s for s, r in zip(seeds, per_seed) if r is None]
  summary_path = os.path.join(workdir, RESULTS_FILE)
  summary = read_results(summary_path)
  other_count = summary is not None and _other_seed_count(summary, c)
  if missing:
    # Added seeds train alone after a finished run of fewer seeds (its summary) or next to seeds copied in
    # (no checkpoints: no run of these seeds to resume); otherwise the run of every seed starts or resumes.
    added = other_count or (summary is None and not os.path.exists(os.path.join(workdir, "checkpoints")))
    if not added or len(missing) == len(seeds) or missing != list(range(missing[0], missing[-1] + 1)):
      driver.run(c, workdir)
      return read()
    more_seeds(config, workdir, missing)
    per_seed = read()
    lost = [s for s, r in zip(seeds, per_seed) if r is None]
    if lost:  # not expected: their folders were just written
      raise LwclError(f"{workdir}: seeds {lost} were trained in {workdir}/seeds{missing[0]}-{missing[-1]} but "
                      "their results did not reach their seed folders; rerun the same command (it copies them "
                      "again)")
  if other_count:
    if summary["num_seeds"] > num_seeds:
      return per_seed
    earlier = summary["seeds"]
    os.replace(summary_path, _unused(os.path.join(workdir, f"results.seeds{earlier[0]}-{earlier[-1]}"), ".json"))
  if finished_results(c, workdir, config_options.defaults()) is None:  # raises for another experiment's
    replica_results.write_summary(c, workdir, per_seed)
  return per_seed


def more_seeds(config, workdir: str, seeds: list) -> None:
  """Trains ``seeds`` (consecutive, ``[a, ..., b]``) of ``config`` as replicas of their own program in
  ``workdir/seeds<a>-<b>/`` (its checkpoints and summary; resumed or reported like any replica run), then
  copies each seed's folder into ``workdir/seed<s>/``, its ``results.json`` last and atomically (an
  interrupted copy is done again by the next call). Replica ``r`` of a program equals the single run of its
  seed (:mod:`lwcl.runs.seeds`; checked here by tests/runs/test_seed_folders.py), so these seeds are those a program of
  every seed would give.

  Raises:
    ConfigError: ``workdir/seeds<a>-<b>`` holds another experiment's results (nothing is overwritten).
  """
  part = with_seeds(config, len(seeds), seed=seeds[0])
  folder = os.path.join(workdir, f"seeds{seeds[0]}-{seeds[-1]}")
  print(f"lwcl: seeds {seeds[0]}-{seeds[-1]} of {workdir} as replicas of their own program in {folder}", flush=True)
  driver.run(part, folder)
  for s in seeds:
    src, dst = replica_results.seed_dir(folder, s), replica_results.seed_dir(workdir, s)
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
      if name != RESULTS_FILE and os.path.isfile(os.path.join(src, name)):
        shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
    shutil.copy2(os.path.join(src, RESULTS_FILE), os.path.join(dst, RESULTS_FILE + ".copying"))
    os.replace(os.path.join(dst, RESULTS_FILE + ".copying"), os.path.join(dst, RESULTS_FILE))


def other_seed_count(config, workdir: str) -> int | None:
  """The number of seeds summarized in ``workdir/results.json`` when it holds ``config``'s experiment over
  another number of seeds (the configs differ in ``num_seeds`` alone), else None: ``bin/run
  --config.num_seeds=10`` on a workdir of 5 seeds then adds seeds 5-9 with :func:`run`, as ``bin/compare
  --seeds=10`` does.

  Raises:
    ConfigError: ``workdir/results.json`` exists but is not readable JSON (:func:`lwcl.io.results.read_results`).
  """
  summary = read_results(os.path.join(workdir, RESULTS_FILE))
  return summary["num_seeds"] if summary is not None and _other_seed_count(summary, config) else None


def _other_seed_count(summary: dict, config) -> bool:
  """Whether ``summary`` (a results.json dict) summarizes seeds of ``config``'s experiment with another
  ``num_seeds`` (its config differs in that key alone)."""
  if summary.get("kind") != "seeds" or not isinstance(summary.get("config"), dict) or not summary.get("seeds"):
    return False
  return config_differences(result_config(summary["config"]), result_config(config.to_dict()),
                            defaults=config_options.defaults()) == ["num_seeds"]


def _unused(stem: str, suffix: str) -> str:
  """``stem + suffix``, or ``stem.2 + suffix``, ``stem.3 + suffix``... the first that does not exist."""
  path, n = stem + suffix, 1
  while os.path.exists(path):
    n += 1
    path = f"{stem}.{n}{suffix}"
  return path
