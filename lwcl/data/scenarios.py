"""Continual-learning scenarios: a data set cut into a stream of tasks.

Kinds (van de Ven & Tolias, *Three scenarios for continual learning*, 2019; GEM, Lopez-Paz & Ranzato 2017):

* ``split``: each task is a disjoint subset of the classes (e.g. Split Fashion-MNIST, 5 tasks of 2).
* ``permuted``: each task applies a fixed random pixel permutation to every image (all classes).
* ``rotated``: each task rotates every image by a fixed angle (all classes).

Label spaces (``scenario.incremental``):

* ``task``: task-incremental, the task identity is known at test time. With ``task_heads='multi'``
  every task has its own head (labels are the class's index inside its task); with ``'masked'`` one shared
  head over all classes whose logits are masked to the task's classes.
* ``class``: class-incremental, one shared head over all classes, no task identity.
* ``domain``: domain-incremental, one shared head whose outputs are the within-task labels.

All randomness (class order, task order, permutations, subsampling, validation split) comes from
``scenario.seed`` and ``scenario.order_seed`` (or an explicit ``scenario.task_order``); the same config always gives
the same stream.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from lwcl.core.options import Option, pick
from lwcl.data import transforms
from lwcl.data.examples import Examples
from lwcl.data.lazy import LazyImages
from lwcl.data.sources import ImageDataset
from lwcl.errors import ConfigError, DataError
from lwcl.platform import host_memory

INCREMENTAL = ("task", "class", "domain")
TASK_HEADS = ("multi", "masked")

# The keys every kind reads (each kind's own keys are in its entry of SCENARIOS).
OPTIONS = (
    Option("scenario.kind", "split", "how the data set becomes tasks: split | permuted | rotated",
           choices=("split", "permuted", "rotated")),
    Option("scenario.incremental", "task", "label space: task (task identity known) | class (one head over "
           "all classes) | domain (one head over within-task labels)", choices=INCREMENTAL),
    Option("scenario.task_heads", "multi", "task-incremental only: multi (a head per task) | masked (one "
           "shared head, logits masked to the task's classes)", choices=TASK_HEADS),
    Option("scenario.num_tasks", 5, "tasks in the stream", minimum=1),
    Option("scenario.order_seed", -1, "task order: -1 = as defined; otherwise a seeded permutation of the "
           "tasks", minimum=-1),
    Option("scenario.task_order", (), "explicit task order (indices of the tasks as defined); () = use "
           "order_seed"),
    Option("scenario.samples_per_task", 0, "cap on training examples per task (GEM protocol: 1000); 0 = all",
           minimum=0),
    Option("scenario.validation_fraction", 0.0, "share of each task's training data held out for validation",
           minimum=0, maximum=1),
    Option("scenario.max_tasks", 0, "task slots the state is padded to (>= num_tasks); 0 = num_tasks",
           minimum=0),
    Option("scenario.seed", 0, "permutations, class shuffling, subsampling, validation split", minimum=0),
)


@dataclasses.dataclass(frozen=True)
class Task:
  """One task of the stream.

  Attributes:
    index: position in the stream (0-based); also the task id fed to the model.
    name: readable name, e.g. ``'classes 0,1'`` or ``'permutation 3'``.
    classes: the data set's class ids in this task.
    transform: ``None`` for split tasks; ``{'permutation_seed': s}`` or ``{'angle_degrees': a}``.
    train, valid, test: the task's data (:class:`~lwcl.data.examples.Examples`, every example's task id
      ``index``). ``valid`` is held out of the training data.
  """
  index: int
  name: str
  classes: tuple
  transform: dict | None
  train: Examples
  valid: Examples
  test: Examples

  def describe(self) -> dict:
    """JSON-serialisable description for ``results.json``."""
    return {"index": self.index, "name": self.name, "classes": [int(c) for c in self.classes],
            "transform": self.transform, "num_train": len(self.train), "num_valid": len(self.valid),
            "num_test": len(self.test)}


@dataclasses.dataclass(frozen=True)
class Scenario:
  """A task stream and its label space.

  Attributes:
    kind: ``split`` | ``permuted`` | ``rotated``.
    incremental: ``task`` | ``class`` | ``domain``.
    tasks: the tasks, in stream order.
    max_tasks: number of task slots (heads, masks) the model and state are padded to.
    num_heads: 1 for a shared head, ``max_tasks`` for one head per task.
    output_dim: width of each head.
    label_masks: bool ``[max_tasks, output_dim]``: which outputs task ``t`` may predict.
    image_shape: ``(H, W, C)``.
    dataset: name of the data set.
  """
  kind: str
  incremental: str
  tasks: tuple
  max_tasks: int
  num_heads: int
  output_dim: int
  label_masks: np.ndarray
  image_shape: tuple
  dataset: str

  @property
  def num_tasks(self) -> int:
    return len(self.tasks)

  @property
  def task_il_masks(self) -> np.ndarray | None:
    """For a class-incremental scenario, bool ``[max_tasks, output_dim]``: row ``t`` marks the classes of
    task ``t`` (its outputs on the shared head; rows past the stream are False). The Task-IL evaluation
    restricts each example's prediction to its task's row (Mammoth's ``mask_classes``). None for the
    other label spaces (task-incremental heads already restrict to the task; domain-incremental tasks
    share their labels)."""
    if self.incremental != "class":
      return None
    masks = np.zeros((self.max_tasks, self.output_dim), dtype=bool)
    for t, task in enumerate(self.tasks):
      masks[t, list(task.classes)] = True
    return masks


def _train_valid(rng, images, labels, task: int, cfg) -> tuple[Examples, Examples]:
  """Holds out ``validation_fraction`` of a task's training data, then caps training at
  ``samples_per_task``."""
  n = labels.shape[0]
  perm = rng.permutation(n)
  n_valid = int(round(cfg.validation_fraction * n))
  valid_idx, train_idx = np.sort(perm[:n_valid]), perm[n_valid:]
  if cfg.samples_per_task:
    train_idx = train_idx[: cfg.samples_per_task]
  train_idx = np.sort(train_idx)
  return (Examples.of_task(_rows(images, train_idx), labels[train_idx], task),
          Examples.of_task(_rows(images, valid_idx), labels[valid_idx], task))


def _class_order(cfg, num_classes: int) -> list:
  if cfg.class_order:
    order = [int(c) for c in cfg.class_order]
    if len(set(order)) != len(order) or not all(0 <= c < num_classes for c in order):
      raise ConfigError(f"scenario.class_order {tuple(order)} must list distinct classes in "
                        f"[0, {num_classes}); fix --config.scenario.class_order")
    return order
  order = list(range(num_classes))
  if cfg.shuffle_classes:
    order = [int(c) for c in np.random.default_rng(cfg.seed).permutation(num_classes)]
  return order


def task_order(num_tasks: int, order_seed: int, explicit=()) -> list:
  """The order in which the tasks are presented, as indices into the tasks as defined.

  Args:
    num_tasks: ``T``.
    order_seed: ``scenario.order_seed``: ``< 0`` the order as defined, else a seeded permutation
      (``numpy.random.default_rng(order_seed).permutation(T)``).
    explicit: ``scenario.task_order``; when not empty it is the order itself and ``order_seed`` is unused.
  Returns:
    A permutation of ``0..T-1`` (list of int).
  Raises:
    ConfigError: ``explicit`` is not a permutation of ``0..T-1``.
  """
  if len(explicit):
    order = [int(i) for i in explicit]
    if sorted(order) != list(range(num_tasks)):
      raise ConfigError(f"scenario.task_order {tuple(order)} is not a permutation of 0..{num_tasks - 1}; "
                        "list every task index once, or set () to use scenario.order_seed")
    return order
  if order_seed < 0:
    return list(range(num_tasks))
  return [int(i) for i in np.random.default_rng(order_seed).permutation(num_tasks)]


def _split_tasks(cfg, ds: ImageDataset) -> tuple[list, list]:
  """Class subsets per task; returns (per-task class tuples, per-task transforms)."""
  order = _class_order(cfg, ds.num_classes)
  T = cfg.num_tasks
  cpt = cfg.classes_per_task
  if cpt <= 0:
    if len(order) % T:
      raise ConfigError(f"{len(order)} classes cannot be split evenly into {T} tasks; set "
                        "--config.scenario.num_tasks to a divisor or --config.scenario.classes_per_task")
    cpt = len(order) // T
  if T * cpt > len(order):
    raise ConfigError(f"{T} tasks of {cpt} classes need {T * cpt} classes but {ds.name} has "
                      f"{len(order)}; lower --config.scenario.num_tasks or classes_per_task")
  return [tuple(order[k * cpt:(k + 1) * cpt]) for k in range(T)], [None] * T


def _rows(images, idx: np.ndarray):
  """Rows ``idx`` of in-memory images, or a lazy view of them (streaming source: nothing is read)."""
  return images.view(idx) if isinstance(images, LazyImages) else images[idx]


def _transformed(images, transform: dict | None):
  """A task's transform applied now (in memory) or when the rows are read (streaming source)."""
  if isinstance(images, LazyImages):
    return images.with_transform(transform)
  return transforms.apply(images, transform)


def _permuted_tasks(cfg, ds: ImageDataset) -> tuple[list, list]:
  """All classes per task; task ``k`` permutes the pixels with seed ``seed * 100003 + k``."""
  T = cfg.num_tasks
  return [tuple(range(ds.num_classes))] * T, [
      {"permutation_seed": int(cfg.seed * 100003 + k)} if (k or cfg.permute_first_task) else None
      for k in range(T)]


def _rotated_tasks(cfg, ds: ImageDataset) -> tuple[list, list]:
  """All classes per task; task ``k`` rotates by ``angles[k]`` (default ``k * max_angle / num_tasks``)."""
  T = cfg.num_tasks
  angles = list(cfg.angles) if cfg.angles else [k * cfg.max_angle / T for k in range(T)]
  return [tuple(range(ds.num_classes))] * T, [{"angle_degrees": float(a)} for a in angles]


def _classes_name(t, classes, transform, ds) -> str:
  return "classes " + ",".join(str(ds.class_names[c]) for c in classes)


@dataclasses.dataclass(frozen=True)
class ScenarioKind:
  """One kind of scenario (an entry of :data:`SCENARIOS`).

  Attributes:
    tasks: ``(config.scenario, ds) -> (class_sets, transforms)``: the tasks as defined (before the task
      order): each task's classes (tuple of class ids) and transform (``None`` or a dict
      :func:`lwcl.data.transforms.apply` knows).
    name: ``(t, classes, transform, ds) -> str``: task ``t``'s readable name.
    local_labels: whether task- and domain-incremental label spaces use within-task labels (the tasks'
      classes differ) rather than the data set's classes.
    options: the ``scenario.*`` keys only this kind reads (:class:`~lwcl.core.options.Option`).
  """
  tasks: Callable
  name: Callable
  local_labels: bool
  options: tuple


SCENARIOS = {
    "split": ScenarioKind(_split_tasks, _classes_name, True, (
        Option("scenario.classes_per_task", 2, "classes per task; 0 = num_classes // num_tasks", minimum=0),
        Option("scenario.class_order", (), "explicit class order, e.g. (3, 1, 0, ...); () = 0..C-1"),
        Option("scenario.shuffle_classes", False, "shuffle the classes (seeded by scenario.seed) when "
               "class_order is ()"),
    )),
    "permuted": ScenarioKind(_permuted_tasks,
                             lambda t, classes, transform, ds: f"permutation {t}" if transform else "identity",
                             False, (
        Option("scenario.permute_first_task", True, "False keeps the first task unpermuted"),
    )),
    "rotated": ScenarioKind(_rotated_tasks,
                            lambda t, classes, transform, ds: f"rotation {transform['angle_degrees']:g} deg",
                            False, (
        Option("scenario.angles", (), "one angle (degrees) per task; () = k * max_angle / num_tasks"),
        Option("scenario.max_angle", 180.0, "the last task's angle is below this, in degrees", minimum=0.0,
               strict=True),
    )),
}


def held_bytes(cfg, ds: ImageDataset, class_sets) -> tuple[int, int]:
  """``(bytes, rows)``: what the tasks with classes ``class_sets`` will hold, a lower bound counted from the
  data set's labels before any task is built. Every task keeps its training examples (at most
  ``samples_per_task``), its held-out ones and its test examples; a row costs its uint8 pixels (an int64
  row index when the images are streamed) and two int32 (label, task id). Tasks with the same classes
  (permuted, rotated: all of them) each hold a copy."""
  def counts(labels):  # {class: examples}, of the classes that occur only
    classes, n = np.unique(labels, return_counts=True)
    return dict(zip(classes.tolist(), n.tolist()))

  train_counts, test_counts = counts(ds.train_labels), counts(ds.test_labels)
  row = lambda images: (8 if isinstance(images, LazyImages) else int(np.prod(ds.image_shape))) + 8  # noqa: E731
  total = rows = 0
  tasks_of = {}
  for classes in class_sets:
    tasks_of[classes] = tasks_of.get(classes, 0) + 1
  for classes, tasks in tasks_of.items():
    n = sum(train_counts.get(c, 0) for c in classes)
    n_valid = int(round(cfg.validation_fraction * n))
    kept = min(n - n_valid, cfg.samples_per_task) if cfg.samples_per_task else n - n_valid
    n_test = sum(test_counts.get(c, 0) for c in classes)
    total += tasks * ((kept + n_valid) * row(ds.train_images) + n_test * row(ds.test_images))
    rows += tasks * (kept + n_valid + n_test)
  return total, rows


def _check_fits(cfg, ds: ImageDataset, class_sets) -> None:
  """Refuses a stream whose tasks cannot fit in memory (:func:`held_bytes`), before building them.

  Raises:
    ConfigError: one line with the estimate, the machine's memory and how many tasks would fit (or the task
      slots' label masks, ``max_tasks`` x outputs, do not fit).
  """
  T = len(class_sets)
  slots, outputs = cfg.max_tasks or T, min(len(c) for c in class_sets)
  host_memory.check_fits(slots * outputs, f"scenario.max_tasks={slots}: the label masks of the task slots "
                         f"({slots} x at least {outputs} outputs)", "lower --config.scenario.max_tasks (0: num_tasks)")
  need, rows = held_bytes(cfg, ds, class_sets)
  pixels = "x".join(str(d) for d in ds.image_shape)
  host_memory.check_fits(
      need, f"scenario.num_tasks={T} {cfg.kind} tasks ({rows // T} examples of {pixels} pixels per task: "
      "training, held-out and test)",
      f"lower --config.scenario.num_tasks (about {max(1, T * host_memory.limit_bytes() // max(need, 1))} fit)")


def build_scenario(scenario_config, ds: ImageDataset) -> Scenario:
  """Cuts a data set into the task stream a config's ``scenario`` section describes.

  The kind's entry of :data:`SCENARIOS` gives the tasks as defined. The config's values are checked by
  :mod:`lwcl.config.options` (names, bounds, ``max_tasks`` against ``num_tasks``, one angle per task);
  what needs the data set (its classes) is checked here.

  Args:
    scenario_config: ``config.scenario`` (see ``configs/default.py`` for every key).
    ds: the data set.
  Returns:
    The :class:`Scenario`, tasks in stream order (``task_order`` or ``order_seed`` applied).
  Raises:
    ConfigError: impossible scenario (classes not divisible into tasks, a class order outside the data
      set's classes, unknown kind), or tasks that cannot fit in memory (:func:`held_bytes`).
    DataError: a task ends up with fewer training examples than one batch would need.
  """
  cfg = scenario_config
  kind, inc = cfg.kind, cfg.incremental
  entry = pick(SCENARIOS, "scenario.kind", kind)
  T = cfg.num_tasks
  max_tasks = cfg.max_tasks or T
  class_sets, transforms = entry.tasks(cfg, ds)
  _check_fits(cfg, ds, class_sets)

  order = task_order(T, cfg.order_seed, cfg.get("task_order", ()))
  class_sets = [class_sets[i] for i in order]
  transforms = [transforms[i] for i in order]

  # Label space.
  cpt = len(class_sets[0])
  if entry.local_labels and inc in ("task", "domain") and not (inc == "task" and cfg.task_heads == "masked"):
    local_labels, output_dim = True, cpt
  else:
    local_labels, output_dim = False, ds.num_classes
  num_heads = max_tasks if (inc == "task" and cfg.task_heads == "multi") else 1
  label_masks = np.ones((max_tasks, output_dim), dtype=bool)
  if inc == "task" and cfg.task_heads == "masked":
    label_masks[:] = False
    for t, classes in enumerate(class_sets):
      label_masks[t, list(classes)] = True

  rng = np.random.default_rng(cfg.seed)
  tasks = []
  for t, (classes, transform) in enumerate(zip(class_sets, transforms)):
    def select(images, labels, classes=classes):
      keep = np.flatnonzero(np.isin(labels, classes))
      x, y = _rows(images, keep), labels[keep]
      if local_labels:
        lut = np.full(ds.num_classes, -1, np.int32)
        lut[list(classes)] = np.arange(len(classes), dtype=np.int32)
        y = lut[y]
      return x, y.astype(np.int32)

    train_x, train_y = select(ds.train_images, ds.train_labels)
    test_x, test_y = select(ds.test_images, ds.test_labels)
    train_x, test_x = _transformed(train_x, transform), _transformed(test_x, transform)
    name = entry.name(t, classes, transform, ds)
    if train_y.size == 0 or test_y.size == 0:
      raise DataError(f"task {t} ({name}) has no training or test examples in {ds.name}; check "
                      "scenario.class_order and the data set")
    train, valid = _train_valid(rng, train_x, train_y, t, cfg)
    tasks.append(Task(t, name, tuple(int(c) for c in classes), transform, train, valid,
                      Examples.of_task(test_x, test_y, t)))
  return Scenario(kind, inc, tuple(tasks), max_tasks, num_heads, output_dim, label_masks,
                  ds.image_shape, ds.name)
