"""Rehearsal baselines on class-incremental sequential CIFAR-10 and CIFAR-100 (GPU): Mammoth's
``seq-cifar10`` (5 tasks of 2 classes) and ``seq-cifar100`` (10 tasks of 10 classes) with its ResNet-18,
one head shared by every task. For GPUs: a ResNet-18 at 50 epochs per task does not run on a 2-core CPU.

    python -m lwcl.main --config=configs/rehearsal_seq_cifar.py:cifar10:der-500 --config.num_seeds=5 \\
        --workdir=runs/seq_cifar10_der500

The argument is ``DATASET:METHOD[-BUFFER]``: DATASET ``cifar10`` or ``cifar100``; METHOD ``er``, ``der``,
``derpp``, ``icarl`` (with a buffer, 500 when none is given), ``lwf``, ``finetune``, ``joint`` (without),
and on CIFAR-10 also ``agem``, ``gem`` (with a buffer; Mammoth has no settings for them on seq-cifar100);
BUFFER one of the sizes Mammoth has settings for: 200, 500, 5120 on CIFAR-10, 500, 2000 on CIFAR-100.
:data:`ARGUMENTS` lists them all. CIFAR comes from TFDS (``data.data_dir``; downloaded on first use).

Settings copied from Mammoth (aimagelab/mammoth at :data:`MAMMOTH_COMMIT`; :data:`MAMMOTH` below is
``utils/best_args.py``'s ``'seq-cifar10'`` / ``'seq-cifar100'`` entries under Mammoth's own names):

* ``datasets/seq_cifar10.py``, ``seq_cifar100.py``: 50 epochs per task, batch 32; training images randomly
  cropped to 32 after padding by 4, flipped left-right with probability 1/2, normalized per channel
  (Mammoth's constants, CIFAR-10 mean 0.4914, 0.4822, 0.4465 / std 0.2470, 0.2435, 0.2615, CIFAR-100 mean
  0.5071, 0.4867, 0.4408 / std 0.2675, 0.2565, 0.2761, are the training set's statistics, which lwcl's
  ``data.normalize = 'standardize'`` computes from the TFDS training split); classes in the data set's order.
  seq-cifar100 sets ``lr_scheduler = multisteplr`` with ``lr_milestones = [35, 45]`` (gamma: Mammoth's
  default ``sched_multistep_lr_gamma`` 0.1), restarted at every task; seq-cifar10 has no schedule.
* ``backbone/ResNetBlock.py`` ``resnet18``: a CIFAR ResNet-18 (3x3 stem of 64 channels, stride 1, no max
  pool, BasicBlocks [2, 2, 2, 2] of 64, 128, 256, 512 channels, 1x1 projection shortcuts with BatchNorm,
  global average pooling, a linear head): lwcl's ``reduced_resnet18`` at ``model.width = 64`` is that
  network, with exactly its 11,173,962 parameters for 10 classes (11,220,132 for 100;
  tests/config/test_rehearsal_configs.py).
* ``utils/best_args.py``: plain SGD (``optim_mom`` 0) with the learning rate per method and buffer;
  ``minibatch_size`` is ``method.replay_batch`` (ER, DER, DER++) or ``method.agem_ref_batch`` (A-GEM),
  Mammoth's default (the batch size, 32) where the entry has none (all of seq-cifar100); ``alpha`` and
  ``beta`` are ``method.der_alpha`` / ``der_beta`` (DER, DER++) or ``method.lwf_alpha`` (LwF, with
  ``softmax_temp`` as ``method.lwf_temperature``; seq-cifar100's LwF entry has neither, so Mammoth's
  defaults of ``models/lwf.py``, alpha 0.5 and temperature 2); ``optim_wd`` is ``optimizer.weight_decay``
  (LwF 5e-4, added to the gradient as PyTorch's SGD does); GEM's ``gamma`` is ``method.gem_margin``; the
  buffer is ``method.buffer_size`` (ER, DER, DER++), ``method.icarl_memory`` (iCaRL) or split evenly over
  the tasks as ``method.memory_per_task`` (A-GEM, GEM); fine-tuning and joint training take the ``sgd``
  entry (Mammoth's joint uses it too).

Mammoth's settings per method and buffer (lr / replay batch / alpha / beta; "-" not used):

=======  ======  =======================  =======================  ======================
data     method  buffer 200               buffer 500               buffer 5120 (2000)
=======  ======  =======================  =======================  ======================
cifar10  er      0.1 / 32 / - / -         0.1 / 32 / - / -         0.1 / 32 / - / -
cifar10  der     0.03 / 32 / 0.3 / -      0.03 / 32 / 0.3 / -      0.03 / 32 / 0.3 / -
cifar10  derpp   0.03 / 32 / 0.1 / 0.5    0.03 / 32 / 0.2 / 0.5    0.03 / 32 / 0.1 / 1.0
cifar10  icarl   0.1, wd 1e-5             0.1, wd 1e-5             0.03, wd 1e-5
cifar10  agem    0.03 / 32                0.03 / 32                0.03 / 32
cifar10  gem     0.03, gamma 0.5          0.03, gamma 0.5          0.03, gamma 0.5
cifar100 er      (none)                   0.1 / 32 / - / -         (2000) 0.1 / 32 / - / -
cifar100 der     (none)                   0.03 / 32 / 0.3 / -      (2000) 0.03 / 32 / 0.3 / -
cifar100 derpp   (none)                   0.03 / 32 / 0.1 / 0.5    (2000) 0.03 / 32 / 0.1 / 0.5
cifar100 icarl   (none)                   0.3, wd 1e-5             (2000) 0.3, wd 1e-5
=======  ======  =======================  =======================  ======================

Without a buffer: LwF lr 0.01, alpha 3, temperature 2, wd 5e-4 (CIFAR-10), lr 0.03, alpha 0.5,
temperature 2, wd 5e-4 (CIFAR-100); fine-tuning and joint lr 0.1 (CIFAR-10), 0.03 (CIFAR-100).

What differs from Mammoth, and why:

* **Learning-rate schedule (CIFAR-100).** lwcl has no milestone schedule; its ``step`` schedule with
  ``decay_every_epochs = 35``, ``decay_factor = 0.1`` decays at epoch 35 of each task only, so the last
  5 epochs of a task run at 0.1 x lr where Mammoth's second milestone (45) gives 0.01 x lr.
* **Augmentation.** lwcl normalizes before it pads, so the random crop's padding is the mean colour (0
  after normalization) where torchvision's ``RandomCrop`` pads the raw image with black.
* **Batches.** lwcl drops each epoch's last partial batch (312 steps per epoch on a CIFAR-10 task, 156 on
  a CIFAR-100 task, against Mammoth's 313 / 157); replay batches are padded while the buffer holds fewer
  examples than asked, and BatchNorm's running statistics follow the loss batch only
  (``lwcl/methods/replay.py``).
* **Initialization.** Flax's (LeCun normal kernels, zero biases) instead of PyTorch's default.
* **iCaRL** (``lwcl/methods/icarl.py``): Mammoth adds ``opt_wd * sum(p^2)`` to the loss (``opt_wd``
  1e-5; the ``optim_wd`` of its best args is that value), here ``optimizer.weight_decay = 2e-5``, the same
  gradient; exemplars join each minibatch, weighted as their share of Mammoth's union of task data and
  exemplars; Mammoth's ``softmax_temp`` and ``minibatch_size`` for iCaRL are read by nothing in its iCaRL.
* **LwF** (``lwcl/methods/lwf.py``): no warm-up of the classifier before each task, and the
  cross-entropy over every output, not only the classes seen so far.
* **A-GEM, GEM.** lwcl keeps ``buffer // 5`` examples per task (the last ones seen). Mammoth's A-GEM (at
  this commit) computes ``buffer_size // N_TASKS`` but stores one minibatch (32 examples) of each task;
  its GEM refills a class-balanced buffer of ``buffer_size`` examples over the classes seen at every task
  end. GEM computes its old tasks' gradients one task at a time (lwcl's default
  ``method.memory_grad_chunk = 1``: the same gradients up to float rounding, with a quarter of the memory
  of one vmap over 4 old tasks).
* **Joint.** lwcl's joint training is cumulative: task ``t`` trains on the union of tasks ``0..t`` for
  50 epochs (about 3x the steps of one pass on CIFAR-10, 5.5x on CIFAR-100), and the network after the
  last task has trained on all the data; Mammoth's trains nothing during the tasks and, after the last,
  trains the initial network for 50 epochs on all the data. The final accuracies compare; the accuracy
  matrices before the last task do not.
* ``checkpoint.every_steps = 2000`` (lwcl's own; a checkpoint holds every replica's network and buffer).

Which Mammoth settings: at this commit Mammoth's ``main.py`` warns that ``--load_best_args`` (which reads
``utils/best_args.py``) is "untested and not up to date"; its per-model files ``models/config/*.yaml``
(``--model_config best``) cover only a few of these cases, and differ from best_args in seq-cifar100 DER
and DER++ 500 (the ``xder`` data set config: schedule gamma 0.2; DER++ alpha 0.3), seq-cifar100 iCaRL 2000
(the original iCaRL recipe: ResNet-32, 70 epochs, lr 2) and seq-cifar10 LwF (lr 0.03). best_args, the one
table with every method and buffer (seq-cifar100's entries came with Mammoth's X-DER code, commit
0d727a7), is what is copied here.
"""

from lwcl.config.files import default_config

MAMMOTH_COMMIT = "e75a491c69fd729edeb01431afb753d9157d9a81"  # aimagelab/mammoth, read 2026-05

# Mammoth's data sets: lwcl's TFDS name -> tasks, classes per task, epochs, batch, LR milestones.
DATASETS = {
    "cifar10": {"num_tasks": 5, "classes_per_task": 2, "epochs": 50, "batch_size": 32, "milestones": ()},
    "cifar100": {"num_tasks": 10, "classes_per_task": 10, "epochs": 50, "batch_size": 32, "milestones": (35, 45)},
}

# utils/best_args.py, 'seq-cifar10' / 'seq-cifar100', with Mammoth's names; -1: a method without a buffer
# (Mammoth's key). Entries' batch_size / n_epochs (32 / 50 everywhere) are DATASETS'; optim_mom is 0
# everywhere. 'finetune' and 'joint' are Mammoth's 'sgd'.
_C10_ICARL = {"minibatch_size": 0, "softmax_temp": 2.0, "optim_wd": 1e-5}
MAMMOTH = {
    "cifar10": {
        "finetune": {-1: {"lr": 0.1}},
        "joint": {-1: {"lr": 0.1}},
        "lwf": {-1: {"lr": 0.01, "alpha": 3.0, "softmax_temp": 2.0, "optim_wd": 0.0005}},
        "er": {b: {"lr": 0.1, "minibatch_size": 32} for b in (200, 500, 5120)},
        "der": {b: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.3} for b in (200, 500, 5120)},
        "derpp": {200: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.1, "beta": 0.5},
                  500: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.2, "beta": 0.5},
                  5120: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.1, "beta": 1.0}},
        "icarl": {200: {"lr": 0.1, **_C10_ICARL}, 500: {"lr": 0.1, **_C10_ICARL}, 5120: {"lr": 0.03, **_C10_ICARL}},
        "agem": {b: {"lr": 0.03, "minibatch_size": 32} for b in (200, 500, 5120)},
        "gem": {b: {"lr": 0.03, "gamma": 0.5} for b in (200, 500, 5120)},
    },
    "cifar100": {
        "finetune": {-1: {"lr": 0.03, "optim_mom": 0, "optim_wd": 0}},
        "joint": {-1: {"lr": 0.03, "optim_mom": 0, "optim_wd": 0}},
        "lwf": {-1: {"lr": 0.03, "optim_mom": 0, "optim_wd": 5e-4}},
        "er": {b: {"lr": 0.1, "optim_mom": 0, "optim_wd": 0} for b in (500, 2000)},
        "der": {b: {"lr": 0.03, "optim_mom": 0, "optim_wd": 0, "alpha": 0.3} for b in (500, 2000)},
        "derpp": {b: {"lr": 0.03, "optim_mom": 0, "optim_wd": 0, "alpha": 0.1, "beta": 0.5} for b in (500, 2000)},
        "icarl": {b: {"lr": 0.3, "optim_mom": 0, "optim_wd": 1e-05} for b in (500, 2000)},
    },
}
# Mammoth's defaults where an entry has no value: models/lwf.py's alpha and softmax_temp, models/icarl.py's
# opt_wd (its iCaRL adds opt_wd * sum(p^2) to the loss and zeroes the optimizer's optim_wd).
LWF_DEFAULTS = {"alpha": 0.5, "softmax_temp": 2.0}
ICARL_OPT_WD = 1e-5
SCHEDULE_GAMMA = 0.1  # Mammoth's sched_multistep_lr_gamma default
DEFAULT_BUFFER = 500


def _buffers(dataset: str, method: str) -> tuple:
  return tuple(b for b in MAMMOTH[dataset][method] if b != -1)


# Every argument get_config accepts (the rehearsal methods also without -BUFFER, meaning -500).
ARGUMENTS = tuple(f"{d}:{m}" + (f"-{b}" if b != -1 else "") for d in MAMMOTH for m in MAMMOTH[d]
                  for b in MAMMOTH[d][m])


def _parse(arg: str) -> tuple:
  """``DATASET:METHOD[-BUFFER]`` -> (dataset, method, buffer or -1).

  Raises:
    ValueError: an unknown data set or method, a buffer without Mammoth settings, or a buffer given to a
      method that has none.
  """
  dataset, colon, rest = (arg or "").strip().partition(":")
  if not colon or dataset not in MAMMOTH:
    raise ValueError(f"config argument '{arg}' is not DATASET:METHOD[-BUFFER] with DATASET one of "
                     f"{', '.join(MAMMOTH)} (e.g. cifar10:der-500)")
  method, dash, size = rest.partition("-")
  methods = MAMMOTH[dataset]
  if method not in methods:
    raise ValueError(f"config argument '{arg}': method '{method}' has no Mammoth settings on seq-{dataset}; "
                     f"use one of {', '.join(methods)}")
  buffers = _buffers(dataset, method)
  if not buffers:
    if dash:
      raise ValueError(f"config argument '{arg}': {method} has no buffer; use {dataset}:{method}")
    return dataset, method, -1
  if not dash:
    return dataset, method, DEFAULT_BUFFER
  if not size.isdigit() or int(size) not in buffers:
    raise ValueError(f"config argument '{arg}': Mammoth's seq-{dataset} settings for {method} exist for "
                     f"buffers {', '.join(map(str, buffers))} (e.g. {dataset}:{method}-{buffers[-1]})")
  return dataset, method, int(size)


def get_config(arg: str = "cifar10:der-500"):
  dataset, method, buffer = _parse(arg)
  data, best = DATASETS[dataset], MAMMOTH[dataset][method][buffer]
  c = default_config(__file__)
  c.data.name = dataset
  c.data.source = "tfds"
  c.data.normalize = "standardize"
  c.data.augment.random_crop = True
  c.data.augment.crop_padding = 4
  c.data.augment.horizontal_flip = True
  c.scenario.kind = "split"
  c.scenario.incremental = "class"
  c.scenario.num_tasks = data["num_tasks"]
  c.scenario.classes_per_task = data["classes_per_task"]
  c.model.name = "reduced_resnet18"  # at width 64: Mammoth's resnet18
  c.model.width = 64
  c.train.epochs_per_task = data["epochs"]
  c.train.batch_size = data["batch_size"]
  c.checkpoint.every_steps = 2000
  c.optimizer.name = "sgd"
  c.optimizer.momentum = float(best.get("optim_mom", 0.0))
  c.optimizer.learning_rate = best["lr"]
  c.optimizer.weight_decay = float(best.get("optim_wd", 0.0))
  if data["milestones"]:  # the first milestone only: lwcl's step schedule decays at multiples of it
    c.optimizer.schedule = "step"
    c.optimizer.decay_every_epochs = data["milestones"][0]
    c.optimizer.decay_factor = SCHEDULE_GAMMA
  c.method.name = method
  replay_batch = best.get("minibatch_size", data["batch_size"])
  if method in ("er", "der", "derpp"):
    c.method.buffer_size = buffer
    c.method.replay_batch = replay_batch
    c.method.der_alpha = best.get("alpha", c.method.der_alpha)
    c.method.der_beta = best.get("beta", c.method.der_beta)
  elif method == "icarl":
    c.method.icarl_memory = buffer
    c.optimizer.weight_decay = 2 * ICARL_OPT_WD  # the gradient of Mammoth's opt_wd * sum(p^2)
  elif method in ("agem", "gem"):
    c.method.memory_per_task = buffer // data["num_tasks"]
    if method == "agem":
      c.method.agem_ref_batch = replay_batch
    else:
      c.method.gem_margin = best["gamma"]
  elif method == "lwf":
    c.method.lwf_alpha = best.get("alpha", LWF_DEFAULTS["alpha"])
    c.method.lwf_temperature = best.get("softmax_temp", LWF_DEFAULTS["softmax_temp"])
  return c
