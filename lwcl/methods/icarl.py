"""iCaRL, incremental classifier and representation learning (Rebuffi et al., CVPR 2017; Mammoth
``models/icarl.py``, ``utils/buffer.py``: ``fill_buffer``, ``icarl_replay``): a fixed memory of ``K``
exemplars chosen by herding, a binary cross-entropy with distillation on the current data and the
exemplars, and the nearest-mean-of-exemplars (NME) classifier at evaluation.

* **Exemplar memory** (:class:`ICaRLState`; paper Alg. 4 and 5): after task ``t``, with ``n`` classes
  seen, every class keeps ``m = K // n`` exemplars: the classes seen before are cut to the first ``m`` of
  their herding order, and each class of task ``t`` gets the first ``m`` of its herding order
  (:func:`herding`) over its training examples (all of them when it has fewer). Herding picks, one at a
  time, the example whose addition brings the mean of the picked features closest to the class mean, over
  the L2-normalized features (:func:`normalized`) of the network after the task in inference mode, on the
  images as stored, without picking an example twice (Mammoth's ``feats[idx_min] += 1e6``). The memory is
  one fixed-shape block of ``K`` slots, class ``s`` (in the order seen) in slots ``[s m, (s + 1) m)``.
* **Loss** (paper Alg. 3; Mammoth's ``get_loss``): the mean over rows and over every output ``o`` of
  ``BCE(sigmoid(z_o), q_o)``, targets ``q_o`` the old network's (the network after the previous task)
  sigmoid outputs for the classes of the finished tasks and one-hot labels for the others, on the
  augmented images the new network sees, the old network in inference mode (:func:`icarl_loss`). It
  replaces the cross-entropy (:attr:`~lwcl.methods.base.Method.replaces_loss`); in layer-wise ``local`` /
  ``greedy`` training it replaces each block's local loss by that block head's (an lwcl extension: the
  paper trains end to end), the NME reading the network's features as in ``backprop`` mode.
* **NME** (paper Alg. 1; Mammoth's ``forward`` / ``compute_class_means``): each class's mean of the
  normalized features of its exemplars (averaged with the mean over the horizontally flipped exemplars when
  the run's augmentation flips, ``data.augment.horizontal_flip``), normalized; the prediction is the class
  whose mean is nearest to the normalized feature of the example (:func:`nme_scores`). The means are
  computed in every evaluation batch with the network being evaluated (:meth:`ICaRL.eval_scores`: a forward
  pass over the ``K`` exemplars, two with flips), as Mammoth recomputes them before predicting. Before the
  first task ends no class has exemplars, and the network's outputs predict (the initial accuracies are the
  untrained network's, as for every method). In a class-incremental stream, tasks whose classes have no
  exemplar yet get accuracy 0 (task-incremental heads: their head predicts, below): the future tasks, and
  the current one in evaluations during a task (``eval.every_epoch``, ``eval.lca_batches``; Mammoth makes
  none for iCaRL). FWT, which compares the accuracy on a task before it is trained with the initial one, is
  then ``-b`` and says nothing about iCaRL.

What differs from Mammoth:

* **Rehearsal batches.** Mammoth (and the paper) trains each task on the union of its data and the
  exemplars, shuffled together (``icarl_replay``): ``(N + S) / B`` steps per epoch, a batch holding about
  ``B S / (N + S)`` exemplars (``N`` the task's examples, ``S`` the exemplars). Here each minibatch of the
  task (``N / B`` steps per epoch, as every method) is joined by ``min(B, K)`` exemplars drawn uniformly
  without replacement (:meth:`ICaRL.train_batch`), each weighted ``S B / (N drawn)`` in the loss, so that
  the exemplars' share of every step's loss is, in expectation, their share of a union batch, and each
  exemplar weighs once per epoch. The joined rows' BatchNorm statistics are those of the joined batch. ``N``
  is taken per stream position from the scenario the method was built with (a task order switched by
  :meth:`lwcl.engine.build.Setup.with_task_order` keeps it, so there it is exact only when the orders'
  tasks have equal sizes at each position).
* **Weight decay.** Mammoth adds ``1e-5 * sum(p^2)`` to the loss (``opt_wd``) and turns the optimizer's
  off; here it is ``optimizer.weight_decay`` (coupled, PyTorch's: ``2e-5`` is Mammoth's).
* **Flip means** only when the run flips its training images (Mammoth always flips; its iCaRL runs are on
  CIFAR, whose training flips).
* **Task-incremental heads** (one head per task, or one masked to each task's classes; an lwcl extension:
  Mammoth's ``task-il`` figure is its class-incremental run evaluated with the other tasks' outputs masked,
  which lwcl records too, from the NME scores, in every class-incremental run's Task-IL matrix). A class
  is a (task, label) pair: each has its own exemplars (the memory as above, the pairs in the order seen)
  and its own mean, and an example of task ``t`` gets the nearest mean among task ``t``'s classes (an
  example whose task has no exemplars yet, the current or a future one, its head's logits). The loss is
  the binary cross-entropy over the outputs of the heads of the tasks seen (the finished ones and the
  current one; with masked heads, each task's classes), targets the old network's sigmoid outputs of the
  finished tasks' heads and one-hot labels on the current task's head (0 there for an exemplar row, whose
  label is on its own task's head), averaged over those outputs: the class-incremental loss with the
  heads' outputs side by side, as LwF distills each finished head (:mod:`lwcl.methods.lwf`).
* **Scenarios refused**: domain-incremental streams and class-incremental ones whose tasks share classes
  (iCaRL's loss tells a task's new classes, learned with one-hot targets, from the old ones, distilled; in
  such a stream a class is both; Mammoth's iCaRL declares ``class-il`` and ``task-il`` only), ``K`` below
  one exemplar per class, and ``layerwise.readouts``.
"""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lwcl.core.model_fns import MASKED_LOGIT, task_masks
from lwcl.core.options import Option
from lwcl.errors import ConfigError
from lwcl.methods.base import Method
from lwcl.methods.importance import copy_tree

EXEMPLAR_KEY = 0x69636172  # folded into the step's key for the exemplar draw
CHUNK = 512  # examples per forward pass over the exemplars or a task's data


@flax.struct.dataclass
class ICaRLState:
  """State of iCaRL.

  Attributes:
    images: uint8 ``[K, H, W, C]``, labels: int32 ``[K]`` (-1: an empty slot), tasks: int32 ``[K]`` (the
      stream position of the exemplar's task): the exemplars, class ``s`` (in the order seen) in slots
      ``[s m, (s + 1) m)``, in herding order, ``m = K // classes``.
    classes: int32 scalar, the classes seen (of the finished tasks; with task-incremental heads the
      (task, label) pairs).
    past: float32 ``[O]``, 1 for the outputs of the classes of the finished tasks (distilled); with
      task-incremental heads ``[max_tasks]``, 1 for the finished tasks (whose heads are distilled).
    task_sizes: float32 ``[max_tasks]``, the training examples of each stream position (``N``).
    old_params, old_batch_stats: the network after the previous task (copies; zeros before it ends).
  """
  images: jax.Array
  labels: jax.Array
  tasks: jax.Array
  classes: jax.Array
  past: jax.Array
  task_sizes: jax.Array
  old_params: object
  old_batch_stats: object


def normalized(x: jax.Array) -> jax.Array:
  """Rows of ``x`` ``[N, F]`` divided by their L2 norm (a zero row stays zero)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnums=2)
def herding(features: jax.Array, count, size: int) -> jax.Array:
  """The first ``min(count, size)`` picks of herding (paper Alg. 4) over ``features`` ``[n, F]``: pick
  ``k`` (0-based) is ``argmin_i || mu - (f_i + sum_{j<k} f_{p_j}) / (k + 1) ||`` over the examples not
  picked yet, ``mu`` the mean of ``features``. Returns int32 ``[size]``, the picks in order, then -1.
  ``count`` may be traced (and batched)."""
  mean = jnp.mean(features, axis=0)

  def pick(k, carry):
    picks, total, taken = carry
    cost = jnp.linalg.norm(mean - (features + total) / (k + 1).astype(features.dtype), axis=1)
    i = jnp.argmin(jnp.where(taken, jnp.inf, cost)).astype(jnp.int32)
    return picks.at[k].set(i), total + features[i], taken.at[i].set(True)

  init = (jnp.full((size,), -1, jnp.int32), jnp.zeros_like(mean), jnp.zeros(features.shape[:1], bool))
  return jax.lax.fori_loop(0, jnp.minimum(count, size), pick, init)[0]


@jax.jit
def cut(images, labels, tasks, classes, m_old, m_new):
  """The memory with each of the ``classes`` seen classes cut from ``m_old`` to its first ``m_new``
  exemplars (``m_new <= m_old``), class ``s`` moved to slots ``[s m_new, (s + 1) m_new)``; the slots after
  them empty."""
  i = jnp.arange(labels.shape[0])
  s, j = i // jnp.maximum(m_new, 1), i % jnp.maximum(m_new, 1)
  keep = (s < classes) & (j < m_new)
  src = jnp.where(keep, s * m_old + j, 0)
  return (jnp.where(keep[:, None, None, None], images[src], 0), jnp.where(keep, labels[src], -1),
          jnp.where(keep, tasks[src], 0))


@jax.jit
def place(images, labels, tasks, class_images, picks, first, m, label, task):
  """The memory with the picked examples of one class (``class_images[picks[j]]``, ``j < m``, ``picks[j] >=
  0``) in slots ``first + j``."""
  j = jnp.arange(picks.shape[0])
  slot = jnp.where((picks >= 0) & (j < m), first + j, labels.shape[0])  # K: dropped
  return (images.at[slot].set(class_images[jnp.maximum(picks, 0)], mode="drop"),
          labels.at[slot].set(label, mode="drop"), tasks.at[slot].set(task, mode="drop"))


def class_means(features, labels, num_classes: int, flipped=None):
  """Each class's mean of the normalized exemplar features ``features`` ``[K, F]`` (the mean of it and of
  the flipped exemplars' ``flipped`` when given), normalized: ``(means [O, F], has [O] bool)``, ``has``
  False for a class without exemplars (``labels`` int32 ``[K]``, -1 for none)."""
  onehot = (labels[:, None] == jnp.arange(num_classes)).astype(features.dtype)
  count = jnp.sum(onehot, axis=0)
  means = onehot.T @ features / jnp.maximum(count, 1.0)[:, None]
  if flipped is not None:
    means = (means + onehot.T @ flipped / jnp.maximum(count, 1.0)[:, None]) / 2
  return normalized(means), count > 0


def nme_scores(features, means, has):
  """``-||f / |f| - mu_c||^2`` ``[B, O]`` for ``features`` ``[B, F]`` and class means ``means`` ``[O, F]``,
  ``MASKED_LOGIT`` for the classes without exemplars (``has`` False): the argmax is the nearest mean."""
  f = normalized(features)
  d = jnp.sum(jnp.square(f[:, None, :] - means[None, :, :]), axis=-1)
  return jnp.where(has, -d, MASKED_LOGIT)


def icarl_loss(logits, old_logits, labels, past, weights, outputs=None):
  """The weighted mean over rows of the mean over outputs of the binary cross-entropy of
  ``sigmoid(logits)`` against targets ``sigmoid(old_logits)`` on the ``past`` outputs and one-hot
  ``labels`` on the others (Mammoth's ``F.binary_cross_entropy_with_logits(outputs, comb_targets)``).

  Args:
    logits, old_logits: float32 ``[B, O]``; labels: int32 ``[B]``; past: float32 ``[O]``; weights:
      float32 ``[B]``; outputs: bool ``[O]``, the outputs the mean is over (default: all; task-incremental
      heads side by side: those of the tasks seen).
  """
  targets = jnp.where(past > 0, jax.nn.sigmoid(jax.lax.stop_gradient(old_logits)),
                      jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype))
  bce = optax.sigmoid_binary_cross_entropy(logits, targets)
  if outputs is None:
    per_row = jnp.mean(bce, axis=-1)
  else:
    per_row = jnp.sum(jnp.where(outputs, bce, 0.0), axis=-1) / jnp.maximum(jnp.sum(outputs), 1)
  return jnp.sum(per_row * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


class ICaRL(Method):
  """iCaRL: herding exemplars in a memory of ``method.icarl_memory`` slots, the binary cross-entropy with
  distillation on each minibatch joined by exemplars, and the nearest mean of exemplars at evaluation
  (module docstring). State: :class:`ICaRLState`.

  Raises (constructor):
    ConfigError: a domain-incremental stream, or a class-incremental one whose tasks share classes, fewer
      memory slots than classes (task-incremental heads: (task, label) pairs), or ``layerwise.readouts``.
  """

  OPTIONS = (
      Option("method.icarl_memory", 500, "exemplars in all, K (m = K // classes seen per class, chosen by "
             "herding; the literature's 200 / 500 / 2000)", minimum=1),)
  replaces_loss = True

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    # task-incremental heads: one per task, or one masked to each task's classes; a class is a (task, label)
    self.per_task = scenario.num_heads > 1 or not np.all(scenario.label_masks)
    per_task_classes = [set(np.unique(np.asarray(t.train.labels)).tolist()) for t in scenario.tasks]
    if not self.per_task:
      seen = set()
      for classes in per_task_classes:
        if classes & seen:
          raise ConfigError("method.name=icarl learns new classes in every task (one-hot targets) and distills the "
                            f"old ones, but two tasks share classes ({scenario.incremental}-incremental); use "
                            "--config.scenario.incremental=class (new classes per task) or task")
        seen |= classes
    total = sum(len(c) for c in per_task_classes)
    self.memory = self.options["icarl_memory"]
    if self.memory < total:
      what = "(task, label) classes" if self.per_task else "classes"
      raise ConfigError(f"method.icarl_memory={self.memory} holds fewer exemplars than the stream's {total} {what}; "
                        f"use --config.method.icarl_memory={total} or more")
    self.output_dim, self.max_tasks = scenario.output_dim, scenario.max_tasks
    self.image_shape = tuple(scenario.image_shape)
    sizes = np.zeros((scenario.max_tasks,), np.float32)
    sizes[:scenario.num_tasks] = [len(t.train) for t in scenario.tasks]
    self.task_sizes = sizes
    self.flip = bool(getattr(fns.preprocess, "horizontal_flip", False))
    self._features = jax.jit(lambda p, s, x: normalized(fns.features(p, s, {"image": x})))

  def init_state(self, params, batch_stats) -> ICaRLState:
    zeros = lambda t: jax.tree.map(jnp.zeros_like, t)  # noqa: E731
    K = self.memory
    return ICaRLState(images=jnp.zeros((K,) + self.image_shape, jnp.uint8), labels=jnp.full((K,), -1, jnp.int32),
                      tasks=jnp.zeros((K,), jnp.int32), classes=jnp.zeros((), jnp.int32),
                      past=jnp.zeros((self.max_tasks if self.per_task else self.output_dim,), jnp.float32),
                      task_sizes=jnp.asarray(self.task_sizes),
                      old_params=zeros(params), old_batch_stats=zeros(batch_stats))

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    """The identity: iCaRL acts through the loss and the memory."""
    return optax.with_extra_args_support(optax.identity())

  def train_batch(self, method_state: ICaRLState, batch, rng):
    """The minibatch joined by ``min(B, K)`` exemplars drawn uniformly without replacement, each weighted
    ``S B / (N drawn)`` in ``mask`` (``S`` stored, ``N`` the task's examples; 0 for padding while fewer are
    stored)."""
    B, K = batch["label"].shape[0], self.memory
    k = min(B, K)
    stored = jnp.sum(method_state.labels >= 0)
    score = jnp.where(method_state.labels >= 0, jax.random.uniform(jax.random.fold_in(rng, EXEMPLAR_KEY), (K,)), 2.0)
    take = jnp.argsort(score)[:k]  # stored slots first, in random order
    drawn = jnp.minimum(stored, k)
    n = jnp.maximum(method_state.task_sizes[batch["task"][0]], 1.0)
    weight = stored.astype(jnp.float32) * B / (n * jnp.maximum(drawn, 1).astype(jnp.float32))
    exemplars = {"image": method_state.images[take], "label": jnp.maximum(method_state.labels[take], 0),
                 "task": method_state.tasks[take]}
    joined = {}
    for key, value in batch.items():  # every key of the minibatch (those exemplars lack repeat its first row)
      extra = exemplars.get(key)
      if extra is None:
        extra = jnp.broadcast_to(value[:1], (k,) + value.shape[1:])
      joined[key] = jnp.concatenate([value, extra.astype(value.dtype)])
    rows = jnp.where(jnp.arange(k) < drawn, weight, 0.0)
    joined["mask"] = jnp.concatenate([batch.get("mask", jnp.ones((B,), jnp.float32)), rows])
    return joined

  def loss_term(self, method_state: ICaRLState, params, batch_stats, batch, logits, rng):
    """:func:`icarl_loss` (the whole loss: :attr:`replaces_loss`), the old network's outputs on the images
    this step's network sees (augmented with the step's key), in inference mode. In layer-wise ``local`` /
    ``greedy`` training it replaces every local loss: each local block head's :func:`icarl_loss` against the
    old network's same head, the block fed the previous one's detached output (``fns.local_outputs``),
    weighted as the local losses (``fns.local_weights``). With task-incremental heads, every head's outputs
    side by side (:meth:`_heads_loss`)."""
    state = method_state
    if self.per_task:
      return self._heads_loss(state, params, batch_stats, batch, rng)
    old = self.fns.local_outputs(state.old_params, state.old_batch_stats, batch, train=False, rng=rng, augment=True)
    new = self.fns.local_outputs(params, batch_stats, batch, train=True, rng=rng) if self.fns.is_local else [logits]
    return self.fns.local_sum(batch, [icarl_loss(n, o, batch["label"], state.past, batch["mask"])
                                      for n, o in zip(new, old)])

  def _heads_loss(self, state: ICaRLState, params, batch_stats, batch, rng):
    """The loss with task-incremental heads: every head's outputs (old and new network, each local output)
    on ``batch``, vmapped over the task slots (the trunk is not batched: it does not read the task), side by
    side as ``[B, max_tasks * O]``; targets one-hot at ``task * O + label`` (an exemplar row's on its own,
    finished task's head, distilled there), the mean over the outputs of the finished tasks' heads and the
    current one's (``batch["task"][0]``, the minibatch's task), masked heads over their task's classes."""
    S, O = self.max_tasks, self.output_dim

    def head(t):  # each local output of head t, old and new network: [L, B, O] each
      b = {**batch, "task": jnp.full_like(batch["task"], t)}
      old = self.fns.local_outputs(state.old_params, state.old_batch_stats, b, train=False, rng=rng, augment=True)
      new = self.fns.local_outputs(params, batch_stats, b, train=True, rng=rng)
      return jnp.stack(old), jnp.stack(new)

    old, new = jax.vmap(head, out_axes=2)(jnp.arange(S))  # [L, B, S, O]
    flat = lambda z: z.reshape(z.shape[:2] + (S * O,))  # noqa: E731
    masks = task_masks(self.fns.label_masks, jnp.arange(S))  # [S, O]
    seen = (state.past > 0) | (jnp.arange(S) == batch["task"][0])
    past = (state.past[:, None] * masks).reshape(-1)
    outputs = (seen[:, None] & masks).reshape(-1)
    labels = batch["task"] * O + batch["label"]
    return self.fns.local_sum(batch, [icarl_loss(n, o, labels, past, batch["mask"], outputs)
                                      for n, o in zip(flat(new), flat(old))])

  def exemplar_means(self, method_state: ICaRLState, params, batch_stats):
    """:func:`class_means` of the memory's exemplars under ``params`` (inference mode, flipped too when the
    run flips its images): ``(means [O, F], has [O])``; with task-incremental heads one per (task, label),
    ``task * O + label``: ``[max_tasks * O, F]`` and ``[max_tasks * O]``."""
    images, labels = method_state.images, method_state.labels
    classes = self.output_dim
    if self.per_task:
      labels = jnp.where(labels >= 0, method_state.tasks * self.output_dim + labels, -1)
      classes *= self.max_tasks

    def features(x):
      return jnp.concatenate([self.fns.features(params, batch_stats, {"image": x[i:i + CHUNK]})
                              for i in range(0, x.shape[0], CHUNK)])

    flipped = normalized(features(images[:, :, ::-1])) if self.flip else None
    return class_means(normalized(features(images)), labels, classes, flipped)

  def eval_scores(self, method_state: ICaRLState, params, batch_stats, batch):
    """:func:`nme_scores` over the classes with exemplars, or the network's logits while no class has
    any; with task-incremental heads, each example's among its task's classes, or its head's logits while
    its task has no exemplars."""
    means, has = self.exemplar_means(method_state, params, batch_stats)
    scores = nme_scores(self.fns.features(params, batch_stats, batch), means, has)
    logits = self.fns.logits(params, batch_stats, batch, train=False)[0]
    if not self.per_task:
      return jnp.where(jnp.any(has), scores, logits)
    O = self.output_dim
    of_task = batch["task"][:, None] * O + jnp.arange(O)  # [B, O]: the example's task's (task, label) classes
    scores, has = jnp.take_along_axis(scores, of_task, axis=-1), has[of_task]
    return jnp.where(jnp.any(has, axis=-1, keepdims=True), scores, logits)

  def task_features(self, params, batch_stats, images) -> jax.Array:
    """Normalized features ``[N, F]`` of ``images`` (uint8 ``[N, H, W, C]``, NumPy or lazy) in inference
    mode, in chunks of :data:`CHUNK` (the last padded, so one program serves them all)."""
    out = []
    for i in range(0, len(images), CHUNK):
      x = np.asarray(images[i:i + CHUNK])
      pad = CHUNK - x.shape[0]
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
      out.append(self._features(params, batch_stats, x)[..., :CHUNK - pad, :])
    return jnp.concatenate(out, axis=-2)

  def end_task(self, method_state: ICaRLState, params, batch_stats, task, data):
    """The memory cut to ``m = K // classes`` per class and each new class's herding exemplars added (with
    task-incremental heads, each of the task's (task, label) classes); the network kept as the old one, the
    task's classes (task-incremental heads: the task) marked past."""
    labels = np.asarray(data.labels)
    classes = np.unique(labels)
    K = self.memory
    n_old = method_state.classes
    n_new = n_old + len(classes)
    m_old, m_new = K // jnp.maximum(n_old, 1), K // n_new
    images, kept, tasks = cut(method_state.images, method_state.labels, method_state.tasks, n_old, m_old, m_new)
    features = self.task_features(params, batch_stats, data.images)
    for s, c in enumerate(classes):
      rows = np.flatnonzero(labels == c)
      picks = herding(jnp.take(features, jnp.asarray(rows), axis=-2), m_new, min(len(rows), K))
      images, kept, tasks = place(images, kept, tasks, np.asarray(data.images[rows]), picks, (n_old + s) * m_new,
                                  m_new, jnp.int32(c), jnp.int32(task))
    if self.per_task:
      past = jnp.asarray(method_state.past).at[task].set(1.0)
    else:
      finished = np.zeros((self.output_dim,), np.float32)
      finished[classes] = 1.0
      past = jnp.maximum(method_state.past, jnp.asarray(finished))
    return method_state.replace(images=images, labels=kept, tasks=tasks, classes=n_new, past=past,
                                old_params=copy_tree(params), old_batch_stats=copy_tree(batch_stats))
