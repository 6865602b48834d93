"""The rehearsal family (ER, DER, DER++: :mod:`lwcl.methods.er`, :mod:`lwcl.methods.der`,
:mod:`lwcl.methods.derpp`): a replay buffer filled by reservoir sampling, its state and the shared base.

The buffer is one fixed-shape pytree in the method state (:class:`ReplayBuffer`): ``method.buffer_size``
slots of uint8 images, int32 labels and task ids, and, for DER and DER++, the float32 logits the network
gave each example when it was stored. Every function here is pure and traceable: the buffer is filled inside
the compiled train step (:meth:`ReplayMethod.after_step`, no host round trip), sampled inside it, works
under ``jax.vmap`` (seeds, orders and candidates as replicas) and is checkpointed with the run.

* **Reservoir sampling** (Vitter's algorithm R; Chaudhry et al., *On Tiny Episodic Memories in Continual
  Learning*, 2019, Sec. 4; Mammoth ``utils/buffer.py``, ``ReservoirSampling``): the ``n``-th example of the
  stream (0-based) goes to slot ``n`` while ``n < M``; after that to slot ``j``, ``j`` uniform in
  ``[0, n]``, when ``j < M``, else nowhere. Every example of the stream so far is then in the buffer with
  probability ``M / (n + 1)``. The buffer ends as if examples were inserted one at a time in minibatch
  order, as Mammoth's ``add_data`` loop does (:func:`reservoir_add` computes every slot at once).
* **Replay batches** (:func:`sample`): ``k`` examples drawn uniformly without replacement from the stored
  ones (Mammoth's ``get_data``: ``np.random.choice(min(seen, M), size, replace=False)``), as a batch in the
  runner's format with a ``mask`` (1 for a drawn example; 0 for padding while fewer than ``k`` are stored:
  Mammoth returns a shorter batch, which fixed shapes cannot).

Replay batches go through the model as the minibatch does (``fns.loss`` / ``fns.logits`` in train mode,
augmented when ``data.augment`` is on), so BatchNorm layers normalize them with their own batch
statistics; the running statistics follow the step's loss batch only (Mammoth's DER and DER++ also update
the running averages in their extra forward passes). In layer-wise ``local`` / ``greedy`` training DER's
and DER++'s terms are local (``fns.local_outputs``): the buffer keeps every local block head's logits of
the step that stored the example, and each block's head is matched, and trained on the second replay
batch, with the block fed the previous one's detached output, weighted as the mode's local losses.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import optax

from lwcl.core.options import Option
from lwcl.methods.base import Method

# Constants folded into the step's key: each random draw of a step gets its own stream.
INSERT_KEY, REPLAY_KEY, SECOND_REPLAY_KEY, AUGMENT_KEY = 0x72657376, 0x7265706C, 0x72657032, 0x61756731


@flax.struct.dataclass
class ReplayBuffer:
  """``M`` slots of examples filled by reservoir sampling.

  Attributes:
    images: uint8 ``[M, H, W, C]``; labels, tasks: int32 ``[M]``;
    logits: float32 ``[M, O]`` (the network's outputs when the example was stored: DER, DER++; in
      layer-wise local training ``[M, K * O]``, every local block head's), or None when the method keeps
      none;
    seen: int32 scalar, examples of the stream offered to the buffer so far (slot ``i`` holds an example
      iff ``i < min(seen, M)``).
  """
  images: jax.Array
  labels: jax.Array
  tasks: jax.Array
  logits: jax.Array
  seen: jax.Array

  @property
  def size(self) -> int:
    return self.labels.shape[0]

  def stored(self) -> jax.Array:
    """int32 scalar: the number of slots holding an example, ``min(seen, M)``."""
    return jnp.minimum(self.seen, self.size)


def create(size: int, image_shape: tuple, logit_dim: int = 0) -> ReplayBuffer:
  """An empty buffer of ``size`` slots for images of ``image_shape`` (H, W, C), with ``logit_dim`` logits
  per example (0: none, ``logits`` None).

  Raises:
    ValueError: ``size`` below 1.
  """
  if size < 1:
    raise ValueError(f"a replay buffer needs at least one slot, got {size}")
  return ReplayBuffer(images=jnp.zeros((size,) + tuple(image_shape), jnp.uint8),
                      labels=jnp.zeros((size,), jnp.int32), tasks=jnp.zeros((size,), jnp.int32),
                      logits=jnp.zeros((size, logit_dim), jnp.float32) if logit_dim else None,
                      seen=jnp.zeros((), jnp.int32))


def reservoir_add(buffer: ReplayBuffer, key: jax.Array, images, labels, tasks, logits=None) -> ReplayBuffer:
  """The buffer after offering it a minibatch, one example at a time in minibatch order, by reservoir
  sampling.

  Example ``i`` of the minibatch is the stream's ``n = seen + i``-th and draws ``j`` with
  ``fold_in(key, i)``; its slot depends on ``n`` and ``j`` only, not on the buffer, so every slot is
  computed at once and written in one scatter, where an example whose slot a later example of the same
  minibatch also takes is dropped: the result of inserting them one at a time (Mammoth's ``add_data``
  loop), without a loop of ``B`` dependent updates in the compiled step.

  Args:
    buffer: the buffer; key: a PRNG key.
    images: uint8 ``[B, H, W, C]``; labels, tasks: int32 ``[B]``; logits: float32 ``[B, O]`` when the
      buffer keeps logits, else ignored.
  Returns:
    The buffer with ``seen`` advanced by ``B``.
  """
  M = buffer.size
  images, labels, tasks = jnp.asarray(images), jnp.asarray(labels), jnp.asarray(tasks)
  index = jnp.arange(labels.shape[0])
  n = buffer.seen + index  # each example's position in the stream
  j = jax.vmap(lambda i, ni: jax.random.randint(jax.random.fold_in(key, i), (), 0, ni + 1))(index, n)
  slot = jnp.where(n < M, n, jnp.where(j < M, j, M))  # M: not stored (dropped by the scatter)
  overwritten = jnp.any((slot[None, :] == slot[:, None]) & (index[None, :] > index[:, None]), axis=1)
  slot = jnp.where(overwritten, M, slot)
  put = lambda stored, new: stored.at[slot].set(new.astype(stored.dtype), mode="drop")  # noqa: E731
  buffer = buffer.replace(images=put(buffer.images, images), labels=put(buffer.labels, labels),
                          tasks=put(buffer.tasks, tasks), seen=buffer.seen + labels.shape[0])
  if buffer.logits is not None:
    buffer = buffer.replace(logits=put(buffer.logits, jnp.asarray(logits)))
  return buffer


def sample(buffer: ReplayBuffer, key: jax.Array, k: int) -> dict:
  """``k`` stored examples drawn uniformly without replacement (fewer stored: all of them, then padding).

  Returns:
    ``{'image': uint8 [k, H, W, C], 'label': int32 [k], 'task': int32 [k], 'mask': float32 [k]}``
    (``mask`` 0 on padding rows, which repeat a stored or empty slot), and ``'logits'`` float32 ``[k, O]``
    when the buffer keeps logits.
  Raises:
    ValueError: ``k`` is not between 1 and the buffer's size.
  """
  M = buffer.size
  if not 1 <= k <= M:
    raise ValueError(f"a replay batch of {k} from a buffer of {M} slots; use 1 <= k <= {M}")
  stored = buffer.stored()
  score = jnp.where(jnp.arange(M) < stored, jax.random.uniform(key, (M,)), 2.0)  # empty slots last
  take = jnp.argsort(score)[:k]
  out = {"image": buffer.images[take], "label": buffer.labels[take], "task": buffer.tasks[take],
         "mask": (jnp.arange(k) < stored).astype(jnp.float32)}
  if buffer.logits is not None:
    out["logits"] = buffer.logits[take]
  return out


def masked_mse(outputs: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean squared error over the elements of the rows with ``mask`` 1 (``torch.nn.functional.mse_loss``
  with its default ``reduction='mean'`` on the stored rows, as DER's ``F.mse_loss(buf_outputs,
  buf_logits)``): float32 scalar, 0 when no row is stored.

  Args:
    outputs, targets: float32 ``[k, O]``; mask: float32 ``[k]``.
  """
  per_row = jnp.sum(jnp.square(outputs - targets), axis=-1)
  return jnp.sum(per_row * mask) / jnp.maximum(jnp.sum(mask) * outputs.shape[-1], 1.0)


@flax.struct.dataclass
class ReplayState:
  """State of ER, DER and DER++: the replay buffer, and the float hyper-parameters a sweep may give each
  replica (rule 1 of :mod:`lwcl.methods.base`): ``alpha`` (DER, DER++) and ``beta`` (DER++), float32
  scalars (0 where the method has none)."""
  buffer: ReplayBuffer
  alpha: jax.Array
  beta: jax.Array


class ReplayMethod(Method):
  """Shared machinery of the rehearsal methods: the buffer in the method state (:class:`ReplayState`),
  filled with every minibatch by reservoir sampling after the step (:meth:`after_step`), and replay batches
  of ``method.replay_batch`` examples (0: the minibatch's size, Mammoth's default ``minibatch_size``).

  Raises (constructor):
    ConfigError: a method key out of range.
  """

  OPTIONS = (
      Option("method.buffer_size", 500, "replay buffer slots, filled by reservoir sampling over the stream "
             "(the literature's 200 / 500 / 5120)", minimum=1),
      Option("method.replay_batch", 0, "examples per replay batch (0 = the training minibatch's size)",
             minimum=0),
  )
  keeps_logits = False  # DER and DER++ store the network's outputs with each example

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.buffer_size = self.options["buffer_size"]
    self.image_shape = tuple(scenario.image_shape)
    self.heads = fns.local_blocks if fns.is_local else 1  # the outputs of fns.local_outputs
    self.output_dim = scenario.output_dim
    self.logit_dim = self.heads * scenario.output_dim if self.keeps_logits else 0

  def init_state(self, params, batch_stats) -> ReplayState:
    del params, batch_stats
    return ReplayState(buffer=create(self.buffer_size, self.image_shape, self.logit_dim),
                       alpha=jnp.asarray(self.options.get("der_alpha", 0.0), jnp.float32),
                       beta=jnp.asarray(self.options.get("der_beta", 0.0), jnp.float32))

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    """The identity: rehearsal acts through the loss (:meth:`train_batch`, :meth:`loss_term`)."""
    return optax.with_extra_args_support(optax.identity())

  def replay(self, method_state: ReplayState, batch: dict, rng, salt: int) -> dict:
    """A replay batch (:func:`sample`) of ``method.replay_batch`` examples (the minibatch's size when 0, at
    most the buffer's), drawn with ``fold_in(rng, salt)``."""
    k = self.options["replay_batch"] or batch["label"].shape[0]
    return sample(method_state.buffer, jax.random.fold_in(rng, salt), min(k, self.buffer_size))

  def replay_outputs(self, params, batch_stats, replayed: dict, rng, salt: int) -> list:
    """The outputs a term trains through on a replay batch (``fns.local_outputs``: the network's logits,
    or every local block head's in local training), each float32 ``[k, O]``, in train mode as the
    minibatch's (augmented with ``fold_in(rng, salt)`` when augmentation is on)."""
    inputs = {k: v for k, v in replayed.items() if k != "logits"}
    return self.fns.local_outputs(params, batch_stats, inputs, train=True, rng=jax.random.fold_in(rng, salt))

  def stored_logits(self, replayed: dict) -> jax.Array:
    """The stored logits of a replay batch per output of :meth:`replay_outputs`: float32 ``[heads, k, O]``."""
    k = replayed["logits"].shape[0]
    return jnp.moveaxis(replayed["logits"].reshape(k, self.heads, self.output_dim), 1, 0)

  def after_step(self, method_state: ReplayState, params_before, params_after, grads, batch):
    """The minibatch (its images as given, before augmentation; with the logits of this step's forward
    pass when the method keeps them: in local training every local block head's, recomputed with the
    parameters, statistics and augmentation of that pass) offered to the buffer by reservoir sampling."""
    del params_after, grads
    logits = batch["logits"]
    if self.keeps_logits and self.heads > 1:
      logits = jnp.concatenate(self.fns.local_outputs(params_before, batch["batch_stats"], batch, train=True,
                                                      rng=batch["rng"]), axis=-1)
    buffer = reservoir_add(method_state.buffer, jax.random.fold_in(batch["rng"], INSERT_KEY), batch["image"],
                           batch["label"], batch["task"], logits)
    return method_state.replace(buffer=buffer)
