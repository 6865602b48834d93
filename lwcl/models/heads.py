"""Task heads: one Dense classifier per task slot, stored as one parameter array padded to ``max_tasks``."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype


class TaskHeads(nn.Module):
  """``num_heads`` linear classifiers in one ``[num_heads, D, output_dim]`` kernel.

  With one head every example uses it; otherwise example ``i`` uses head ``task[i]``. Keeping all heads in
  one array (padded to ``max_tasks``) gives the parameters one shape for the whole task stream, so a train
  step compiles once (docs/design.md, "Fixed shapes across tasks").

  Attributes:
    num_heads: 1 (shared head) or ``max_tasks`` (one head per task).
    output_dim: outputs per head.
    dtype: the matmul's computation dtype (``model.dtype``: float32 or bfloat16); the parameters are
      float32, and the logits are returned as float32 whatever ``dtype`` is, so every loss, softmax and
      stored logit downstream is float32.
  """
  num_heads: int
  output_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, task: jax.Array) -> jax.Array:
    """Args: ``x`` float ``[B, D]``; ``task`` int32 ``[B]``. Returns logits float32 ``[B, output_dim]``."""
    d = x.shape[-1]
    init = nn.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
    kernel = self.param("kernel", init, (self.num_heads, d, self.output_dim), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.num_heads, self.output_dim), jnp.float32)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    if self.num_heads == 1:
      return (x @ kernel[0] + bias[0]).astype(jnp.float32)
    logits = jnp.einsum("bd,hdo->bho", x, kernel) + bias[None]
    task = jnp.clip(task, 0, self.num_heads - 1)
    return jnp.take_along_axis(logits, task[:, None, None], axis=1)[:, 0].astype(jnp.float32)
