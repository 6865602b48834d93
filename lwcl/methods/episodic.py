"""The episodic-memory gradient-projection family (A-GEM, GEM, LGD: :mod:`lwcl.methods.agem`,
:mod:`lwcl.methods.gem`, :mod:`lwcl.methods.lgd`): its state and the shared method base.

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

Shared options (:attr:`EpisodicMethod.OPTIONS`): ``memory_per_task``, ``memory_grad_chunk``, ``grouping``;
each method adds its own.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from lwcl.core.model_fns import replica_max
from lwcl.core.options import Option
from lwcl.errors import ConfigError
from lwcl.methods import memory as memory_lib
from lwcl.methods import param_groups
from lwcl.methods.base import Method


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
  OPTIONS = (
      Option("method.memory_per_task", 256, "ring buffer per task, the last N examples seen (GEM: 256)",
             minimum=1),
      Option("method.memory_grad_chunk", 1, "old-task gradients n = the old tasks' slots only, n at a "
             "time | 0 = every slot in one vmap", minimum=0),
      Option("method.grouping", "auto", "parameter groups projected separately: auto | local_block | "
             f"{' | '.join(param_groups.GROUPINGS)} | tensors:N"))

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.per_task = self.options["memory_per_task"]
    self.chunk = self.options["memory_grad_chunk"]
    self.grouping = self._grouping(self.options["grouping"], fns)
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

    ``method.memory_grad_chunk``: 0 computes all ``K`` slots with one ``jax.vmap`` (a fixed amount of work at
    every step, also for the slots of tasks not seen yet, whose gradients the mask then drops); ``n >= 1``
    (default 1) computes the old tasks' slots only, ``n`` at a time (a ``jax.vmap`` over ``n`` slots inside an XLA
    while loop whose trip count is the old tasks' count, ``ceil(t / n)`` at task ``t``, taken over the
    replicas by :func:`lwcl.core.model_fns.replica_max` so that it stays a real loop under the replicas'
    vmap) and leaves zeros in the other slots. Every setting gives the same gradients up to rounding
    (``tests/methods/test_projection.py``); the per-slot work of ``n >= 1`` is ``t / K`` of ``0``'s.
    """
    memory = method_state.memory
    k = max(self.max_tasks - 1, 1)
    current = batch["task"][0]
    mask = memory_lib.old_tasks(memory, current, k)
    batches = memory_lib.task_batches(memory, k)
    grad = lambda b: self.memory_grad(params, batch_stats, b)  # noqa: E731
    if self.chunk == 0:
      return {"ref_grads": jax.vmap(grad)(batches), "ref_mask": mask}
    n = min(self.chunk, k)
    old = replica_max(jnp.clip(jnp.asarray(current, jnp.int32), 0, k))
    zeros = jax.tree_util.tree_map(lambda p: jnp.zeros((k,) + p.shape, p.dtype), params)  # a grad per slot

    def chunk(i, grads):
      # The last chunk starts at k - n at the latest: it may recompute slots of the previous one (the same
      # values), never read past the memory.
      start = jnp.minimum(i * n, k - n)
      part = jax.tree_util.tree_map(lambda x: jax.lax.dynamic_slice_in_dim(x, start, n), batches)
      if n == 1:  # one slot: the gradient of its batch as such (as lax.map computed it before this loop)
        part = jax.tree_util.tree_map(lambda g: g[None], grad(jax.tree_util.tree_map(lambda x: x[0], part)))
      else:
        part = jax.vmap(grad)(part)
      return jax.tree_util.tree_map(lambda g, p: jax.lax.dynamic_update_slice_in_dim(g, p, start, 0),
                                    grads, part)

    grads = jax.lax.fori_loop(0, (old + n - 1) // n, chunk, zeros)
    return {"ref_grads": grads, "ref_mask": mask}
