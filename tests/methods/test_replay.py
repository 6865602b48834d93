"""Rehearsal (lwcl.methods.replay, er, der, derpp): the reservoir buffer against a NumPy reference and its
sampling law, replay batches, and each method's loss against an independent computation of its equation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl.core.model_fns import cross_entropy
from lwcl.engine.build import Setup
from lwcl.methods import replay

from helpers import small_config


def _stream(n, shape=(2, 2, 1)):
  """``n`` examples whose label is their position in the stream (and image, task derived from it)."""
  labels = np.arange(n, dtype=np.int32)
  images = np.broadcast_to((labels % 251).astype(np.uint8)[:, None, None, None], (n,) + shape).copy()
  return images, labels, (labels // 7).astype(np.int32)


def _reference(size, key, batches):
  """Vitter's algorithm R in NumPy, one example at a time, with the same draws ``j`` as lwcl's: slot ``n``
  while ``n < M``, then slot ``j ~ U[0, n]`` if ``j < M`` (Mammoth's ``ReservoirSampling``)."""
  slots, seen = [None] * size, 0
  for b, labels in enumerate(batches):
    k = jax.random.fold_in(key, b)
    for i, label in enumerate(labels):
      j = int(jax.random.randint(jax.random.fold_in(k, i), (), 0, seen + 1))
      if seen < size:
        slots[seen] = int(label)
      elif j < size:
        slots[j] = int(label)
      seen += 1
  return slots, seen


@pytest.mark.parametrize("size,batch,steps", [(5, 3, 9), (8, 8, 4), (4, 10, 3), (30, 4, 5)])
def test_reservoir_insert_matches_a_numpy_reference(size, batch, steps):
  images, labels, tasks = _stream(batch * steps)
  key = jax.random.PRNGKey(size * 100 + batch)
  add = jax.jit(replay.reservoir_add)
  buf = replay.create(size, images.shape[1:])
  for b in range(steps):
    rows = slice(b * batch, (b + 1) * batch)
    buf = add(buf, jax.random.fold_in(key, b), images[rows], labels[rows], tasks[rows])
  want, seen = _reference(size, key, [labels[b * batch:(b + 1) * batch] for b in range(steps)])
  assert int(buf.seen) == seen == batch * steps
  stored = int(buf.stored())
  assert stored == min(seen, size)
  got = np.asarray(buf.labels)[:stored].tolist()
  assert got == want[:stored]
  np.testing.assert_array_equal(np.asarray(buf.images)[:stored, 0, 0, 0], np.asarray(got) % 251)
  np.testing.assert_array_equal(np.asarray(buf.tasks)[:stored], np.asarray(got) // 7)


def test_every_example_of_the_stream_is_kept_with_probability_m_over_n():
  """The reservoir's law: after a stream of N examples each is in the buffer with probability M/N (here
  M = 5, N = 20: 0.25), whatever its position; 4000 independent streams, 5 standard errors."""
  size, n, trials = 5, 20, 4000
  images, labels, tasks = _stream(n)

  def one(key):
    buf = replay.create(size, images.shape[1:])
    for b in range(4):  # 4 minibatches of 5
      rows = slice(5 * b, 5 * b + 5)
      buf = replay.reservoir_add(buf, jax.random.fold_in(key, b), images[rows], labels[rows], tasks[rows])
    return buf.labels

  kept = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), trials)))
  assert all(len(set(row)) == size for row in kept.tolist())  # never the same example twice
  freq = np.array([(kept == i).any(axis=1).mean() for i in range(n)])
  se = np.sqrt(0.25 * 0.75 / trials)
  assert np.all(np.abs(freq - 0.25) < 5 * se), freq


def test_replay_batches_draw_stored_examples_without_replacement():
  images, labels, tasks = _stream(3)
  buf = replay.create(8, images.shape[1:], logit_dim=4)
  logits = np.arange(12, dtype=np.float32).reshape(3, 4)
  buf = replay.reservoir_add(buf, jax.random.PRNGKey(1), images, labels, tasks, logits)
  got = replay.sample(buf, jax.random.PRNGKey(2), 5)  # 3 stored: all 3, then 2 padding rows
  np.testing.assert_array_equal(got["mask"], [1, 1, 1, 0, 0])
  assert sorted(np.asarray(got["label"])[:3].tolist()) == [0, 1, 2]
  np.testing.assert_array_equal(got["logits"][:3], logits[np.asarray(got["label"])[:3]])
  # Uniform over the stored examples: each of 8 is drawn in a batch of 2 with probability 1/4.
  full = replay.reservoir_add(replay.create(8, images.shape[1:]), jax.random.PRNGKey(3),
                              *_stream(8))
  draws = jax.vmap(lambda k: replay.sample(full, k, 2)["label"])(jax.random.split(jax.random.PRNGKey(4), 4000))
  draws = np.asarray(draws)
  assert np.all(draws[:, 0] != draws[:, 1])
  freq = np.bincount(draws.ravel(), minlength=8) / 4000
  assert np.all(np.abs(freq - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 4000)), freq
  with pytest.raises(ValueError, match="use 1 <= k <= 8"):
    replay.sample(full, jax.random.PRNGKey(0), 9)


def _setup_with_full_buffer(name, **extra):
  """A built setup of ``name`` (class-incremental, 2 tasks) whose method state's buffer holds 40 examples of
  task 0 with their logits (for DER) under the initial parameters, and one minibatch of task 1."""
  config = small_config(**{"method.name": name, "scenario.incremental": "class", "scenario.num_tasks": 2,
                           "method.buffer_size": 40, "method.replay_batch": 16, **extra})
  setup = Setup.build(config)
  state = setup.initial_state()
  data = setup.train_data[0]
  first = {"image": data.images[:40], "label": data.labels[:40], "task": data.tasks[:40]}
  logits = setup.fns.logits(state.params, state.batch_stats, first, train=False)[0]
  seen = dict(first, logits=logits, rng=jax.random.PRNGKey(7), batch_stats=state.batch_stats)
  method_state = setup.method.after_step(state.method_state, state.params, None, None, seen)
  state = state.replace(method_state=method_state)
  d1 = setup.train_data[1]
  batch = {"image": d1.images[:20], "label": d1.labels[:20], "task": d1.tasks[:20]}
  return setup, state, batch


def test_er_loss_is_the_mean_over_the_minibatch_and_a_replay_batch():
  """ER's loss (Mammoth: one cross-entropy over ``cat(inputs, buf_inputs)``) equals the mean of the
  per-example losses of the minibatch and the replay batch, computed here in float64 NumPy."""
  setup, state, batch = _setup_with_full_buffer("er")
  method, rng = setup.method, jax.random.PRNGKey(11)
  joined = method.train_batch(state.method_state, batch, rng)
  replayed = method.replay(state.method_state, batch, rng, replay.REPLAY_KEY)
  assert joined["label"].shape == (36,) and float(jnp.sum(joined["mask"])) == 36.0
  np.testing.assert_array_equal(joined["label"][:20], batch["label"])
  loss = setup.fns.loss(state.params, state.batch_stats, joined, rng=None, train=True)[0]
  rows = {k: np.concatenate([np.asarray(batch[k]), np.asarray(replayed[k])]) for k in ("image", "label", "task")}
  logits = np.asarray(setup.fns.logits(state.params, state.batch_stats, rows, train=True)[0], np.float64)
  log_p = logits - np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1, keepdims=True)) \
      - logits.max(1, keepdims=True)
  want = -np.mean(log_p[np.arange(36), rows["label"]])
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)


@pytest.mark.parametrize("name", ["der", "derpp"])
def test_der_terms_match_their_equations(name):
  """DER: ``alpha * mean((f(x') - z')^2)`` over a replay batch (stored logits z'); DER++ adds ``beta *
  CE(f(x''), y'')`` on a second, independent replay batch; float64 NumPy on the same draws."""
  setup, state, batch = _setup_with_full_buffer(name, **{"method.der_alpha": 0.7, "method.der_beta": 0.4})
  method, rng, ms = setup.method, jax.random.PRNGKey(5), state.method_state
  got = float(method.loss_term(ms, state.params, state.batch_stats, batch, None, rng))
  first = method.replay(ms, batch, rng, replay.REPLAY_KEY)
  out = np.asarray(method.replay_outputs(state.params, state.batch_stats, first, rng, replay.AUGMENT_KEY)[0],
                   np.float64)
  want = 0.7 * np.mean((out - np.asarray(first["logits"], np.float64)) ** 2)
  if name == "derpp":
    second = method.replay(ms, batch, rng, replay.SECOND_REPLAY_KEY)
    assert not np.array_equal(second["label"], first["label"])  # drawn independently
    (out2,) = method.replay_outputs(state.params, state.batch_stats, second, jax.random.fold_in(rng, 2),
                                    replay.SECOND_REPLAY_KEY)
    want += 0.4 * float(cross_entropy(out2, second["label"]))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # The stored logits are those of the network when the example was stored: at the initial parameters,
  # the matching term is 0.
  if name == "der":
    np.testing.assert_allclose(np.mean((out - np.asarray(first["logits"])) ** 2), 0.0, atol=1e-8)


@pytest.mark.parametrize("name,mode", [("der", "local"), ("derpp", "local"), ("derpp", "greedy")])
def test_layerwise_training_matches_and_replays_each_block_head_locally(name, mode):
  """In local training the buffer keeps every local block head's logits of the step that stored the example
  (here the initial network's, in training mode with the step's key), DER matches each head's on a replay
  batch and DER++ adds each head's cross-entropy on the second one, each block fed the previous one's
  detached output (block 0's gradient is its own terms'); greedy training weighs the active block's alone."""
  setup, state, batch = _setup_with_full_buffer(name, **{"method.der_alpha": 0.7, "method.der_beta": 0.4,
                                                         "model.hidden": (16, 16), "layerwise.mode": mode})
  method, fns, rng, ms = setup.method, setup.fns, jax.random.PRNGKey(5), state.method_state
  assert fns.local_blocks == 2 and ms.buffer.logits.shape == (40, 2 * setup.scenario.output_dim)
  data = setup.train_data[0]
  first40 = {"image": data.images[:40], "label": data.labels[:40], "task": data.tasks[:40]}
  stored = fns.block_logits(state.params, state.batch_stats, first40, train=True, rng=jax.random.PRNGKey(7))
  np.testing.assert_allclose(ms.buffer.logits, np.concatenate(stored, -1), rtol=1e-6)  # reservoir: slots 0-39
  if mode == "greedy":
    batch = {**batch, "phase": np.ones_like(batch["task"])}  # block 1 trains
  moved = jax.tree.map(lambda x: x + 0.2, state.params)  # away from the stored logits: terms not 0

  def terms(p, blocks):  # each block's DER (and DER++) term, the block fed a detached input: float64 NumPy
    first = method.replay(ms, batch, rng, replay.REPLAY_KEY)
    inputs = {k: v for k, v in first.items() if k != "logits"}
    out = fns.block_logits(p, state.batch_stats, inputs, detach=True, train=True,
                           rng=jax.random.fold_in(rng, replay.AUGMENT_KEY))
    z = first["logits"].reshape(16, 2, -1)
    total = sum((0.7 * jnp.mean((out[k] - z[:, k]) ** 2) for k in blocks), jnp.zeros(()))
    if name == "derpp":
      second = method.replay(ms, batch, rng, replay.SECOND_REPLAY_KEY)
      out2 = fns.block_logits(p, state.batch_stats, {k: v for k, v in second.items() if k != "logits"},
                              detach=True, train=True,
                              rng=jax.random.fold_in(jax.random.fold_in(rng, 2), replay.SECOND_REPLAY_KEY))
      total += sum((0.4 * cross_entropy(out2[k], second["label"]) for k in blocks), jnp.zeros(()))
    return total

  term = lambda p: method.loss_term(ms, p, state.batch_stats, batch, None, rng)  # noqa: E731
  active = (0, 1) if mode == "local" else (1,)
  np.testing.assert_allclose(float(term(moved)), float(terms(moved, active)), rtol=1e-5)
  assert float(term(moved)) > 0.01
  grads, own = jax.grad(term)(moved), jax.grad(lambda p: terms(p, (0,) if mode == "local" else ()))(moved)
  for n in fns.names(0):
    for g, g0 in zip(jax.tree.leaves(grads[n]), jax.tree.leaves(own[n])):
      np.testing.assert_allclose(g, g0, rtol=1e-4, atol=1e-7)


def test_an_empty_buffer_replays_nothing():
  """Before anything is stored every replay row is padding: ER's loss is the minibatch's alone and DER's
  term is 0 (Mammoth skips the buffer while it is empty)."""
  config = small_config(**{"method.name": "derpp", "scenario.incremental": "class", "scenario.num_tasks": 2})
  setup = Setup.build(config)
  state = setup.initial_state()
  d = setup.train_data[0]
  batch = {"image": d.images[:20], "label": d.labels[:20], "task": d.tasks[:20]}
  term = setup.method.loss_term(state.method_state, state.params, state.batch_stats, batch, None,
                                jax.random.PRNGKey(0))
  assert float(term) == 0.0
