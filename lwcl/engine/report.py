"""A finished stream's results: the ``results.json`` schema of one run (:func:`results`) and the files the
report writes for every replica (:func:`report`).

A single run writes into its workdir; replica ``r`` of a ``num_seeds`` run writes into ``workdir/seed<s>``
(:func:`lwcl.runs.summaries.seed_dir`), in a single run's schema with the config of the single run of its
seed, so ``--config.seed=s`` on that folder finds it finished. The summary over seeds is
:func:`lwcl.runs.summaries.write_summary`'s.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from lwcl.core import metrics as metrics_lib
from lwcl.core.record import Progress, Record
from lwcl.engine.run_io import Run
from lwcl.io import report as report_lib
from lwcl.io import safe_files
from lwcl.io.results import RESULTS_FILE, fingerprint
from lwcl.platform import provenance
from lwcl.platform.devices import to_host

SCALARS = ("acc", "bwt", "fwt", "forgetting")


def run_provenance(setup) -> dict:
  """This process's provenance block for ``setup``'s run (:func:`lwcl.platform.provenance.collect`: the
  commit, packages, CPU and flags, with the run's convolution lowering and devices)."""
  conv_impl = getattr(getattr(setup.fns, "model", None), "conv_impl", None)
  return provenance.collect(conv_impl, provenance.device_info(setup.parallel.size))


def add_segment(progress: Progress, block: dict, resumed: bool) -> None:
  """Records in ``progress.segments`` that the run goes on from where it stands with provenance ``block``.

  A new entry ``{'task', 'task_step', 'provenance'}`` is appended when there is none yet or when ``block``
  differs from the last entry's (:func:`lwcl.platform.provenance.differences`: any key, the commit
  included); a resumed run whose checkpoint recorded no segments (an older lwcl) first gets
  ``{'task': 0, 'task_step': 0, 'provenance': None}`` for the part computed before.
  """
  if resumed and not progress.segments:
    progress.segments.append({"task": 0, "task_step": 0, "provenance": None})
  last = progress.segments[-1]["provenance"] if progress.segments else None
  if last is None or provenance.differences([("last", last), ("now", block)]):
    progress.segments.append({"task": progress.task, "task_step": progress.task_step, "provenance": block})


def results(setup, r: int, record: Record, progress: Progress, config_dict: dict) -> dict:
  """The results dict of replica ``r``'s finished stream (the schema of ``results.json`` in the README).

  Args:
    setup: the run's :class:`~lwcl.engine.build.Setup`; r: the replica (0 for a single run); record: the
    replica's record (no replica axis); progress: the run's progress; config_dict: the replica's single-run
    config (``config.to_dict()``).
  """
  config, scenario, readouts = setup.config, setup.stream(r).scenario, setup.parts(r)[2]
  block = run_provenance(setup)
  R, b = record.R.astype(np.float64), record.b.astype(np.float64)
  out = {"kind": "single", "accuracy_matrix": R.tolist(), "initial_accuracy": b.tolist(),
         "eval_split": config.eval.split}
  out.update(metrics_lib.summarize(R, b))
  if record.task_il_R is not None:  # class-incremental: the task identity given at test time (Task-IL)
    task_il = record.task_il_R.astype(np.float64)
    out["task_il_accuracy_matrix"] = task_il.tolist()
    out.update(metrics_lib.summarize_task_il(task_il))
  out.update(readouts.results(record.readouts))
  out.update(setup.method.report_results(record.method_report) if record.method_report else {})
  if config.eval.lca_batches:
    out["lca_curves"] = record.lca.tolist()
    out["lca"] = metrics_lib.lca(record.lca, config.eval.lca_batches)
  if config.eval.every_epoch:
    out["epoch_accuracy"] = record.epoch_acc.tolist()
  out.update({
      "method": config.method.name,
      "dataset": scenario.dataset,
      "data_source": setup.dataset.source,
      "scenario": {"kind": scenario.kind, "incremental": scenario.incremental, "num_tasks": scenario.num_tasks,
                   "output_dim": scenario.output_dim, "num_heads": scenario.num_heads},
      "tasks": [t.describe() for t in scenario.tasks],
      "final_train_loss": record.final_loss.tolist(),
      "train_seconds": float(progress.train_seconds),
      "train_examples": int(progress.train_examples),
      "examples_per_second": float(progress.train_examples / max(progress.train_seconds, 1e-9)),
      "devices": {"count": setup.parallel.size, "platform": jax.devices()[0].platform,
                  "processes": jax.process_count()},
      # how the model's convolutions were computed (model.conv_impl resolved: lwcl/models/conv.py)
      "conv_impl": block["conv_impl"],
      "config": config_dict,
      "fingerprint": fingerprint(config_dict),
      "data_fingerprint": setup.data_fingerprint,
      # what produced these numbers (commit, packages, CPU, flags): a label, not part of the identity
      "provenance": block,
  })
  if len(progress.segments) > 1:  # resumed in another environment: each part's provenance, and where they differ
    out["provenance_segments"] = progress.segments
    block["resumed_across"] = sorted(provenance.differences(
        [(i, s["provenance"]) for i, s in enumerate(progress.segments)])) or ["unknown"]
  return out


def report(setup, run: Run, done: list) -> list:
  """Every replica's results dict; on the main process writes, for each replica whose folder does not hold
  its finished results yet (``done[r]`` None), ``results.json``, the heatmap, the read-outs' plots and the
  summary scalars (TensorBoard). Replicas in ``done`` are reported as found."""
  replicas, sc, out = setup.replicas, setup.scenario, []
  step = int(np.max(to_host(run.gather(run.state.step))))  # every process: a gather is collective
  title = f"{setup.config.method.name} on {sc.dataset} ({sc.kind}, {sc.incremental}-incremental)"
  for r in range(replicas.size):
    if done[r] is not None:
      out.append(done[r])
      continue
    config_dict = setup.configs[r].to_dict() if replicas.batched else run.config_dict
    res = results(setup, r, replicas.get(run.record, r), run.progress, config_dict)
    if replicas.batched:
      res["replica"] = {"index": r, "of": replicas.describe(), "num_replicas": replicas.size, "workdir": run.workdir,
                        "note": "trained as one replica of a vmapped program; train_seconds is the program's"}
    out.append(res)
    if not run.is_main:
      continue
    finite = {k: res[k] for k in SCALARS + metrics_lib.TASK_IL_SCALARS
              if res.get(k) is not None and np.isfinite(res[k])}
    run.writer.write_scalars(step, {replicas.scalar_name(k, r): v for k, v in finite.items()})
    folder = replicas.folder(run.workdir, r)
    if folder != run.workdir:
      safe_files.make_folder(folder)  # a seed's, order's or candidate's folder: never through a link
    report_lib.write_json_atomic(os.path.join(folder, RESULTS_FILE), res)
    report_lib.plot_accuracy_matrix(replicas.get(run.record, r).R, os.path.join(folder, report_lib.HEATMAP_FILE),
                                    title + (f", {replicas.label(r)}" if replicas.batched else ""))
    setup.parts(r)[2].write(res, folder)
  return out
