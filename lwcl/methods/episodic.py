"""Episodic-memory gradient projection as continual-learning methods: A-GEM, GEM and LGD.

Each method keeps an episodic memory (``lwcl.methods.memory``) in its method state, fills it with every training
minibatch inside the jitted step (``after_step``), computes the old tasks' gradients on it inside the same
step (``step_args``), and projects the current gradient with its optax transformation
(``lwcl.methods.projection``), chained in front of the base optimizer. All state is padded to
``scenario.max_tasks``, so the step compiles once for the whole stream.

Layer-wise training (``lwcl.layerwise``) works unchanged: the memory loss is ``fns.loss``, which in
``local`` and ``greedy`` modes is the sum of the local losses with ``stop_gradient`` between blocks, so each
block's old-task gradient comes from its own local loss on the memory; A-GEM and GEM then project each
local block separately (``method.grouping='auto'`` -> ``local_block``).

Memory gradients are computed with ``train=False``: BatchNorm layers use their running statistics and do
not update them, and there is no augmentation. (The PyTorch reference codes run the memory batch in train
mode, which normalizes it with its own batch statistics and moves the running averages towards old-task
data; here the memory only shapes the gradient, and ``batch_stats`` follow the current task's data as in
fine-tuning.)

Config keys (``config.method``, see ``configs/default.py``): ``memory_per_task``, ``memory_grad_chunk``,
``grouping``, ``gem_margin``, ``gem_max_iter``, ``agem_ref_batch``, ``lgd_threshold``, ``lgd_top_k``,
``lgd_margin``, ``lgd_push``, ``lgd_single_task_push``.

**Adding a projection method**: write its rule as a pure function and an optax transformation taking
``ref_grads`` / ``ref_mask`` in :mod:`lwcl.methods.projection`, subclass :class:`EpisodicMethod` here (override
``transformation``, and ``step_args`` if it needs other reference gradients than one per old task), and
add its name to ``METHODS`` in ``lwcl/methods/__init__.py``.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from lwcl.errors import ConfigError
from lwcl.methods import gem_report as projection_report
from lwcl.methods import memory as memory_lib
from lwcl.methods import param_groups, projection
from lwcl.methods.base import Method
from lwcl.methods.options import choice, number, option
from lwcl.methods.qp import default_max_iter


@flax.struct.dataclass
class EpisodicState:
  """State of A-GEM, GEM and LGD.

  Attributes:
    memory: :class:`lwcl.methods.memory.Memory`, ``scenario.max_tasks`` ring buffers of ``method.memory_per_task``
      examples (uint8 images ``[T, M, H, W, C]``, int32 labels ``[T, M]``, int32 counts ``[T]``), filled
      with every training minibatch inside the train step.
  """
  memory: memory_lib.Memory


class EpisodicMethod(Method):
  """Shared machinery: the memory in the method state (:class:`EpisodicState`), the gradients of the
  memory loss, and by default one reference gradient per old task (GEM, LGD) as ``step_args``.

  Raises (constructor):
    ConfigError: a method key out of range or an unknown grouping.
  """

  default_grouping = "network"

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    cfg = method_config
    self.per_task = number(cfg, "memory_per_task", int, 1, default=256)
    self.chunk = number(cfg, "memory_grad_chunk", int, 0, default=0)
    self.grouping = self._grouping(option(cfg, "grouping", "auto"), fns)
    self.max_tasks = scenario.max_tasks
    self.image_shape = tuple(scenario.image_shape)

  def _grouping(self, grouping: str, fns) -> param_groups.Grouping:
    """The projection's parameter groups for ``method.grouping``.

    ``auto`` is the method's default (A-GEM, GEM: ``network``; LGD: ``layer``), except that in layer-wise
    ``local``/``greedy`` training (``lwcl.layerwise``) A-GEM and GEM project each local block separately
    (``local_block``), so every block is constrained by its own local loss on the memory (docs/design.md,
    "Layer-wise learning is a loss structure"; LGD's layers are already inside one local block each).
    ``tensors:N`` groups ``N`` consecutive parameter tensors in definition order
    (:func:`lwcl.methods.param_groups.definition_order`; the LGD authors' code uses ``tensors:5``).

    Raises:
      ConfigError: an unknown grouping, ``tensors:N`` with ``N`` not an integer ``>= 1``, or
        ``local_block`` without layer-wise training.
    """
    if grouping == "auto":
      grouping = "local_block" if fns.is_local and self.default_grouping == "network" else self.default_grouping
    if grouping == "local_block":
      if not fns.is_layerwise:
        raise ConfigError("method.grouping='local_block' needs layer-wise training (layerwise.mode local or "
                          "greedy); use auto, layer, block or network, or set --config.layerwise.mode")
      return lambda path, leaf: ("local_block", fns.block_of(path[0]))
    if isinstance(grouping, str) and grouping.startswith(param_groups.TENSORS_PREFIX):
      try:
        param_groups.tensors_per_group(grouping)
      except ValueError:
        raise ConfigError(f"method.grouping='{grouping}' needs an integer N >= 1 after 'tensors:' (e.g. "
                          "tensors:5); fix --config.method.grouping") from None
      return grouping
    if grouping not in param_groups.GROUPINGS:
      raise ConfigError(f"unknown method.grouping '{grouping}'; use auto, local_block, "
                        f"{', '.join(param_groups.GROUPINGS)} or tensors:N; fix --config.method.grouping")
    return grouping

  def init_state(self, params, batch_stats) -> EpisodicState:
    """An empty memory of ``max_tasks x memory_per_task`` examples."""
    del params, batch_stats
    return EpisodicState(memory=memory_lib.create(self.max_tasks, self.per_task, self.image_shape))

  def after_step(self, method_state: EpisodicState, params_before, params_after, grads, batch):
    """Writes the minibatch into its task's ring buffer (traced)."""
    memory = memory_lib.add(method_state.memory, batch["image"], batch["label"], batch["task"][0])
    return method_state.replace(memory=memory)

  def memory_grad(self, params, batch_stats, batch: dict) -> Any:
    """Gradient of the mean loss on a memory batch (``mask`` weights it), BatchNorm in inference mode."""
    return jax.grad(lambda p: self.fns.loss(p, batch_stats, batch, rng=None, train=False)[0])(params)

  def step_args(self, method_state: EpisodicState, params, batch_stats, batch, rng) -> dict:
    """The old tasks' reference gradients (:meth:`old_task_grads`)."""
    del rng
    return self.old_task_grads(method_state, params, batch_stats, batch)

  def old_task_grads(self, method_state: EpisodicState, params, batch_stats, batch) -> dict:
    """``{'ref_grads': params-shaped pytree with leading axis K, 'ref_mask': bool [K]}``,
    ``K = max(max_tasks - 1, 1)``: the gradient of each old task's memory loss (GEM, LGD).

    ``method.memory_grad_chunk``: 0 computes all ``K`` with one ``jax.vmap``; 1 one task at a time
    (``lax.map``), skipping tasks that are not old tasks yet; ``n > 1`` ``n`` tasks at a time.
    """
    memory = method_state.memory
    k = max(self.max_tasks - 1, 1)
    mask = memory_lib.old_tasks(memory, batch["task"][0], k)
    batches = memory_lib.task_batches(memory, k)
    grad = lambda b: self.memory_grad(params, batch_stats, b)  # noqa: E731
    if self.chunk == 0:
      grads = jax.vmap(grad)(batches)
    elif self.chunk == 1:
      zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
      grads = jax.lax.map(lambda bm: jax.lax.cond(bm[1], grad, lambda b: zeros, bm[0]), (batches, mask))
    else:
      grads = jax.lax.map(grad, batches, batch_size=min(self.chunk, k))
    return {"ref_grads": grads, "ref_mask": mask}


class AGEM(EpisodicMethod):
  """A-GEM (Chaudhry et al., ICLR 2019): project against one gradient on a reference batch drawn
  uniformly from the union of the old tasks' memories (``method.agem_ref_batch`` examples)."""

  default_grouping = "network"

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    ref = number(method_config, "agem_ref_batch", int, 1, default=256)
    self.ref_batch = min(ref, self.max_tasks * self.per_task)

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    return projection.agem(self.grouping)

  def step_args(self, method_state, params, batch_stats, batch, rng) -> dict:
    key = jax.random.fold_in(rng, 0x6167656D)  # independent of the key the loss uses
    ref = memory_lib.sample_union(method_state.memory, key, batch["task"][0], self.ref_batch)
    g = self.memory_grad(params, batch_stats, ref)
    return {"ref_grads": jax.tree_util.tree_map(lambda x: x[None], g),
            "ref_mask": jnp.any(ref["mask"] > 0)[None]}


class GEM(EpisodicMethod):
  """GEM (Lopez-Paz & Ranzato, NeurIPS 2017): one constraint per old task, the dual QP solved on the
  device (``method.gem_margin`` is the reference code's ``memory_strength``)."""

  default_grouping = "network"

  report_keys = projection_report.REPORT_KEYS

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.margin = number(method_config, "gem_margin", float, 0.0, default=0.5)
    self.max_iter = number(method_config, "gem_max_iter", int, 0, default=0) or default_max_iter(
        max(self.max_tasks - 1, 1))
    self.violation_tol = projection_report.default_violation_tol(jnp.float32)

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    return projection.gem(self.margin, self.grouping, num_tasks=self.max_tasks, max_iter=self.max_iter,
                          violation_tol=self.violation_tol)

  def step_args(self, method_state, params, batch_stats, batch, rng) -> dict:
    """The old tasks' reference gradients, and the task index the solver report is counted under."""
    return dict(super().step_args(method_state, params, batch_stats, batch, rng), task=batch["task"][0])

  def task_report(self, opt_state) -> dict:
    """The solver's per-task counters (:class:`lwcl.methods.gem_report.GemReportState`)."""
    state = projection_report.find_state(opt_state)
    return {} if state is None else state._asdict()

  def report_results(self, per_task: dict) -> dict:
    """``gem_solver``: the counters per task and in total (:func:`lwcl.methods.gem_report.summarize`)."""
    return {"gem_solver": projection_report.summarize(per_task, self.max_iter, self.violation_tol)}

  def report_warning(self, counters: dict) -> str | None:
    """A line when some step of the task did not converge or left a constraint violated."""
    return projection_report.warning(counters, self.max_iter, self.violation_tol)


class LGD(EpisodicMethod):
  """LGD (Tang et al., CVPR 2021): shared + task-specific decomposition of the old gradients, per layer by
  default (``method.grouping='network'`` is the paper's concatenated ablation). ``method.lgd_margin``,
  ``lgd_push`` and ``lgd_single_task_push`` select the authors' margin push
  (:func:`lwcl.methods.projection.project_lgd`).

  Raises (constructor):
    ConfigError: an ``lgd_*`` key out of range, ``lgd_push`` not ``sum``/``mean``, or
      ``lgd_single_task_push`` not a boolean.
  """

  default_grouping = "layer"

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.threshold = number(method_config, "lgd_threshold", float, 0.0, maximum=1.0, default=0.0)
    self.top_k = number(method_config, "lgd_top_k", int, 0, default=0)
    self.margin = number(method_config, "lgd_margin", float, 0.0, default=0.0)
    self.push = choice(method_config, "lgd_push", projection.LGD_PUSHES, default="sum")
    self.single_task_push = option(method_config, "lgd_single_task_push", default=False)
    if not isinstance(self.single_task_push, bool):
      raise ConfigError(f"method.lgd_single_task_push={self.single_task_push!r} is not True or False; fix "
                        "--config.method.lgd_single_task_push")

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    return projection.lgd(self.grouping, self.threshold, self.top_k, self.margin, self.push,
                          self.single_task_push)
