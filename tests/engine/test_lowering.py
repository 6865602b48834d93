"""Every compiled program of a run lowers for GPUs and TPUs (issue 30, item 1): exported with ``jax.export``
for ``cuda`` and ``tpu`` on this CPU-only machine, from setups built for those platforms
(``Setup.build(..., platforms=ACCELERATORS)``, :mod:`lwcl.platform.targets`), with no custom call the
platforms do not have (lwcl's oneDNN convolutions, LAPACK's), convolutions lowered natively there, and the CPU
build keeping oneDNN's.

Exporting only traces and lowers (no XLA compile); states are ``jax.eval_shape``'s and batches
``jax.ShapeDtypeStruct``s, so nothing trains. The programs of a run (:func:`programs`): the network's
initialization, the optimizer's reset (``init_opt``), the train step, the K-step dispatch loop
(``train.steps_per_dispatch``), the evaluation step, the method's end of task (importances and anchors,
iCaRL's herding, LwF's copy: the hook as one jitted program with the jitted functions it calls inside), and
in layer-wise ``local`` / ``greedy`` mode the block heads' evaluation step. Each program is exported once for
both platforms (``platforms=('cuda', 'tpu')``: JAX lowers every operation for each of them and fails where
one has none; operations that lower alike are lowered once), so one setup and one trace serve both;
:func:`test_auto_builds_for_accelerators_what_native_builds` and
:func:`test_each_accelerator_gets_its_own_linear_algebra` export for one platform at a time and check each
platform's own custom calls.

Coverage. The full product (15 methods x their modes x 4 model families, every program) costs minutes of
tracing (the residual networks' layer-wise steps most), so:

* on the MLP, every method in every mode it runs in (:func:`helpers.method_mode`: 45 cases, every built-in
  method in every mode), with the programs that depend on the method and the mode (train step, end of task,
  optimizer reset), the K-step loop in ``backprop`` mode (in the others its body is the train step already
  exported), the evaluation step where the method has its own scores (every other method's is fine-tuning's),
  and, with fine-tuning, what depends on the mode alone (K-step loop, the network's initialization, the block
  heads' evaluation);
* every model family (ConvNet, CIFAR ResNet, ImageNet ResNet-18) with every program: on the ConvNet a
  method of each kind in each mode, on the residual networks a layer-wise mode (:data:`FAMILY_CASES`), and
  the ConvNet's and CIFAR ResNet's train steps end to end (the auto / native comparison);
* seeds as replicas (every program vmapped over 2 seeds, :data:`REPLICA_CASES`);
* the data-parallel steps on a mesh of 2 emulated CPU devices (one subprocess, :data:`MESH_CASES`), and
  seeds as replicas split over its ``replica`` axis.

Data: a 10-class IDX data set of 8 x 8 images, written once per module. About 32 CPU-seconds in all on a
2-core AMD EPYC (the subprocess included).
"""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__":  # the mesh subprocess (_mesh_exports): tests/ on the path, as pytest puts it
  sys.path.insert(0, TESTS_DIR)

from lwcl.data.synthetic import FILES, write_idx  # noqa: E402

from helpers import METHODS, MODES, ROOT, forced_devices, method_mode, method_overrides, small_config  # noqa: E402

ACCELERATORS = ("cuda", "tpu")

# Custom call targets a program may hold on each platform: XLA's sharding annotations, and the platform's own
# linear algebra (cuSOLVER on GPU; TPU's Eigh, Qr, ...), which LGD's SVD lowers to.
_ANY_PLATFORM = {"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape", "annotate_device_placement",
                 "shape_assertion", "AllocateBuffer"}
_OWN = {"cuda": lambda t: t.startswith(("cusolver_", "cublas", "cusparse_", "cu_")),
        "tpu": lambda t: t in {"Eigh", "Qr", "ProductOfElementaryHouseholderReflectors", "LuDecomposition",
                               "ApproxTopK", "tpu_custom_call"}}

MODELS = {
    "mlp": {"model.name": "mlp", "model.hidden": (8, 8)},
    "convnet": {"model.name": "convnet", "model.conv_stages": ((8,), (8,)), "model.dense": (8,)},
    "resnet": {"model.name": "resnet", "model.depth": 8, "model.width": 4},
    "imagenet_resnet18": {"model.name": "imagenet_resnet18", "model.width": 4},
}

# The smallest stream every method runs on: 2 tasks of 2 classes, 8 training examples each, batch 4,
# memories and buffers of 4, 2 steps per dispatch.
TINY = {"scenario.num_tasks": 2, "scenario.samples_per_task": 0, "train.batch_size": 4,
        "train.eval_batch_size": 4, "train.steps_per_dispatch": 2, "method.memory_per_task": 4,
        "method.agem_ref_batch": 4, "method.importance_samples": 4, "method.importance_batch_size": 4,
        "method.buffer_size": 4, "method.icarl_memory": 4, "layerwise.aux_hidden": (8,)}
K = TINY["train.steps_per_dispatch"]

PROGRAMS = ("init", "init_opt", "train_step", "train_steps", "eval_step", "end_task", "block_eval_step")


def custom_calls(module_text: str) -> set:
  """The custom call targets of an MLIR module's text."""
  return set(re.findall(r"stablehlo\.custom_call @([\w.$]+)", module_text))


def foreign_calls(module_text: str, platform: str) -> set:
  """The custom call targets of ``module_text`` that ``platform`` does not have."""
  return {t for t in custom_calls(module_text) if t not in _ANY_PLATFORM and not _OWN[platform](t)}


def write_tiny_idx(folder: str) -> str:
  """A 10-class IDX data set of 8 x 8 images in ``folder``: 4 training and 2 test images per class."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  for split, per_class in (("train", 4), ("test", 2)):
    labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
    write_idx(os.path.join(folder, FILES[(split, "images")]), rng.integers(0, 256, (len(labels), 8, 8), np.uint8))
    write_idx(os.path.join(folder, FILES[(split, "labels")]), labels)
  return folder


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
  return write_tiny_idx(str(tmp_path_factory.mktemp("tiny_idx")))


def tiny(idx_dir: str, method: str, mode: str, model: str, **extra):
  """The tiny config of ``method`` in ``mode`` on ``model`` (the method's setting: helpers.method_overrides)."""
  return small_config(**{"data.idx_dir": idx_dir, **TINY, **MODELS[model], "method.name": method,
                          "layerwise.mode": mode, **method_overrides(method), **extra})


def build(config, replicas=None, platforms=ACCELERATORS):
  from lwcl.engine.build import Setup  # pylint: disable=g-import-not-at-top
  return Setup.build(config, replicas, platforms)


def programs(setup, names=PROGRAMS) -> dict:
  """The compiled programs ``names`` of a run of ``setup`` (those it has: ``block_eval_step`` in layer-wise
  modes) with the shapes and dtypes they are called with: ``{name: (jitted function, arguments)}``."""
  from lwcl.engine import dispatch  # pylint: disable=g-import-not-at-top
  replicas, method, fns = setup.replicas, setup.method, setup.fns
  lead = (replicas.size,) if replicas.batched else ()
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(tuple(shape), dtype)  # noqa: E731
  state = jax.eval_shape(setup.initial_state)
  batch = {k: spec(lead + v.shape, v.dtype) for k, v in dispatch.train_batch_spec(setup).items()}
  B, rows = setup.config.train.batch_size, max(len(d) for d in setup.train_data)
  image = tuple(setup.scenario.image_shape)
  data = {"image": spec((rows,) + image, jnp.uint8), "label": spec((rows,), jnp.int32),
          "task": spec((rows,), jnp.int32)}
  steps = {"index": spec(lead + (K, B), jnp.int32), "learning_rate": spec((K,), jnp.float32),
           **({"phase": spec((K,), jnp.int32)} if fns.is_greedy else {})}
  eval_batch = {"image": spec((B,) + image, jnp.uint8), "label": spec((B,), jnp.int32),
                "task": spec((B,), jnp.int32), "mask": spec((B,), jnp.float32)}
  scalar = lambda dtype: spec((), dtype)  # noqa: E731
  task_data = setup.train_data[0]

  def end_task(method_state, params, batch_stats):  # the hook as the loop calls it (vmapped for replicas)
    return method.end_task(method_state, params, batch_stats, 0, task_data)

  table = {
      "init": lambda: (jax.jit(fns.init_variables, static_argnums=1), (spec((2,), jnp.uint32), image)),
      "init_opt": lambda: (jax.jit(replicas.vmap(setup.tx.init, 0)), (state.params,)),
      "train_step": lambda: (setup.steps.train_step, (state, batch, scalar(jnp.float32))),
      "train_steps": lambda: (setup.steps.train_steps, (state, data, steps, scalar(jnp.int32))),
      "eval_step": lambda: (setup.steps.eval_step, (state.params, state.batch_stats, eval_batch,
                                                    state.method_state)),
      "end_task": lambda: (jax.jit(replicas.vmap(end_task, 0)), (state.method_state, state.params,
                                                                   state.batch_stats)),
      "block_eval_step": lambda: (setup.readouts.block_eval_step, (state.params, state.batch_stats, eval_batch)),
  }
  has = lambda n: n != "block_eval_step" or (setup.readouts.active and not replicas.batched)  # noqa: E731
  return {n: table[n]() for n in names if has(n)}


def export_all(setup, names=PROGRAMS, platforms=ACCELERATORS) -> dict:
  """``{program: jax.export.Exported}`` of the programs ``names`` of ``setup``, each exported once for all of
  ``platforms`` (``jax.export`` lowers every operation for each of them, and fails where one has no
  lowering); asserts that none holds a custom call that none of them has (lwcl's oneDNN convolutions, LAPACK).
  """
  out = {}
  for name, (fn, args) in programs(setup, names).items():
    try:
      exported = jax.export.export(fn, platforms=list(platforms))(*args)
    except Exception as e:  # pylint: disable=broad-except
      raise AssertionError(f"{name} does not export for {platforms}: {type(e).__name__}: {e}"[:3000]) from e
    assert exported.platforms == tuple(platforms)
    text = exported.mlir_module()
    foreign = set.intersection(*[foreign_calls(text, p) for p in platforms])
    assert not foreign, f"{name} exported for {platforms} calls {sorted(foreign)}"
    out[name] = exported
  return out


# -- every method in every mode, on the MLP ------------------------------------------------------------

MLP_CASES = sorted({(m, method_mode(m, mode)) for m in METHODS for mode in MODES})


def mlp_programs(method: str, mode: str) -> tuple:
  """What the MLP case of ``method`` in ``mode`` exports: the programs that depend on both (train step, end
  of task, optimizer reset), the K-step loop in ``backprop`` mode (its body is the train step), the evaluation
  step where the method has its own scores (every other method's is fine-tuning's, ``make_eval_step``), and,
  with fine-tuning, what depends on the mode alone (the K-step loop, the network's initialization, the block
  heads' evaluation)."""
  names = ("train_step", "end_task", "init_opt")
  names += ("train_steps",) if mode == "backprop" or method == "finetune" else ()
  names += ("eval_step",) if method == "finetune" or _own_scores(method) else ()
  return names + (("init", "block_eval_step") if method == "finetune" else ())


def _own_scores(method: str) -> bool:
  from lwcl import methods  # pylint: disable=g-import-not-at-top
  return methods.METHODS[method].eval_scores is not methods.Method.eval_scores


@pytest.mark.parametrize("method,mode", MLP_CASES, ids=[f"{m}-{mode}" for m, mode in MLP_CASES])
def test_every_method_and_mode_exports_on_the_mlp(idx_dir, method, mode):
  setup = build(tiny(idx_dir, method, mode, "mlp"))
  assert setup.platforms == ACCELERATORS
  exported = export_all(setup, mlp_programs(method, mode))
  want = set(mlp_programs(method, mode)) - ({"block_eval_step"} if mode == "backprop" else set())
  assert set(exported) == want


def test_the_mlp_cases_cover_every_method_and_mode():
  assert {m for m, _ in MLP_CASES} == set(METHODS)
  assert {mode for _, mode in MLP_CASES} == set(MODES)
  # every built-in method runs in every layer-wise mode (a user's method may opt out: Method.layerwise_local)
  assert len(MLP_CASES) == len(METHODS) * len(MODES)


# -- every model family, a method of each kind ---------------------------------------------------------

# (model, method, mode): on the ConvNet one method of each kind in every mode; on the residual networks (whose
# traces cost several times the ConvNet's) fine-tuning end to end and a layer-wise mode with a method.
FAMILY_CASES = [("convnet", "finetune", "backprop"), ("convnet", "ewc", "local"), ("convnet", "agem", "greedy"),
                ("convnet", "icarl", "backprop"), ("resnet", "si", "local"), ("imagenet_resnet18", "finetune", "local")]
FAMILIES = ("convnet", "resnet", "imagenet_resnet18")


# iCaRL's class-incremental path here (the MLP case runs the default scenario: task-incremental heads)
FAMILY_EXTRA = {"icarl": {"scenario.incremental": "class"}}


@pytest.mark.parametrize("model,method,mode", FAMILY_CASES, ids=["-".join(c) for c in FAMILY_CASES])
def test_every_model_family_exports(idx_dir, model, method, mode):
  setup = build(tiny(idx_dir, method, mode, model, **FAMILY_EXTRA.get(method, {})))
  assert setup.fns.model.conv_impl == "native"
  exported = export_all(setup)
  assert {"train_step", "train_steps", "eval_step", "end_task", "init"} <= set(exported)


def test_the_family_cases_cover_every_family_and_mode():
  assert {model for model, _, _ in FAMILY_CASES} | {"mlp"} == set(FAMILIES) | {"mlp"} == set(MODELS)
  assert {mode for model, _, mode in FAMILY_CASES if model == "convnet"} == set(MODES)


# -- auto on accelerators is native; the CPU keeps oneDNN ------------------------------------------------

@pytest.mark.parametrize("model", ["convnet", "resnet"])
def test_auto_builds_for_accelerators_what_native_builds(idx_dir, model):
  # The steps of auto and of native built for GPU/TPU are the same programs: XLA's convolutions (and the
  # ConvNet's native max pool: reduce_window), no multiply-adds, patches or oneDNN custom calls.
  auto = build(tiny(idx_dir, "finetune", "backprop", model))
  native = build(tiny(idx_dir, "finetune", "backprop", model, **{"model.conv_impl": "native"}))
  texts = [{p: export_all(s, ("train_step",), (p,))["train_step"].mlir_module() for p in ACCELERATORS}
           for s in (auto, native)]
  assert texts[0] == texts[1]
  for platform, text in texts[0].items():
    assert custom_calls(text) <= _ANY_PLATFORM, (platform, custom_calls(text))
    assert "stablehlo.convolution" in text
    assert ("reduce_window" in text) == (model == "convnet")


@pytest.mark.parametrize("model,method,mode", [("convnet", "ewc", "backprop"), ("mlp", "gem", "local")])
def test_bfloat16_programs_export_for_accelerators(idx_dir, model, method, mode):
  # mixed precision (model.dtype=bfloat16) is for GPUs and TPUs: every program of a run exports for both,
  # computes in bfloat16, and keeps its parameters and state float32 (the exported signature)
  setup = build(tiny(idx_dir, method, mode, model, **{"model.dtype": "bfloat16"}))
  exported = export_all(setup)
  assert "bf16" in exported["train_step"].mlir_module()
  for name, exp in exported.items():
    floats = {str(a.dtype) for a in exp.in_avals + exp.out_avals if jnp.issubdtype(a.dtype, jnp.floating)}
    assert floats <= {"float32"}, (name, floats)


def test_cpu_programs_keep_their_cpu_lowerings(idx_dir, onednn_available):
  from lwcl.engine.build import Setup  # pylint: disable=g-import-not-at-top
  from lwcl.models import convnet  # pylint: disable=g-import-not-at-top
  config = tiny(idx_dir, "finetune", "backprop", "convnet")
  from lwcl.platform.targets import target_platforms  # pylint: disable=g-import-not-at-top
  cpu, default = Setup.build(config, platforms="cpu"), Setup.build(config)
  # On a GPU machine (bin/gpu-check) the default is the accelerator; programs built for the CPU still
  # take the CPU's lowerings there.
  assert cpu.platforms == ("cpu",) and default.platforms == target_platforms(None)
  assert cpu.fns.model.conv_impl == "onednn+direct"
  assert all(b.platforms == ("cpu",) for b in cpu.fns.model.blocks if isinstance(b, convnet.ConvStage))
  (fn, args), = programs(cpu, ("train_step",)).values()
  text = fn.lower(*args).as_text()
  assert {"lwcl_onednn_conv_fwd", "lwcl_onednn_conv_bwd_weights"} <= custom_calls(text)
  assert "reduce_window" not in text  # the ConvNet's CPU max pool
  # a program that must also run off the CPU takes no CPU lowering
  assert build(config, platforms=("cpu", "cuda")).fns.model.conv_impl == "native"


def test_a_setup_in_another_task_order_keeps_its_platforms(idx_dir):
  # masked heads: the new order's label masks rebuild the model functions and steps (Setup.with_task_order)
  setup = build(tiny(idx_dir, "finetune", "backprop", "convnet", **{"scenario.task_heads": "masked"}))
  reordered = setup.with_task_order((1, 0))
  assert reordered.fns is not setup.fns
  assert reordered.platforms == ACCELERATORS and reordered.fns.model.conv_impl == "native"
  assert all(b.platforms == ACCELERATORS for b in reordered.fns.model.blocks[:2])


def test_each_accelerator_gets_its_own_linear_algebra(idx_dir):
  # LGD's SVD, exported for one platform at a time: cuSOLVER on GPU, TPU's own decompositions, no LAPACK
  setup = build(tiny(idx_dir, "lgd", "backprop", "mlp"))
  calls = {p: custom_calls(export_all(setup, ("train_step",), (p,))["train_step"].mlir_module())
           for p in ACCELERATORS}
  assert calls["cuda"] and all(t.startswith("cusolver_") for t in calls["cuda"]), calls
  assert calls["tpu"] and calls["tpu"] <= {"Eigh", "Qr", "ProductOfElementaryHouseholderReflectors"}, calls
  assert not foreign_calls(" ".join(f"stablehlo.custom_call @{t}" for t in calls["cuda"]), "cuda")
  assert foreign_calls("stablehlo.custom_call @lapack_ssyevd_ffi stablehlo.custom_call @lwcl_onednn_conv_fwd",
                       "tpu") == {"lapack_ssyevd_ffi", "lwcl_onednn_conv_fwd"}


# -- seeds as replicas ----------------------------------------------------------------------------------

REPLICA_CASES = [("mlp", "ewc", "local"), ("convnet", "der", "backprop")]


@pytest.mark.parametrize("model,method,mode", REPLICA_CASES, ids=["-".join(c) for c in REPLICA_CASES])
def test_seeds_as_replicas_export(idx_dir, model, method, mode):
  from lwcl.runs.axis import ReplicaAxis  # pylint: disable=g-import-not-at-top
  setup = build(tiny(idx_dir, method, mode, model, **{"num_seeds": 2}), ReplicaAxis.of_seeds((0, 1)))
  assert setup.replicas.batched and setup.replicas.size == 2
  exported = export_all(setup, ("init_opt", "train_step", "train_steps", "eval_step", "end_task"))
  state = exported["train_step"].in_avals[0]
  assert state.shape[0] == 2  # the step's state carries the replica axis


# -- data parallel on a mesh ----------------------------------------------------------------------------

MESH_CASES = [("mlp", "ewc", "local"), ("convnet", "agem", "backprop")]


def _mesh_exports(folder: str) -> dict:
  """In a process with 2 CPU devices: every :data:`MESH_CASES` setup on both devices
  (``devices.num_devices=2``), its steps exported for every accelerator; ``{case: {program: (devices,
  batch split over the devices)}}``."""
  import lwcl  # pylint: disable=g-import-not-at-top
  lwcl.configure()
  assert jax.device_count() == 2, jax.devices()
  idx = write_tiny_idx(os.path.join(folder, "idx"))
  out = {}
  for model, method, mode in MESH_CASES:
    setup = build(tiny(idx, method, mode, model, **{"devices.num_devices": 2}))
    exported = export_all(setup, ("train_step", "train_steps", "eval_step", "block_eval_step"))
    # (devices, whether an argument is split over the mesh's data axis: the batch of the one-step programs)
    out["-".join((model, method, mode))] = {n: (e.nr_devices, '[{"data"}' in e.mlir_module())
                                            for n, e in exported.items()}
  # Seeds as replicas split over the mesh's 'replica' axis, one per device.
  from lwcl.runs.axis import ReplicaAxis  # pylint: disable=g-import-not-at-top
  setup = build(tiny(idx, "ewc", "local", "mlp", **{"num_seeds": 2, "devices.num_devices": 2}),
                ReplicaAxis.of_seeds((0, 1)))
  exported = export_all(setup, ("train_step", "train_steps", "eval_step"))
  out["replicas"] = {n: (e.nr_devices, '[{"replica"}' in e.mlir_module()) for n, e in exported.items()}
  return out


def test_data_parallel_and_replica_split_steps_export_on_a_mesh(tmp_path):
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(tmp_path)], capture_output=True, text=True,
                        env=forced_devices(2), cwd=ROOT, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  cases = json.loads(proc.stdout.strip().splitlines()[-1])
  # 2 devices, the replicas' state split over them (devices.replica_shards auto: one replica per device)
  assert cases.pop("replicas") == {n: [2, True] for n in ("train_step", "train_steps", "eval_step")}
  assert sorted(cases) == sorted("-".join(c) for c in MESH_CASES)
  for case, exported in cases.items():
    assert {"train_step", "train_steps", "eval_step"} <= set(exported), case
    assert ("block_eval_step" in exported) == ("local" in case)
    # 2 devices, the batch split over them (the one-step programs' argument; the K-step loop's gathered
    # batch, by a sharding constraint)
    assert all(devices == 2 and split for devices, split in exported.values()), (case, exported)


if __name__ == "__main__":
  print(json.dumps(_mesh_exports(sys.argv[1])))
