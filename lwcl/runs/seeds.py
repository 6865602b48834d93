"""Many seeds in one program: ``--config.num_seeds=R`` trains seeds ``seed .. seed+R-1`` as R replicas.

The replicas share everything but their seed: the data set, the scenario (permutations and splits come
from ``scenario.seed``), the model functions, the method and the optimizer. Their states are stacked into
one :class:`~lwcl.core.state.TrainState` with a leading replica axis ``R``, and the train step, the compiled
multi-step loop (``train.steps_per_dispatch``), the evaluation step and the method's end-of-task hook run
under ``jax.vmap``: one compiled program trains all replicas, each step on ``R`` minibatches (replica ``r``
draws its own minibatch order from seed ``seed + r``, as a single run of that seed does). Replica ``r``
equals the single run of seed ``seed + r`` up to float rounding (``tests/runs/test_seeds.py``,
``tests/methods/test_contract.py``).

Outputs, in ``workdir``: ``seed<s>/results.json`` for every seed ``s`` (the schema of a single run's
results, its config with ``seed = s`` and ``num_seeds = 0``, so ``--config.seed=s`` on that folder finds
it finished) with its heatmap, and ``results.json`` with every seed's metrics and their mean and
standard deviation (ACC, BWT, FWT, forgetting; :func:`lwcl.core.metrics.order_statistics`), the spread of each
task's final accuracy and the mean accuracy matrix. The run checkpoints the stacked state into
``workdir/checkpoints/`` (resumed like a single run); seeds whose folders already hold their finished
results are not overwritten, and a folder holding another experiment's results is refused before anything
is trained.

The replica axis itself is :class:`lwcl.runs.axis.ReplicaAxis`; the loop is the single run's
(:mod:`lwcl.engine.loop`). With ``num_orders`` or ``sweep.key``, the seeds are the inner dimension of a product
(:mod:`lwcl.runs.orders`, :mod:`lwcl.runs.sweep`; :func:`run_one_after_another` when the outer runs cannot share one
program). On several devices or processes the replicas are split over the mesh's ``replica`` axis
(:func:`lwcl.platform.devices.mesh_shape`).
"""

from __future__ import annotations

from typing import Callable

from lwcl.config import values as config_values
from lwcl.engine.experiment import Experiment
from lwcl.engine.replicas import replica, stack  # noqa: F401  (re-exported)
from lwcl.errors import ConfigError
from lwcl.runs.axis import ReplicaAxis, finished_replicas  # noqa: F401  (re-exported)
from lwcl.runs.summaries import seeds_of, write_summary


def run_replicas(config, workdir: str, on_step: Callable[[int], None] | None = None) -> dict:
  """``--config.num_seeds=R``: trains the seeds ``seed .. seed+R-1`` as R replicas of one vmapped program
  and returns the summary results (:func:`lwcl.runs.summaries.summarize`, also in
  ``workdir/results.json``). Seeds whose folders hold their finished results are reported, not
  overwritten; nothing is trained when every seed's folder does.

  Raises:
    ConfigError: a bad value or unsupported combination (:func:`lwcl.config.values.check_values`),
      ``num_seeds < 1``, a device split that does not fit (:func:`lwcl.platform.devices.mesh_shape`),
      or a ``seed<s>`` folder holding another experiment's results (nothing is trained).
    CheckpointError, DivergenceError, Interrupted: as a single run (the message names the seed).
  """
  config_values.check_values(config)
  if config.num_seeds < 1:
    raise ConfigError(f"run_replicas needs num_seeds >= 1, got {config.num_seeds}; set --config.num_seeds")
  axis = ReplicaAxis.of_seeds(seeds_of(config))
  per_seed = finished_replicas(config, axis, workdir)
  if any(d is None for d in per_seed):
    per_seed = Experiment(config, axis).run_replicas(workdir, on_step, done=per_seed)
  return write_summary(config, workdir, per_seed)


def run_one_after_another(runs: list, seeds: list, done: list, on_step=None) -> list:
  """Task orders or sweep candidates that cannot share one program, one after another, each over
  ``seeds`` as replicas of one program (its ``num_seeds`` run), or as one single run when ``seeds`` is
  empty.

  Args:
    runs: ``(label, config, folder)`` of each (``config``: its config with ``num_seeds`` as given; the
      label is printed before it trains).
    seeds: every run's seeds (``seeds_of`` its config), or empty.
    done: per replica, outer-major (run ``i``'s seeds at ``i * S .. (i + 1) * S - 1``), its finished
      results or None; a run whose replicas are all finished is not trained.
    on_step: passed to every run.
  Returns:
    Every replica's results dict, outer-major.
  """
  S, out = max(len(seeds), 1), []
  for i, (label, config, folder) in enumerate(runs):
    mine = done[i * S:(i + 1) * S]
    if any(d is None for d in mine):
      print(f"lwcl: {label}", flush=True)
      exp = Experiment(config, ReplicaAxis.of_seeds(seeds) if seeds else None)
      mine = exp.run_replicas(folder, on_step, done=mine if seeds else None)
    out.extend(mine)
  return out
