"""Runs a continual-learning experiment: a stream of tasks, trained in turn and evaluated on every task.

``run(config, workdir)`` builds data, scenario, model and method from the config; trains task by task with
the jitted train step; after each task evaluates on every task's test set (future tasks included) to fill
the accuracy matrix; checkpoints the whole run state at every task end and every
``checkpoint.every_steps`` steps; and writes ``results.json``, TensorBoard events, a heatmap and a table.
Running again with the same workdir resumes from the newest checkpoint and ends with the same results.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lwcl import layerwise
from lwcl import metrics as metrics_lib
from lwcl import report
from lwcl.checkpoint import RunCheckpointer, config_differences, read_json
from lwcl.data.pipeline import Preprocessor, eval_batches, steps_per_epoch, train_batches
from lwcl.data.scenarios import build_scenario
from lwcl.data.sources import load_dataset
from lwcl.errors import ConfigError, DivergenceError
from lwcl.methods import build_method
from lwcl.models import build_model
from lwcl.parallel import DataParallel
from lwcl.train import TrainState, make_eval_step, make_train_step

RESULTS_FILE = "results.json"
HEATMAP_FILE = "accuracy_matrix.png"
# Test-only fault injection: SIGKILL this process right after the given global step.
KILL_ENV = "LWCL_FAULT_KILL_AFTER_STEP"
# Config keys that do not change results (they may differ when a run is resumed).
OPERATIONAL_KEYS = ("checkpoint", "devices", "train.progress", "train.log_every_steps",
                    "train.eval_batch_size", "data.idx_dir", "data.data_dir", "data.download",
                    "data.source", "method.memory_grad_chunk")


def result_config(config_dict: dict) -> dict:
  """The result-relevant part of a config dict (``OPERATIONAL_KEYS`` removed), JSON-compatible."""
  d = json.loads(json.dumps(config_dict, sort_keys=True, default=str))
  for key in OPERATIONAL_KEYS:
    *parents, leaf = key.split(".")
    node = d
    for p in parents:
      node = node.get(p, {})
    node.pop(leaf, None)
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


def validate(config) -> None:
  """Checks values the config types cannot; raises ConfigError naming the key and the fix."""
  positive = {"train.epochs_per_task": config.train.epochs_per_task,
              "train.batch_size": config.train.batch_size,
              "train.eval_batch_size": config.train.eval_batch_size,
              "train.log_every_steps": config.train.log_every_steps}
  for key, value in positive.items():
    if value < 1:
      raise ConfigError(f"{key} must be at least 1, got {value}; fix --config.{key}")
  if config.optimizer.learning_rate <= 0:
    raise ConfigError("optimizer.learning_rate must be positive; fix --config.optimizer.learning_rate")
  if config.checkpoint.every_steps < 0 or config.eval.lca_batches < 0:
    raise ConfigError("checkpoint.every_steps and eval.lca_batches must be >= 0")
  if config.eval.split not in ("test", "valid"):
    raise ConfigError(f"unknown eval.split '{config.eval.split}'; use test or valid")
  if config.eval.split == "valid" and config.scenario.validation_fraction <= 0:
    raise ConfigError("eval.split=valid needs held-out data; set --config.scenario.validation_fraction "
                      "(e.g. 0.1)")
  if config.num_orders < 0:
    raise ConfigError("num_orders must be >= 0; fix --config.num_orders")


class Experiment:
  """One experiment: data, model, method and compiled steps, built once from a config.

  Attributes:
    config: the (locked) ml_collections config.
    scenario: the task stream.
    fns: model functions; method: the continual method; tx: method transformation + base optimizer.
    parallel: the device mesh and shardings.
  """

  def __init__(self, config):
    validate(config)
    self.config = config
    self.parallel = DataParallel.create(config.devices)
    self.parallel.check_batch_size(config.train.batch_size, "train.batch_size")
    eval_bs = config.train.eval_batch_size
    self.eval_batch_size = -(-eval_bs // self.parallel.size) * self.parallel.size
    self.dataset = load_dataset(config.data)
    self.preprocess = Preprocessor.from_config(config.data, self.dataset.train_images)
    self._build(build_scenario(config.scenario, self.dataset))

  def _build(self, scenario) -> None:
    """Model functions, method, optimizer and compiled steps for ``scenario``."""
    config = self.config
    self.scenario = scenario
    self.fns = layerwise.build_fns(config.layerwise, build_model(config.model, scenario), self.preprocess,
                                   scenario.label_masks, scenario.image_shape, scenario.num_heads,
                                   scenario.output_dim)
    self.method = build_method(config.method, scenario, self.fns)
    self._set_train_data()
    epochs = config.train.epochs_per_task
    self.tx = layerwise.optimizer(self.fns, self.method.transformation(), config.optimizer,
                                  self.steps_per_epoch[0], epochs)
    rep, bat = self.parallel.replicated, self.parallel.batch
    self.train_step = jax.jit(make_train_step(self.fns, self.tx, self.method), donate_argnums=(0,),
                              in_shardings=(rep, bat), out_shardings=(rep, rep))
    self.eval_step = jax.jit(make_eval_step(self.fns), in_shardings=(rep, rep, bat),
                             out_shardings=(rep, rep))
    self.layerwise = layerwise.Hooks(self)

  def _set_train_data(self) -> None:
    self.train_data = [self.method.training_data(self.scenario, t) for t in range(self.scenario.num_tasks)]
    self.steps_per_epoch = [steps_per_epoch(len(d), self.config.train.batch_size) for d in self.train_data]

  def reorder(self, order_seed: int) -> None:
    """Switches to another task order (``scenario.order_seed``), reusing the compiled steps when the
    label space is unchanged (always, except masked task-incremental heads, whose masks follow the
    order). The data set is not reloaded."""
    config = self.config.copy_and_resolve_references()
    with config.unlocked():
      config.scenario.order_seed = order_seed
    config.lock()
    self.config = config
    scenario = build_scenario(config.scenario, self.dataset)
    if np.array_equal(scenario.label_masks, self.scenario.label_masks):
      self.scenario = self.method.scenario = scenario
      self._set_train_data()
    else:
      self._build(scenario)

  # -- state ---------------------------------------------------------------------------------------

  def initial_state(self) -> TrainState:
    key = jax.random.PRNGKey(self.config.seed)
    init_key, train_key = jax.random.split(key)
    params, batch_stats = self.fns.init(init_key, self.scenario.image_shape)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=self.tx.init(params),
                      method_state=self.method.init_state(params, batch_stats), rng=train_key)

  def initial_record(self) -> dict:
    """Arrays recorded over the run: accuracy matrix ``R`` [T, T], initial accuracies ``b`` [T],
    learning curves ``lca`` [T, lca_batches + 1] and per-task training loss (all float32)."""
    T = self.scenario.num_tasks
    return {"R": np.zeros((T, T), np.float32), "b": np.zeros((T,), np.float32),
            "lca": np.zeros((T, self.config.eval.lca_batches + 1), np.float32),
            "final_loss": np.zeros((T,), np.float32), **self.layerwise.initial_record(T)}

  # -- evaluation ----------------------------------------------------------------------------------

  def evaluate_task(self, state: TrainState, task: int, split: str = "test") -> float:
    """Accuracy (fraction) on one task's split."""
    data = getattr(self.scenario.tasks[task], split)
    correct = count = 0.0
    for batch in eval_batches(data.images, data.labels, task, self.eval_batch_size):
      c, n = self.eval_step(state.params, state.batch_stats, self.parallel.put_batch(batch))
      correct, count = correct + c, count + n
    return float(correct) / max(float(count), 1.0)

  def evaluate(self, state: TrainState, split: str = "test") -> np.ndarray:
    """Accuracy on every task of the stream, float32 ``[T]``."""
    return np.asarray([self.evaluate_task(state, j, split) for j in range(self.scenario.num_tasks)],
                      np.float32)

  # -- the stream ----------------------------------------------------------------------------------

  def run(self, workdir: str) -> dict:
    """Trains and evaluates the whole stream in ``workdir`` (resuming when it holds a checkpoint).

    Returns:
      The results dict also written to ``workdir/results.json``.
    Raises:
      CheckpointError: the workdir holds a corrupt checkpoint or one of another experiment.
      DivergenceError: the loss became non-finite (nothing is saved past the last finite checkpoint).
    """
    config, scenario = self.config, self.scenario
    T, epochs, bs = scenario.num_tasks, config.train.epochs_per_task, config.train.batch_size
    is_main = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    config_dict = config.to_dict()
    ckpt = RunCheckpointer(os.path.join(workdir, "checkpoints"), config.checkpoint.keep,
                           result_config(config_dict))
    writer = _metric_writer(workdir, is_main)

    state, record = self.initial_state(), self.initial_record()
    progress = {"task": 0, "task_step": 0, "train_seconds": 0.0, "train_examples": 0}
    restored = ckpt.restore({"state": state, "record": record})
    if restored is not None:
      tree, meta = restored
      state, record = tree["state"], {k: np.asarray(v) for k, v in tree["record"].items()}
      progress = {k: meta[k] for k in progress}
      logging.info("resuming at task %d, step %d of the task", progress["task"], progress["task_step"])
      if is_main:
        print(f"lwcl: resuming from checkpoint at task {progress['task'] + 1}, step "
              f"{progress['task_step']} of the task", flush=True)
    state = self.parallel.replicate(state)
    split = config.eval.split
    if restored is None:
      record["b"] = self.evaluate(state, split)

    def save(task_done: bool):
      meta = dict(progress)
      if task_done:
        meta["task"], meta["task_step"] = meta["task"] + 1, 0
      ckpt.save(int(state.step), {"state": state, "record": record}, meta)

    kill_after = int(os.environ.get(KILL_ENV, "-1"))
    lca_n = config.eval.lca_batches
    for t in range(progress["task"], T):
      data, spe = self.train_data[t], self.steps_per_epoch[t]
      total = spe * epochs
      if progress["task_step"] == 0 and config.optimizer.reset_each_task and t > 0:
        state = state.replace(opt_state=self.parallel.replicate(self.tx.init(state.params)))
      if lca_n and progress["task_step"] == 0:
        record["lca"][t, 0] = self.evaluate_task(state, t, split)
      bar = _progress_bar(total, progress["task_step"], f"task {t + 1}/{T}",
                          config.train.progress and is_main)
      pending, tic = [], time.perf_counter()
      for s in range(progress["task_step"], total):
        epoch, index = divmod(s, spe)
        if s == progress["task_step"] or index == 0:
          batches = train_batches(data, bs, config.seed, t, epoch, start=index)
        batch = self.layerwise.batch(next(batches), s, spe, epochs)  # greedy mode: + phase
        state, step_metrics = self.train_step(state, self.parallel.put_batch(batch))
        pending.append(step_metrics["loss"])
        progress["task_step"] = s + 1
        progress["train_examples"] += bs
        step = int(s + 1 + sum(self.steps_per_epoch[k] * epochs for k in range(t)))
        if lca_n and s < lca_n:
          record["lca"][t, s + 1] = self.evaluate_task(state, t, split)
        every = config.checkpoint.every_steps
        due_log = (s + 1) % config.train.log_every_steps == 0
        due_ckpt = every and step % every == 0 and s + 1 < total
        if due_log or due_ckpt or s + 1 == total:
          loss = _check_finite(pending, t, s + 1)
          pending = []
          bar.set_postfix(loss=f"{loss:.4f}")
          writer.write_scalars(step, {"train/loss": loss, "train/task": t + 1})
        if due_ckpt:
          progress["train_seconds"] += time.perf_counter() - tic
          save(task_done=False)
          tic = time.perf_counter()
        bar.update(1)
        if step == kill_after:
          os.kill(os.getpid(), signal.SIGKILL)
      jax.block_until_ready(state)
      progress["train_seconds"] += time.perf_counter() - tic
      bar.close()
      record["final_loss"][t] = loss
      record["R"][t] = self.evaluate(state, split)
      self.layerwise.after_task(state, t, record, split)
      method_state = self.method.end_task(state.method_state, state.params, state.batch_stats, t, data)
      state = state.replace(method_state=self.parallel.replicate(method_state))
      writer.write_scalars(int(state.step), {f"eval/accuracy_task{j + 1}": float(record["R"][t, j])
                                             for j in range(T)})
      save(task_done=True)
      progress["task"], progress["task_step"] = t + 1, 0
      if is_main:
        print(f"after task {t + 1}/{T}: accuracy " +
              " ".join(f"{100 * a:.1f}" for a in record["R"][t, : t + 1]) + " (seen tasks, %)",
              flush=True)

    results = self.results(record, progress, config_dict)
    if is_main:
      writer.write_scalars(int(state.step), {k: v for k, v in results.items()
                                             if k in ("acc", "bwt", "fwt", "forgetting")
                                             and v is not None and np.isfinite(v)})
      report.write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
      report.plot_accuracy_matrix(record["R"], os.path.join(workdir, HEATMAP_FILE),
                                  f"{config.method.name} on {scenario.dataset} ({scenario.kind}, "
                                  f"{scenario.incremental}-incremental)")
      self.layerwise.write(results, workdir)
    writer.close()
    ckpt.close()
    self.final_state = state
    return results

  def results(self, record: dict, progress: dict, config_dict: dict) -> dict:
    """The results dict of a finished stream (see ``results.json`` in the README)."""
    R, b = record["R"].astype(np.float64), record["b"].astype(np.float64)
    out = {"accuracy_matrix": R.tolist(), "initial_accuracy": b.tolist(),
           "eval_split": self.config.eval.split}
    out.update(metrics_lib.summarize(R, b))
    out.update(self.layerwise.results(record))
    if self.config.eval.lca_batches:
      out["lca_curves"] = record["lca"].tolist()
      out["lca"] = metrics_lib.lca(record["lca"], self.config.eval.lca_batches)
    out.update({
        "method": self.config.method.name,
        "dataset": self.scenario.dataset,
        "data_source": self.dataset.source,
        "scenario": {"kind": self.scenario.kind, "incremental": self.scenario.incremental,
                     "num_tasks": self.scenario.num_tasks, "output_dim": self.scenario.output_dim,
                     "num_heads": self.scenario.num_heads},
        "tasks": [t.describe() for t in self.scenario.tasks],
        "final_train_loss": record["final_loss"].tolist(),
        "train_seconds": float(progress["train_seconds"]),
        "train_examples": int(progress["train_examples"]),
        "examples_per_second": float(progress["train_examples"] / max(progress["train_seconds"], 1e-9)),
        "devices": {"count": self.parallel.size, "platform": jax.devices()[0].platform,
                    "processes": jax.process_count()},
        "config": config_dict,
        "fingerprint": fingerprint(config_dict),
    })
    return out


def _check_finite(losses: list, task: int, task_step: int) -> float:
  """The last loss of ``losses`` (device scalars); raises DivergenceError if any is not finite."""
  values = np.asarray(jax.device_get(losses), dtype=np.float64)
  if not np.all(np.isfinite(values)):
    raise DivergenceError(f"the training loss became {values[~np.isfinite(values)][0]} in task {task + 1} "
                          f"by step {task_step} of the task; lower --config.optimizer.learning_rate or "
                          "set --config.optimizer.grad_clip_norm (the last good checkpoint is kept)")
  return float(values[-1])


class _NoBar:
  def update(self, n=1):
    pass

  def set_postfix(self, **kwargs):
    pass

  def close(self):
    pass


def _progress_bar(total: int, initial: int, desc: str, enabled: bool):
  if not enabled:
    return _NoBar()
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=False)


def _metric_writer(workdir: str, is_main: bool):
  from lwcl.parallel import hide_gpus_from_tensorflow  # pylint: disable=g-import-not-at-top
  hide_gpus_from_tensorflow()
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  return metric_writers.create_default_writer(workdir, just_logging=not is_main, asynchronous=False)


def run(config, workdir: str) -> dict:
  """Builds the experiment a config describes and runs it in ``workdir``; returns the results dict.

  Dispatches to a validation sweep (``sweep.key``) or a task-order study (``num_orders``) when the
  config asks. A workdir whose ``results.json`` already holds this experiment's finished results is
  reported, not recomputed; one that holds another experiment's results is refused (ConfigError), never
  overwritten.
  """
  existing = read_json(os.path.join(workdir, RESULTS_FILE))
  if existing is not None:
    if same_experiment(existing, config.to_dict()):
      return existing
    raise ConfigError(f"{workdir} already holds results.json of a different experiment; choose a new "
                      "--workdir (nothing was overwritten)")
  if config.sweep.key:
    from lwcl import sweep  # pylint: disable=g-import-not-at-top
    return sweep.run_sweep(config, workdir)
  if config.num_orders:
    from lwcl import orders  # pylint: disable=g-import-not-at-top
    return orders.run_orders(config, workdir)
  return Experiment(config).run(workdir)


def print_summary(results: dict) -> None:
  """Prints the accuracy matrix and metrics table."""
  title = (f"{results['method']} on {results['dataset']} ({results['scenario']['kind']}, "
           f"{results['scenario']['incremental']}-incremental, {results['scenario']['num_tasks']} tasks)")
  m = {k: (np.nan if results.get(k) is None else results[k]) for k in ("acc", "bwt", "fwt", "forgetting")}
  print(report.format_table(results["accuracy_matrix"], results["initial_accuracy"], m,
                            [t["name"] for t in results["tasks"]], title))
  print(f"train time {results['train_seconds']:.1f} s, {results['examples_per_second']:.0f} examples/s "
        f"on {results['devices']['count']} {results['devices']['platform']} device(s)", flush=True)
