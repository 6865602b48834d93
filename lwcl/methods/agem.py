"""A-GEM, averaged gradient episodic memory (Chaudhry et al., ICLR 2019): project the gradient against one
reference gradient on a batch drawn from the old tasks' memories."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lwcl.core.options import Option
from lwcl.methods import memory as memory_lib
from lwcl.methods import projection
from lwcl.methods.episodic import EpisodicMethod


class AGEM(EpisodicMethod):
  """A-GEM (Chaudhry et al., ICLR 2019): project against one gradient on a reference batch drawn
  uniformly from the union of the old tasks' memories (``method.agem_ref_batch`` examples). State:
  :class:`~lwcl.methods.episodic.EpisodicState`."""

  default_grouping = "network"
  OPTIONS = EpisodicMethod.OPTIONS + (
      Option("method.agem_ref_batch", 256, "reference batch drawn from the union of the old tasks' memories",
             minimum=1),)

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.ref_batch = min(self.options["agem_ref_batch"], self.max_tasks * self.per_task)

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    return projection.agem(self.grouping)

  def step_args(self, method_state, params, batch_stats, batch, rng) -> dict:
    key = jax.random.fold_in(rng, 0x6167656D)  # independent of the key the loss uses
    ref = memory_lib.sample_union(method_state.memory, key, batch["task"][0], self.ref_batch)
    g = self.memory_grad(params, batch_stats, ref)
    return {"ref_grads": jax.tree_util.tree_map(lambda x: x[None], g),
            "ref_mask": jnp.any(ref["mask"] > 0)[None]}
