"""The rehearsal configs (configs/rehearsal_split_fashion_mnist.py, CPU; configs/rehearsal_seq_cifar.py,
GPU): every argument builds a config that passes the validation ``python -m lwcl.main`` runs, bad arguments
are one clear error, the CIFAR configs' network is Mammoth's ResNet-18 (its parameter count), their
settings are Mammoth's, and ``cifar10:der-200`` shrunk builds its engine on mock TFDS data and lowers its
train and evaluation steps."""

import os
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwcl.config import files as config_files
from lwcl.engine.experiment import Experiment
from lwcl.errors import ConfigError
from lwcl.models import build_model
from lwcl.runs import driver

from helpers import ROOT

FMNIST = os.path.join(ROOT, "configs", "rehearsal_split_fashion_mnist.py")
CIFAR = os.path.join(ROOT, "configs", "rehearsal_seq_cifar.py")


def _fmnist_arguments() -> list:
  m = config_files.load(FMNIST)
  return [*m.REHEARSAL, *(f"{n}-{b}" for n in m.REHEARSAL + m.MEMORY for b in m.BUFFERS), *m.OTHERS]


def _load(path: str, arg: str):
  """``--config=path:arg`` loaded and validated as ``python -m lwcl.main`` does (types, values), locked."""
  c = config_files.load_spec(f"{path}:{arg}")
  c.lock()
  driver.check(c)
  return c


def test_every_argument_builds_and_passes_validation():
  for arg in _fmnist_arguments():
    c = _load(FMNIST, arg)
    method = {"lgd_authors": "lgd"}.get(arg.partition("-")[0], arg.partition("-")[0])
    assert c.scenario.incremental == "class" and c.method.name == method, arg
  cifar = config_files.load(CIFAR)
  args = list(cifar.ARGUMENTS) + ["cifar10:er", "cifar100:icarl"]  # without -BUFFER: 500
  assert {a.partition(":")[0] for a in args} == {"cifar10", "cifar100"} and len(cifar.ARGUMENTS) == 32
  for arg in args:
    c = _load(CIFAR, arg)
    dataset, method = arg.partition("-")[0].split(":")
    assert (c.data.name, c.data.source, c.method.name, c.scenario.incremental) == (dataset, "tfds", method, "class")
    assert (c.scenario.num_tasks, c.scenario.classes_per_task) == ((5, 2) if dataset == "cifar10" else (10, 10))
    assert (c.model.name, c.model.width, c.train.batch_size, c.train.epochs_per_task) == (
        "reduced_resnet18", 64, 32, 50)
    assert c.data.augment.random_crop and c.data.augment.crop_padding == 4 and c.data.augment.horizontal_flip
    assert c.data.normalize == "standardize" and c.optimizer.name == "sgd" and c.optimizer.momentum == 0.0
    assert c.optimizer.schedule == ("constant" if dataset == "cifar10" else "step"), arg


def _settings(arg: str) -> tuple:
  c = config_files.load(CIFAR).get_config(arg)
  return c.optimizer, c.method


def test_settings_are_mammoths():
  opt, m = _settings("cifar10:derpp-500")
  assert (opt.learning_rate, m.buffer_size, m.replay_batch, m.der_alpha, m.der_beta) == (0.03, 500, 32, 0.2, 0.5)
  opt, m = _settings("cifar10:derpp-5120")
  assert (m.der_alpha, m.der_beta) == (0.1, 1.0)
  opt, m = _settings("cifar10:er")
  assert (opt.learning_rate, m.buffer_size, m.replay_batch) == (0.1, 500, 32)
  opt, m = _settings("cifar10:der-200")
  assert (opt.learning_rate, m.buffer_size, m.der_alpha, opt.weight_decay) == (0.03, 200, 0.3, 0.0)
  opt, m = _settings("cifar10:icarl-5120")
  assert (opt.learning_rate, m.icarl_memory, opt.weight_decay) == (0.03, 5120, 2e-5)
  opt, m = _settings("cifar10:lwf")
  assert (opt.learning_rate, m.lwf_alpha, m.lwf_temperature, opt.weight_decay) == (0.01, 3.0, 2.0, 5e-4)
  opt, m = _settings("cifar10:gem-200")
  assert (opt.learning_rate, m.memory_per_task, m.gem_margin) == (0.03, 40, 0.5)
  opt, m = _settings("cifar10:agem-5120")
  assert (opt.learning_rate, m.memory_per_task, m.agem_ref_batch) == (0.03, 1024, 32)
  assert _settings("cifar10:joint")[0].learning_rate == _settings("cifar10:finetune")[0].learning_rate == 0.1
  opt, m = _settings("cifar100:icarl-2000")
  assert (opt.learning_rate, m.icarl_memory, opt.weight_decay) == (0.3, 2000, 2e-5)
  assert (opt.schedule, opt.decay_every_epochs, opt.decay_factor) == ("step", 35, 0.1)
  opt, m = _settings("cifar100:lwf")
  assert (opt.learning_rate, m.lwf_alpha, m.lwf_temperature, opt.weight_decay) == (0.03, 0.5, 2.0, 5e-4)
  opt, m = _settings("cifar100:derpp-2000")
  assert (opt.learning_rate, m.replay_batch, m.der_alpha, m.der_beta) == (0.03, 32, 0.1, 0.5)


def test_fmnist_episodic_memories_are_the_buffer_split_over_the_tasks():
  get = config_files.load(FMNIST).get_config
  si = get("si")
  assert (si.optimizer.learning_rate, si.method.strength, si.method.si_xi, si.optimizer.grad_clip_value) == (
      0.1, 2.0, 0.9, 1.0)  # Mammoth's seq-mnist SI (c = strength / 2), its gradient clipped by value at 1
  assert get("ewc").optimizer.grad_clip_value == 0.0
  for arg, per_task, lr in (("lgd", 100, 0.03), ("lgd-200", 40, 0.03), ("gem-200", 40, 0.01), ("agem", 100, 0.1)):
    c = get(arg)
    assert (c.method.memory_per_task, c.optimizer.learning_rate) == (per_task, lr), arg
  equation, authors = get("lgd-200").method, get("lgd_authors-200").method
  assert (authors.name, authors.memory_per_task) == ("lgd", 40)
  ruled = {k: v for k, v in authors.items() if v != equation[k]}
  # the released rule's keys (configs/lgd_permuted_fashion_mnist.py's authors preset; lgd_push 'sum' is the
  # default), nothing else
  assert ruled == {"lgd_margin": 0.5, "lgd_single_task_push": True, "grouping": "tensors:5", "lgd_top_k": 3}
  assert authors.lgd_push == "sum"
  assert get("lgd_authors").optimizer.learning_rate == get("lgd").optimizer.learning_rate
  for arg in ("ewc-200", "lwf-500", "finetune-200"):
    with pytest.raises(ValueError, match=f"{arg.partition('-')[0]} keeps no memory; drop '-"):
      get(arg)


@pytest.mark.parametrize("arg,fragments", [
    ("der-500", ["is not DATASET:METHOD[-BUFFER]", "cifar10, cifar100"]),
    ("cifar10", ["is not DATASET:METHOD[-BUFFER]"]),
    ("svhn:der-500", ["is not DATASET:METHOD[-BUFFER]"]),
    ("cifar10:nai", ["method 'nai' has no Mammoth settings on seq-cifar10", "derpp"]),
    ("cifar100:agem-500", ["method 'agem' has no Mammoth settings on seq-cifar100"]),
    ("cifar100:der-200", ["buffers 500, 2000", "cifar100:der-2000"]),
    ("cifar10:der-2000", ["buffers 200, 500, 5120"]),
    ("cifar10:der-big", ["buffers 200, 500, 5120"]),
    ("cifar10:lwf-500", ["lwf has no buffer; use cifar10:lwf"]),
])
def test_bad_arguments_are_one_clear_error(arg, fragments):
  with pytest.raises(ValueError) as e:
    config_files.load(CIFAR).get_config(arg)
  for f in fragments:
    assert f in str(e.value), str(e.value)
  with pytest.raises(ConfigError, match="does not load .*ValueError: config argument"):
    config_files.load_spec(f"{CIFAR}:{arg}")  # as --config reports it, in one line


@pytest.mark.parametrize("dataset,classes,mammoth", [("cifar10", 10, 11_173_962), ("cifar100", 100, 11_220_132)])
def test_network_is_mammoths_resnet18(dataset, classes, mammoth):
  """Mammoth's ``resnet18(nclasses)`` has 11,173,962 parameters for 10 classes (BatchNorm's running
  statistics are buffers, not parameters); 100 classes add 90 x (512 + 1). Evaluated abstractly."""
  c = config_files.load(CIFAR).get_config(f"{dataset}:der-500")
  assert c.scenario.num_tasks * c.scenario.classes_per_task == classes
  net = build_model(c.model, types.SimpleNamespace(num_heads=1, output_dim=classes))  # one shared head
  variables = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)),
                                              jnp.zeros((2,), jnp.int32), train=False))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"])) == mammoth
  assert variables["params"]["head"]["kernel"].shape == (1, 512, classes)


def test_cifar10_der_200_builds_and_lowers_its_programs_on_mock_tfds():
  # The whole config through the engine without compiling a ResNet-18 (minutes of CPU): data from TFDS
  # (mock), the network, DER's buffer in the method state, the train and evaluation steps traced and lowered
  # for the CPU from the initial state's shapes. Compiled end-to-end TFDS runs: tests/e2e/test_tfds_source.py.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  c = config_files.load_spec(f"{CIFAR}:cifar10:der-200")
  for key, value in {"model.width": 4, "scenario.samples_per_task": 16, "train.batch_size": 8,
                     "method.replay_batch": 8, "train.progress": False, "model.conv_impl": "native"}.items():
    config_files.set_key(c, key, value)
  c.lock()
  driver.check(c)
  with tfds.testing.mock_data(num_examples=200):
    exp = Experiment(c)
  assert exp.scenario.num_tasks == 5 and type(exp.method).__name__ == "DER"
  state = jax.eval_shape(exp.initial_state)
  data = exp.train_data[0]
  chex.assert_shape(data.images, (16, 32, 32, 3))
  batch = {"image": data.images[:8], "label": data.labels[:8], "task": data.tasks[:8]}
  lowered = exp.train_step.lower(state, batch, jnp.float32(0.03))
  assert "stablehlo" in lowered.as_text()[:20000]
  eval_batch = dict(batch, mask=np.ones(8, np.float32))
  exp.eval_step.lower(state.params, state.batch_stats, eval_batch, state.method_state)
