"""Outputs of a run: ``results.json`` (written atomically), a PNG heatmap of the accuracy matrix, and a
readable summary for the terminal."""

from __future__ import annotations

import json
import math

import numpy as np

from lwcl.core.metrics import TASK_IL_SCALARS
from lwcl.io.figures import pyplot, save_figure
from lwcl.io.safe_files import write_atomic

HEATMAP_FILE = "accuracy_matrix.png"


def _clean(obj):
  """JSON-safe copy: NumPy scalars/arrays to Python, non-finite floats to None."""
  if isinstance(obj, dict):
    return {str(k): _clean(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_clean(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return _clean(obj.tolist())
  if isinstance(obj, (np.floating, float)):
    v = float(obj)
    return v if math.isfinite(v) else None
  if isinstance(obj, (np.integer,)):
    return int(obj)
  if isinstance(obj, np.bool_):
    return bool(obj)
  return obj


def write_json_atomic(path: str, data: dict) -> None:
  """Writes ``data`` as JSON to ``path`` through a new temporary file and a rename
  (:func:`lwcl.io.safe_files.write_atomic`), so a crash never leaves a half-written file in place of a good
  one and no write follows a symbolic link. Non-finite floats become ``null``. The file gets the mode of any
  other output (0644 under the usual umask 022).

  Raises:
    LwclError: ``path`` is a symbolic link (nothing is written).
    TypeError: a value JSON cannot hold (the config check refuses such config values before a run).
  """
  def write(f):
    json.dump(_clean(data), f, indent=2, allow_nan=False)
    f.write("\n")
  write_atomic(path, write)


def format_table(R, b, metrics: dict, task_names=None, title: str = "") -> str:
  """The accuracy matrix (percent) with initial accuracies and the scalar metrics, as text."""
  R = np.asarray(R, dtype=float)
  T = R.shape[0]
  names = task_names or [f"task {j + 1}" for j in range(T)]
  width = 8
  lines = []
  if title:
    lines.append(title)
  lines.append("accuracy (%) on task j (columns) after training through task i (rows)")
  lines.append(" " * 10 + "".join(f"{'T' + str(j + 1):>{width}}" for j in range(T)))
  lines.append(f"{'init':<10}" + "".join(f"{100 * v:>{width}.1f}" for v in b))
  for i in range(T):
    lines.append(f"{'after T' + str(i + 1):<10}" + "".join(f"{100 * v:>{width}.1f}" for v in R[i]))
  lines.append("tasks: " + "; ".join(f"T{j + 1} = {n}" for j, n in enumerate(names)))
  lines.append(_metric_line(metrics, ("acc", "bwt", "fwt", "forgetting")))
  return "\n".join(lines)


def _metric_line(metrics: dict, keys, prefix: str = "") -> str:
  """``ACC 51.20%  BWT -3.10%  ...``: the metrics ``prefix + key`` of ``metrics`` present, in percent."""
  def fmt(v):
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:+.2f}" if v < 0 else f"{100 * v:.2f}"

  return "  ".join(f"{k.upper()} {fmt(metrics[prefix + k])}%" for k in keys if prefix + k in metrics)


def plot_accuracy_matrix(R, path: str, title: str = "") -> None:
  """Saves a heatmap of ``R`` (fractions) with the value in each cell, to PNG ``path`` (atomically)."""
  plt = pyplot()
  R = np.asarray(R, dtype=float)
  T = R.shape[0]
  fig, ax = plt.subplots(figsize=(1.0 + 0.7 * T, 0.8 + 0.6 * T))
  im = ax.imshow(100 * R, vmin=0, vmax=100, cmap="viridis")
  for i in range(T):
    for j in range(T):
      ax.text(j, i, f"{100 * R[i, j]:.0f}", ha="center", va="center", fontsize=8,
              color="white" if R[i, j] < 0.6 else "black")
  ax.set_xticks(range(T), [f"T{j + 1}" for j in range(T)])
  ax.set_yticks(range(T), [f"after T{i + 1}" for i in range(T)])
  ax.set_xlabel("evaluated task")
  ax.set_title(title or "accuracy matrix (%)", fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  fig.tight_layout()
  save_figure(fig, path)


def format_summary(results: dict) -> str:
  """The accuracy matrix and metrics table of a results dict, and the training speed, as text."""
  title = (f"{results['method']} on {results['dataset']} ({results['scenario']['kind']}, "
           f"{results['scenario']['incremental']}-incremental, {results['scenario']['num_tasks']} tasks)")
  m = {k: (np.nan if results.get(k) is None else results[k]) for k in ("acc", "bwt", "fwt", "forgetting")}
  table = format_table(results["accuracy_matrix"], results["initial_accuracy"], m,
                       [t["name"] for t in results["tasks"]], title)
  if "task_il_accuracy_matrix" in results:  # class-incremental: the same model with the task given at test
    final = " ".join(f"{100 * v:.1f}" for v in results["task_il_accuracy_matrix"][-1])
    task_il = {k: np.nan if results.get(k) is None else results[k] for k in TASK_IL_SCALARS}
    table += (f"\nTask-IL (each task's classes only): {_metric_line(task_il, ('acc', 'bwt', 'forgetting'), 'task_il_')}"
              f"  (after the last task: {final})")
  return (f"{table}\ntrain time {results['train_seconds']:.1f} s, {results['examples_per_second']:.0f} "
          f"examples/s on {results['devices']['count']} {results['devices']['platform']} device(s)")
