"""iCaRL (lwcl.methods.icarl): herding against a float64 NumPy transcription of the paper's Algorithm 4, the
memory's budget and herding prefixes over a stream, the loss against Mammoth's binary cross-entropy, the
exemplar weights of the joined batch, the nearest-mean classifier against NumPy, the evaluation hook in
the accuracy matrix and in the Task-IL one, and the one-line refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl.core.model_fns import mask_logits
from lwcl.engine.build import Setup
from lwcl.engine.experiment import Experiment
from lwcl.errors import ConfigError
from lwcl.methods import icarl

from helpers import small_config

CLASS_IL = {"method.name": "icarl", "scenario.incremental": "class", "data.normalize": "unit"}


def _herding_reference(features, count):
  """Rebuffi et al. (2017), Algorithm 4 in float64: ``p_k = argmin_x || mu - (phi(x) + sum_{j<k}
  phi(p_j)) / k ||`` (1-based ``k``), over the examples not picked yet (Mammoth: ``feats[idx_min] += 1e6``)."""
  phi = np.asarray(features, np.float64)
  mu = phi.mean(0)
  picks, total = [], np.zeros_like(mu)
  for k in range(1, min(count, len(phi)) + 1):
    cost = np.linalg.norm(mu - (phi + total) / k, axis=1)
    cost[picks] = np.inf
    picks.append(int(np.argmin(cost)))
    total += phi[picks[-1]]
  return picks


def _unit_rows(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("n,count,size", [(60, 25, 60), (40, 40, 40), (30, 12, 20), (10, 50, 10)])
def test_herding_is_algorithm_4(n, count, size):
  features = _unit_rows(np.random.default_rng(n).normal(size=(n, 8)))
  got = np.asarray(icarl.herding(jnp.asarray(features, jnp.float32), count, size))
  want = _herding_reference(features, min(count, size))
  np.testing.assert_array_equal(got[:len(want)], want)
  assert np.all(got[len(want):] == -1) and len(set(want)) == len(want)  # never the same example twice


def test_herding_under_vmap_with_a_batched_count():
  rng = np.random.default_rng(1)
  features = np.stack([_unit_rows(rng.normal(size=(30, 6))) for _ in range(2)])
  got = jax.vmap(lambda f, c: icarl.herding(f, c, 30))(jnp.asarray(features, jnp.float32), jnp.asarray([7, 12]))
  for r, count in enumerate((7, 12)):
    want = _herding_reference(features[r], count)
    np.testing.assert_array_equal(np.asarray(got[r])[:count], want)
    assert np.all(np.asarray(got[r])[count:] == -1)


def _exemplar_rows(state, slots, data):
  """For each of ``slots``, the row of ``data`` whose image it holds."""
  index = {row.tobytes(): i for i, row in enumerate(np.asarray(data.images).reshape(len(data), -1))}
  return np.asarray([index[np.asarray(state.images)[s].reshape(-1).tobytes()] for s in slots])


def test_memory_budget_and_herding_order_over_a_stream():
  # 3 tasks of 2 classes, K = 23: m = 11, then 5, then 3 per class (never more than K in all); each class's
  # exemplars are its herding picks under the network after its task, the earlier classes cut to a prefix.
  setup = Setup.build(small_config(**CLASS_IL, **{"method.icarl_memory": 23, "scenario.samples_per_task": 60}))
  method, state = setup.method, setup.initial_state()
  draws = np.random.default_rng(5)  # host draws: jax.random.normal would compile a program per shape
  herded = {}  # class -> its herding order (rows of its task's data)
  for t in range(3):
    params = jax.tree.map(lambda p: p + 0.1 * draws.standard_normal(p.shape).astype(np.float32), state.params)
    data = setup.train_data[t]
    ms = method.end_task(state.method_state, params, state.batch_stats, t, data)
    state = state.replace(params=params, method_state=ms)
    features = np.asarray(setup.fns.features(params, state.batch_stats, {"image": data.images}))
    labels = np.asarray(data.labels)
    for c in np.unique(labels):
      rows = np.flatnonzero(labels == c)
      herded[int(c)] = (t, rows[_herding_reference(_unit_rows(features[rows]), len(rows))])
    seen = 2 * (t + 1)
    m = 23 // seen
    slots = np.asarray(ms.labels)
    assert int(ms.classes) == seen and np.sum(slots >= 0) == seen * m <= 23
    assert np.all(slots[seen * m:] == -1)
    for s, c in enumerate(sorted(herded, key=lambda c: (herded[c][0], c))):  # classes in the order seen
      block = np.arange(s * m, (s + 1) * m)
      assert np.all(slots[block] == c)
      task, order = herded[c]
      np.testing.assert_array_equal(_exemplar_rows(ms, block, setup.train_data[task]), order[:m])
      assert np.all(np.asarray(ms.tasks)[block] == task)
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(ms.past)), sorted(herded))


def _bce_reference(logits, old_logits, labels, past, weights):
  """Mammoth's ``F.binary_cross_entropy_with_logits(outputs, cat(sigmoid(old)[:, :P], eye[labels][:, P:]))``
  in float64, the rows weighted."""
  sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
  targets = np.eye(logits.shape[1])[labels]
  targets[:, past] = sig(old_logits)[:, past]
  p = sig(logits)
  per_row = -np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p), axis=1)
  return np.sum(per_row * weights) / np.sum(weights)


def test_loss_is_mammoths_binary_cross_entropy():
  rng = np.random.default_rng(2)
  logits, old = rng.normal(size=(7, 10)) * 2, rng.normal(size=(7, 10)) * 2
  labels, weights = rng.integers(0, 10, 7), np.asarray([1, 1, 1, 1, 0.3, 0.3, 0.0])
  for past in (np.zeros(10, bool), np.arange(10) < 4):
    got = icarl.icarl_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(old, jnp.float32), jnp.asarray(labels),
                           jnp.asarray(past, jnp.float32), jnp.asarray(weights, jnp.float32))
    np.testing.assert_allclose(float(got), _bce_reference(logits, old, labels, past, weights), rtol=1e-5)


def test_joined_batch_weights_the_exemplars_as_a_union_batch():
  setup = Setup.build(small_config(**CLASS_IL, **{"method.icarl_memory": 30, "scenario.samples_per_task": 100}))
  method, state = setup.method, setup.initial_state()
  data = setup.train_data[1]
  batch = {"image": data.images[:20], "label": data.labels[:20], "task": data.tasks[:20]}
  empty = method.train_batch(state.method_state, batch, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(np.asarray(empty["mask"]), [1.0] * 20 + [0.0] * 20)  # nothing stored yet
  ms = method.end_task(state.method_state, state.params, state.batch_stats, 0, setup.train_data[0])
  stored = int(np.sum(np.asarray(ms.labels) >= 0))  # 2 classes of 15
  joined = method.train_batch(ms, batch, jax.random.PRNGKey(1))
  for key in batch:  # the minibatch first, as given
    np.testing.assert_array_equal(np.asarray(joined[key])[:20], batch[key])
  n = len(data)
  np.testing.assert_allclose(np.asarray(joined["mask"]), [1.0] * 20 + [stored / n] * 20, rtol=1e-6)
  slots = {np.asarray(ms.images)[s].tobytes(): s for s in range(30) if np.asarray(ms.labels)[s] >= 0}
  drawn = [slots[np.asarray(x).tobytes()] for x in np.asarray(joined["image"])[20:]]
  assert len(set(drawn)) == 20  # stored exemplars, without replacement
  np.testing.assert_array_equal(np.asarray(joined["label"])[20:], np.asarray(ms.labels)[drawn])


def _nme_reference(features, exemplar_features, exemplar_labels, num_classes):
  """Nearest mean of exemplars in float64: class means of the normalized exemplar features, normalized;
  the class (among those with exemplars) whose mean is nearest to the normalized feature."""
  f, e = _unit_rows(np.asarray(features, np.float64)), _unit_rows(np.asarray(exemplar_features, np.float64))
  classes = [c for c in range(num_classes) if np.any(exemplar_labels == c)]
  means = _unit_rows(np.stack([e[exemplar_labels == c].mean(0) for c in classes]))
  d = ((f[:, None, :] - means[None]) ** 2).sum(-1)
  return np.asarray(classes)[np.argmin(d, axis=1)]


def test_nme_scores_are_the_nearest_mean():
  rng = np.random.default_rng(4)
  exemplars, labels = rng.normal(size=(12, 5)), np.asarray([3, 3, 3, 0, 0, 0, 7, 7, 7, -1, -1, -1])
  features = rng.normal(size=(9, 5))
  means, has = icarl.class_means(icarl.normalized(jnp.asarray(exemplars, jnp.float32)), jnp.asarray(labels), 10)
  np.testing.assert_array_equal(np.flatnonzero(np.asarray(has)), [0, 3, 7])
  scores = icarl.nme_scores(jnp.asarray(features, jnp.float32), means, has)
  np.testing.assert_array_equal(np.argmax(scores, -1), _nme_reference(features, exemplars, labels, 10))


def test_the_accuracy_matrix_is_the_nearest_mean_of_exemplars(tmp_path):
  config = small_config(**CLASS_IL, **{"method.icarl_memory": 40, "scenario.num_tasks": 2})
  exp = Experiment(config)
  results = exp.run(str(tmp_path))
  state, setup = exp.final_state, exp.setup
  ms = state.method_state
  keep = np.asarray(ms.labels) >= 0
  exemplars = np.asarray(setup.fns.features(state.params, state.batch_stats, {"image": np.asarray(ms.images)[keep]}))
  for j, task in enumerate(setup.scenario.tasks):
    features = setup.fns.features(state.params, state.batch_stats, {"image": task.test.images})
    predicted = _nme_reference(features, exemplars, np.asarray(ms.labels)[keep], setup.scenario.output_dim)
    want = np.mean(predicted == np.asarray(task.test.labels))
    assert abs(results["accuracy_matrix"][-1][j] - want) <= 1e-6, j
    # Task-IL: the nearest mean among the task's classes (the means of its exemplars alone), not the logits.
    of_task = np.isin(np.asarray(ms.labels)[keep], task.classes)
    predicted = _nme_reference(features, exemplars[of_task], np.asarray(ms.labels)[keep][of_task],
                               setup.scenario.output_dim)
    want = np.mean(predicted == np.asarray(task.test.labels))
    assert abs(results["task_il_accuracy_matrix"][-1][j] - want) <= 1e-6, j
  # Not the network's argmax: its accuracies on the same state differ.
  logits = [np.mean(np.argmax(setup.fns.logits(state.params, state.batch_stats, {"image": t.test.images,
            "task": t.test.tasks}, train=False)[0], -1) == t.test.labels) for t in setup.scenario.tasks]
  assert not np.allclose(logits, results["accuracy_matrix"][-1])
  task_il_logits = []
  for t in setup.scenario.tasks:
    out = np.asarray(setup.fns.logits(state.params, state.batch_stats, {"image": t.test.images, "task": t.test.tasks},
                                      train=False)[0])
    classes = np.asarray(t.classes)
    task_il_logits.append(np.mean(classes[np.argmax(out[:, classes], -1)] == t.test.labels))
  assert not np.allclose(task_il_logits, results["task_il_accuracy_matrix"][-1])


@pytest.mark.parametrize("overrides,match", [
    ({"scenario.incremental": "domain"}, "share classes"),
    ({"scenario.kind": "permuted", "scenario.num_tasks": 2, "data.normalize": "none"}, "share classes"),
    ({"method.icarl_memory": 5}, "fewer exemplars than the stream's 6 classes"),
    ({"scenario.incremental": "task", "scenario.kind": "permuted", "scenario.num_tasks": 2,
      "method.icarl_memory": 19}, "fewer exemplars than the stream's 20 \\(task, label\\) classes"),
    ({"layerwise.readouts": True}, "readouts"),
])
def test_refusals_are_one_line(overrides, match):
  with pytest.raises(ConfigError, match=match) as err:
    Setup.build(small_config(**{**CLASS_IL, **overrides}))
  assert "\n" not in str(err.value)


@pytest.mark.parametrize("mode", ["local", "greedy"])
def test_layerwise_training_replaces_each_local_loss_by_the_blocks_own(mode):
  """In local training iCaRL's loss replaces every block's local loss: each block head's binary
  cross-entropy against the old network's same head (float64 NumPy), the block fed the previous one's
  detached output (block 0's gradient is its own term's); greedy training weighs the active block's alone."""
  config = small_config(**{**CLASS_IL, "method.icarl_memory": 40, "scenario.num_tasks": 2,
                           "model.hidden": (16, 16), "layerwise.mode": mode})
  setup = Setup.build(config)
  fns, method, state = setup.fns, setup.method, setup.initial_state()
  ms = method.end_task(state.method_state, state.params, state.batch_stats, 0, setup.train_data[0])
  noise = np.random.default_rng(1)
  params = jax.tree.map(lambda x: x + 0.05 * noise.standard_normal(x.shape).astype(x.dtype), state.params)
  d = setup.train_data[1]
  batch = {"image": d.images[:8], "label": d.labels[:8], "task": d.tasks[:8], "mask": np.ones(8, np.float32)}
  if mode == "greedy":
    batch["phase"] = np.ones(8, np.int32)  # block 1 trains
  key = jax.random.PRNGKey(3)
  old = fns.block_logits(ms.old_params, ms.old_batch_stats, batch, rng=key, augment=True)
  past = np.asarray(ms.past) > 0
  assert past.any() and fns.local_blocks == 2

  def own(p, blocks):
    new = fns.block_logits(p, state.batch_stats, batch, detach=True, train=True, rng=key)
    return sum((icarl.icarl_loss(new[k], old[k], batch["label"], ms.past, batch["mask"]) for k in blocks),
               jnp.zeros(()))

  term = lambda p: method.loss_term(ms, p, state.batch_stats, batch, None, key)  # noqa: E731
  active = (0, 1) if mode == "local" else (1,)
  new = fns.block_logits(params, state.batch_stats, batch, detach=True, train=True, rng=key)
  want = sum(_bce_reference(np.asarray(new[k], np.float64), np.asarray(old[k], np.float64), batch["label"], past,
                            batch["mask"]) for k in active)
  np.testing.assert_allclose(float(term(params)), want, rtol=1e-5)
  grads, own0 = jax.grad(term)(params), jax.grad(lambda p: own(p, (0,) if mode == "local" else ()))(params)
  for n in fns.names(0):
    for g, g0 in zip(jax.tree.leaves(grads[n]), jax.tree.leaves(own0[n])):
      np.testing.assert_allclose(g, g0, rtol=1e-4, atol=1e-7)



@pytest.mark.parametrize("mode", ["plain", "layerwise"])
def test_features_are_the_heads_input(mode):
  # ModelFns.features (and LayerwiseFns', whose parameters hold auxiliary heads too) is the read-out the head
  # turns into the logits.
  extra = {"layerwise.readouts": True} if mode == "layerwise" else {}
  setup = Setup.build(small_config(**{"model.hidden": (16, 8), **extra}))
  fns, state = setup.fns, setup.initial_state()
  assert fns.is_layerwise == (mode == "layerwise")
  data = setup.train_data[1]
  batch = {"image": data.images[:6], "task": data.tasks[:6]}
  features = fns.features(state.params, state.batch_stats, batch)
  assert features.shape == (6, 8)
  head = fns.model.head.apply({"params": state.params["head"]}, features, batch["task"])
  logits = fns.logits(state.params, state.batch_stats, batch, train=False)[0]
  np.testing.assert_allclose(np.asarray(logits), np.asarray(mask_logits(head, fns.label_masks, batch["task"])),
                             rtol=1e-6, atol=1e-6)


# -- task-incremental heads: a class is a (task, label) pair ------------------------------------------------

def _task_il_config(heads, **extra):
  return small_config(**{**CLASS_IL, "scenario.incremental": "task", "scenario.task_heads": heads, **extra})


def _heads_reference(new, old, tasks, labels, masks, finished, current, weights):
  """The loss with task-incremental heads in float64: per row, the mean over the outputs of the heads of the
  tasks seen (``finished`` and ``current``; each head's ``masks`` row) of the binary cross-entropy against
  the old network's sigmoid on a finished task's head and, on the current task's head, 1 at the row's label
  when the row is of the current task (0 otherwise); ``new``, ``old`` ``[S, B, O]``, one array per head."""
  sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
  per_row = []
  for i in range(new.shape[1]):
    total, count = 0.0, 0
    for s in range(new.shape[0]):
      if not (finished[s] or s == current):
        continue
      for o in np.flatnonzero(masks[s]):
        q = sig(old[s, i, o]) if finished[s] else float(tasks[i] == s and labels[i] == o)
        p = sig(new[s, i, o])
        total -= q * np.log(p) + (1 - q) * np.log(1 - p)
        count += 1
    per_row.append(total / count)
  return np.sum(np.asarray(per_row) * weights) / np.sum(weights)


@pytest.mark.parametrize("heads", ["multi", "masked"])
def test_task_incremental_heads_loss_is_the_heads_side_by_side(heads):
  # 4 tasks: after tasks 0 and 1, a minibatch of task 2 joined by exemplars of tasks 0 and 1; head 3 (the
  # future task's) is in no term.
  config = _task_il_config(heads, **{"method.icarl_memory": 40, "scenario.num_tasks": 4, "model.hidden": (16,)})
  setup = Setup.build(config)
  fns, method, state = setup.fns, setup.method, setup.initial_state()
  noise = np.random.default_rng(3)
  ms, params = state.method_state, state.params
  for t in range(2):
    params = jax.tree.map(lambda x: x + 0.1 * noise.standard_normal(x.shape).astype(x.dtype), params)
    ms = method.end_task(ms, params, state.batch_stats, t, setup.train_data[t])
  np.testing.assert_array_equal(np.asarray(ms.past), [1, 1, 0, 0])
  params = jax.tree.map(lambda x: x + 0.1 * noise.standard_normal(x.shape).astype(x.dtype), params)
  d = setup.train_data[2]
  key = jax.random.PRNGKey(7)
  batch = method.train_batch(ms, {"image": d.images[:12], "label": d.labels[:12], "task": d.tasks[:12],
                                  "mask": np.ones(12, np.float32)}, key)
  tasks = np.asarray(batch["task"])
  assert set(tasks[12:].tolist()) == {0, 1} and np.all(tasks[:12] == 2)
  S = 4
  per_head = lambda p, bs, t, **kw: np.asarray(fns.logits(p, bs, {**batch, "task": np.full_like(tasks, t)},  # noqa: E731
                                                          rng=key, **kw)[0], np.float64)
  new = np.stack([per_head(params, state.batch_stats, t, train=True) for t in range(S)])
  old = np.stack([per_head(ms.old_params, ms.old_batch_stats, t, train=False, augment=True) for t in range(S)])
  masks = np.asarray(setup.scenario.label_masks)
  want = _heads_reference(new, old, tasks, np.asarray(batch["label"]), masks, [1, 1, 0, 0], 2,
                          np.asarray(batch["mask"], np.float64))
  got = method.loss_term(ms, params, state.batch_stats, batch, None, key)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


@pytest.mark.parametrize("heads", ["multi", "masked"])
def test_task_incremental_heads_classify_by_the_nearest_mean_among_the_tasks_classes(tmp_path, heads):
  config = _task_il_config(heads, **{"method.icarl_memory": 36})
  exp = Experiment(config)
  results = exp.run(str(tmp_path))
  state, setup = exp.final_state, exp.setup
  ms = state.method_state
  slots, slot_tasks = np.asarray(ms.labels), np.asarray(ms.tasks)
  # a class per (task, label): 6 of them, 6 exemplars each (multi heads' labels are 0 and 1 in every task)
  assert int(ms.classes) == 6 and np.sum(slots >= 0) == 36
  assert len({(t, c) for t, c in zip(slot_tasks, slots)}) == 6
  exemplars = np.asarray(setup.fns.features(state.params, state.batch_stats, {"image": np.asarray(ms.images)}))
  for j, task in enumerate(setup.scenario.tasks):
    features = setup.fns.features(state.params, state.batch_stats, {"image": task.test.images})
    of_task = slot_tasks == j
    predicted = _nme_reference(features, exemplars[of_task], slots[of_task], setup.scenario.output_dim)
    want = np.mean(predicted == np.asarray(task.test.labels))
    assert abs(results["accuracy_matrix"][-1][j] - want) <= 1e-6, j
  # Not the heads' argmax.
  logits = [np.mean(np.argmax(setup.fns.logits(state.params, state.batch_stats, {"image": t.test.images,
            "task": t.test.tasks}, train=False)[0], -1) == t.test.labels) for t in setup.scenario.tasks]
  assert not np.allclose(logits, results["accuracy_matrix"][-1])


def test_a_task_without_exemplars_is_classified_by_its_head():
  setup = Setup.build(_task_il_config("multi", **{"method.icarl_memory": 36}))
  method, state = setup.method, setup.initial_state()
  ms = method.end_task(state.method_state, state.params, state.batch_stats, 0, setup.train_data[0])
  for t in (0, 1):
    d = setup.scenario.tasks[t].test
    batch = {"image": d.images[:50], "label": d.labels[:50], "task": d.tasks[:50]}
    scores = np.asarray(method.eval_scores(ms, state.params, state.batch_stats, batch))
    logits = np.asarray(setup.fns.logits(state.params, state.batch_stats, batch, train=False)[0])
    assert np.array_equal(scores, logits) == (t == 1), t  # task 1 has no exemplars yet
