"""The method contract (lwcl/methods/base.py's module docstring), checked for every entry of ``METHODS``:
a new method is covered without editing this file.

(a) fixed shapes of the method state, step arguments and optimizer state over steps and a task end (the
train step compiles once), run in mixed precision (``model.dtype=bfloat16``), whose parameters, optimizer
and method states (importances, memories, Gram matrices, solver reports), logits and losses stay float32;
(b) ``end_task`` under ``jax.vmap`` equals its unbatched calls; (c) a penalty method at strength 0 is
fine-tuning bit for bit; (d) every float option is kept in the method state (``STATE_HYPER``: a value set
there, as a sweep's replica has it, is the value the method uses) or needed on the host
(``HOST_OPTIONS``); (e) a replica equals its single run; and the options: every method reads exactly the
keys it declares, and the declarations are configs/default.py's ``method.*`` keys.
"""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl.config import files as config_files
from lwcl.core.state import TrainState
from lwcl.engine.build import Setup
from lwcl.engine.experiment import Experiment
from lwcl.methods import METHODS, build_method
from lwcl.runs.axis import ReplicaAxis

import helpers
from helpers import small_config

pytestmark = pytest.mark.contract

NAMES = tuple(METHODS)
PENALTIES = tuple(n for n, cls in METHODS.items() if cls.penalty)
STATE_HYPER = tuple((n, key) for n, cls in METHODS.items() for key in cls.STATE_HYPER)
# Tiny and quick: MLP 16-16, 2 tasks of 120 examples (6 steps each), small memories and samples.
TINY = helpers.TINY


def _config(name, **extra):
  return small_config(**{**TINY, "method.name": name, **helpers.method_overrides(name), **extra})


def _batch(setup, task, step):
  data, B = setup.train_data[task], setup.config.train.batch_size
  take = slice(step * B, (step + 1) * B)
  return {"image": data.images[take], "label": data.labels[take], "task": data.tasks[take]}


def _shapes(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
                      if not hasattr(x, "aval") else jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _train(setup, state, task, steps):
  lr = setup.learning_rates_of_task(setup.steps_per_epoch[task])
  for i in range(steps):
    state, _ = setup.steps.train_step(state, _batch(setup, task, i), lr[i])
  return state


def _assert_no_bfloat16(tree):
  """Every floating leaf of ``tree`` is float32 (mixed precision keeps bfloat16 to the activations)."""
  floats = {np.dtype(leaf.dtype) for leaf in jax.tree.leaves(_shapes(tree)) if jnp.issubdtype(leaf.dtype, jnp.floating)}
  assert floats <= {np.dtype(np.float32)}, floats


@pytest.mark.parametrize("name", NAMES)
def test_shapes_are_fixed_over_steps_and_tasks(name):
  # in mixed precision: every method trains with bfloat16 activations and keeps its state float32 (the
  # float32 runs of every method: tests/e2e/test_every_method.py and the tests below)
  setup = Setup.build(_config(name, **{"model.dtype": "bfloat16"}))
  method, state = setup.method, setup.initial_state()
  assert setup.fns.model.dtype == jnp.bfloat16
  _assert_no_bfloat16(state)
  want = _shapes((state.method_state, state.opt_state))
  args = jax.jit(method.step_args)
  want_args = _shapes(args(state.method_state, state.params, state.batch_stats, _batch(setup, 0, 0), state.rng))
  compiled = None
  for task in (0, 1):
    state = _train(setup, state, task, 2)
    compiled = compiled or setup.steps.train_step._cache_size()  # pylint: disable=protected-access
    chex.assert_trees_all_equal_shapes_and_dtypes(_shapes((state.method_state, state.opt_state)), want)
    _assert_no_bfloat16(state)
    got_args = args(state.method_state, state.params, state.batch_stats, _batch(setup, task, 2), state.rng)
    chex.assert_trees_all_equal_shapes_and_dtypes(_shapes(got_args), want_args)
    batch = _batch(setup, task, 2)  # as the step gives it to after_step: with its logits and the step's key
    seen = dict(batch, logits=setup.fns.logits(state.params, state.batch_stats, batch, train=False)[0],
                rng=state.rng)
    loss, (logits, _) = setup.fns.loss(state.params, state.batch_stats, batch, state.rng)
    chex.assert_type([loss, logits, seen["logits"]], jnp.float32)
    chex.assert_tree_all_finite((loss, state.params))
    after = jax.jit(method.after_step)(state.method_state, state.params, state.params, state.params, seen)
    chex.assert_trees_all_equal_shapes_and_dtypes(_shapes(after), want[0])
    ms = method.end_task(state.method_state, state.params, state.batch_stats, task, setup.train_data[task])
    chex.assert_trees_all_equal_shapes_and_dtypes(_shapes(ms), want[0])
    state = state.replace(method_state=setup.parallel.replicate(ms))  # as the runner does (lwcl.engine.loop)
  # No recompilation after the first task (the first step may compile twice: fresh vs. output buffers).
  assert setup.steps.train_step._cache_size() == compiled  # pylint: disable=protected-access


@pytest.mark.parametrize("name", NAMES)
def test_end_task_under_vmap_equals_its_unbatched_calls(name):
  setup = Setup.build(_config(name))
  states = []
  for seed in (0, 1):  # two replicas: different initial parameters, 3 steps (non-trivial method states)
    init_key, rng = jax.random.split(jax.random.PRNGKey(seed))
    params, stats = setup.fns.init(init_key, setup.scenario.image_shape)
    state = TrainState(jnp.zeros((), jnp.int32), params, stats, setup.tx.init(params),
                       setup.method.init_state(params, stats), rng)
    states.append(jax.device_get(_train(setup, state, 0, 3)))
  data, method = setup.train_data[0], setup.method
  stacked = jax.tree.map(lambda *x: np.stack(x), *states)
  batched = jax.vmap(lambda ms, p, bs: method.end_task(ms, p, bs, 0, data))(
      stacked.method_state, stacked.params, stacked.batch_stats)
  for r, s in enumerate(states):
    single = method.end_task(s.method_state, s.params, s.batch_stats, 0, data)
    helpers.assert_close_per_leaf(jax.tree.map(lambda x, r=r: x[r], batched), single, rtol=1e-5)


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory):
  exp = Experiment(_config("finetune"))
  results = exp.run(str(tmp_path_factory.mktemp("finetune")))
  return results, jax.device_get(exp.final_state.params)


@pytest.mark.parametrize("name", PENALTIES)
def test_strength_zero_equals_finetuning_bit_for_bit(finetune_run, tmp_path, name):
  exp = Experiment(_config(name, **{"method.strength": 0.0}))
  results = exp.run(str(tmp_path))
  want_results, want_params = finetune_run
  assert results["accuracy_matrix"] == want_results["accuracy_matrix"]
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(exp.final_state.params), want_params)
  # The importances were computed (non-zero) and only the zero strength kept them out.
  omega = exp.final_state.method_state.omega
  assert sum(float(jnp.sum(jnp.abs(o))) for o in jax.tree.leaves(omega)) > 0


def test_every_float_option_is_in_the_state_or_needed_on_the_host():
  for name, cls in METHODS.items():
    floats = {o.key for o in cls.OPTIONS if o.type is float}
    assert floats == set(cls.STATE_HYPER) | set(cls.HOST_OPTIONS), name
    assert not set(cls.STATE_HYPER) & set(cls.HOST_OPTIONS), name


def _through_a_task_end(setup, state):
  """3 steps of task 0, its end-of-task update (as the runner places it), 2 steps of task 1."""
  state = _train(setup, state, 0, 3)
  ms = setup.method.end_task(state.method_state, state.params, state.batch_stats, 0, setup.train_data[0])
  return _train(setup, state.replace(method_state=setup.parallel.replicate(ms)), 1, 2)


@pytest.mark.parametrize("name,key", STATE_HYPER)
def test_a_hyper_parameter_of_the_state_is_what_the_method_uses(name, key):
  # A sweep's replica: the default config's method with another value set in its state (set_hyper) trains
  # as the method built with that value (through a task end, where every option has taken effect).
  option = next(o for o in METHODS[name].OPTIONS if o.key == key)
  other = 2.0 * option.default + 0.25
  swept = Setup.build(_config(name))
  state = swept.initial_state()
  state = state.replace(method_state=swept.method.set_hyper(state.method_state, key, other))
  built = Setup.build(_config(name, **{key: other}))
  got, want = _through_a_task_end(swept, state), _through_a_task_end(built, built.initial_state())
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(got), jax.device_get(want))
  default = _through_a_task_end(swept, swept.initial_state())  # and the value matters
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(jax.device_get(default)),
                                                        jax.tree.leaves(jax.device_get(want))))


@pytest.mark.parametrize("name", NAMES)
def test_a_replica_equals_its_single_run(tmp_path, name):
  # Seeds 3 and 4 as replicas of one program (tests/runs/test_seeds.py's config; its e2e test adds several
  # steps per dispatch with every replica compared, and two epochs per task). Replica 1: its seed is not
  # config.seed, so equality also shows it trained from its own seed.
  config = _config(name, seed=3)
  reps = Experiment(config, ReplicaAxis.of_seeds([3, 4]))
  per_replica = reps.run_replicas(str(tmp_path / "replicas"))
  exp = Experiment(_config(name, seed=4))
  single = exp.run(str(tmp_path / "seed4"))
  got = jax.tree.map(lambda x: x[1], reps.final_state)
  assert int(got.step) == int(exp.final_state.step) >= 12  # 6 steps per task, 2 tasks
  helpers.assert_close_per_leaf(got.params, exp.final_state.params)
  helpers.assert_close_per_leaf(got.method_state, exp.final_state.method_state)
  np.testing.assert_allclose(per_replica[1]["accuracy_matrix"], single["accuracy_matrix"], atol=2e-3)
  assert ("task_il_accuracy_matrix" in single) == (single["scenario"]["incremental"] == "class")
  if "task_il_accuracy_matrix" in single:  # class-incremental (iCaRL): the Task-IL matrix too
    np.testing.assert_allclose(per_replica[1]["task_il_accuracy_matrix"], single["task_il_accuracy_matrix"],
                               atol=2e-3)


class _Recording(dict):
  """A config section that records the keys read from it."""

  def __init__(self, *args):
    super().__init__(*args)
    self.read = set()

  def __getitem__(self, key):
    self.read.add(key)
    return super().__getitem__(key)

  def __getattr__(self, key):
    return self[key]


@pytest.mark.parametrize("name", NAMES)
def test_a_method_reads_exactly_its_declared_options(name):
  setup = Setup.build(_config(name))
  section = _Recording(setup.config.method.to_dict())
  build_method(section, setup.scenario, setup.fns)
  assert section.read - {"name"} == {o.key.split(".", 1)[1] for o in METHODS[name].OPTIONS}


def test_declared_options_are_the_default_configs_method_keys():
  default = config_files.load(os.path.join(helpers.ROOT, "configs", "default.py")).get_config()
  declared = {}
  for cls in METHODS.values():
    for o in cls.OPTIONS:
      assert declared.setdefault(o.key, o) == o, f"{o.key} declared twice, differently"
  want = {f"method.{k}": v for k, v in default.method.items() if k != "name"}
  assert sorted(declared) == sorted(want)
  for key, o in declared.items():
    assert type(o.default) is type(want[key]) and o.default == want[key], key
    assert o.doc and "\n" not in o.doc, key
