"""Rehearsal baselines on class-incremental Split Fashion-MNIST (CPU): 5 tasks of 2 classes, one 10-way head
shared by every task, the default ConvNet, Mammoth's ``seq-mnist`` protocol.

The argument picks the method and, for the rehearsal methods, the buffer: ``er``, ``der``, ``derpp``,
``icarl`` (buffer or exemplar memory 500), or with the buffer after a dash, ``er-200``, ``der-5120``...;
the baselines of the same table: ``finetune``, ``joint``, ``ewc``, ``si``, ``agem``, ``gem``, ``nai``,
``lgd``, ``lgd_authors``, ``lwf`` (``agem``, ``gem``, ``lgd`` and ``lgd_authors`` keep an episodic memory of
the buffer's total size, 500 or after a dash, split over the tasks: ``gem-200`` keeps 40 examples per task;
the other baselines keep no memory, and a buffer given to them is an error). ``lgd`` is LGD with the paper's
rule (lwcl's defaults), ``lgd_authors`` with the authors' released rule (``configs/lgd_permuted_fashion_mnist.py``'s
``authors`` preset: margin 0.5 pushed along the sum of the old gradients, groups of 5 parameter tensors,
top-3 residual basis), at the same learning rate and memory.

Settings copied from Mammoth (aimagelab/mammoth, ``utils/best_args.py``, ``'seq-mnist'``, the values its
authors selected per method and buffer size, and ``datasets/seq_mnist.py``): SGD without momentum, batch 10,
1 epoch per task, every training example, no augmentation; ER lr 0.01 (buffer 200) / 0.1 (500, 5120) with a
replay batch of 10; DER lr 0.03 / 0.03 / 0.1, alpha 0.2 / 1.0 / 0.5, replay batch 10 / 128 / 128; DER++ lr
0.03 / 0.03 / 0.1, alpha 0.2 / 1.0 / 0.2, beta 1.0 / 0.5 / 0.5, replay batch 128 / 10 / 64; iCaRL lr 0.1 with
the buffer as its exemplar memory (``method.icarl_memory``) and no weight decay; A-GEM lr 0.1,
reference batch 128; GEM lr 0.01 / 0.03 / 0.1 with margin 1.0 / 0.5 / 1.0 (Mammoth's ``gamma``); SI lr 0.1
with c 1.0, xi 0.9 and every gradient element clipped to [-1, 1] (``optimizer.grad_clip_value``, Mammoth's
``clip_grad_value_``: without it, seed 6 of lwcl's ConvNet diverges in task 2, SI's quadratic penalty at
importance 21 on 16 head weights being unstable for SGD at lr 0.1 beyond 10; SI's importance is Zenke et
al.'s path integral of the task loss's gradient, where Mammoth sums ``lr * g^2`` of the clipped total
gradient); LwF lr 0.03, alpha 1, temperature 2, weight decay 5e-4; fine-tuning, joint and the
other methods lr 0.03 (Mammoth's ``sgd``). What differs from Mammoth: the data set (Fashion-MNIST, not
MNIST) and the network (lwcl's default ConvNet, not Mammoth's MLP 100-100); NAI, EWC (not Mammoth's online
EWC), LGD keep lwcl's defaults (strength 1; LGD's rule and lr 0.03 with GEM's memory: not tuned for this
protocol; Mammoth has no LGD). GEM and LGD compute the old tasks'
memory gradients one task at a time (lwcl's default ``method.memory_grad_chunk = 1``), only for tasks
already seen: the same gradients up to rounding as one vmap over every slot (``0``), at t / 4 of its
memory work at task t (``bin/bench projection``'s second table measures the step).
"""

from lwcl.config.files import default_config, sibling

BUFFERS = (200, 500, 5120)
REHEARSAL = ("er", "der", "derpp", "icarl")
OTHERS = ("finetune", "joint", "ewc", "si", "agem", "gem", "nai", "lgd", "lgd_authors", "lwf")
MEMORY = ("agem", "gem", "lgd", "lgd_authors")  # episodic memory of the buffer's size, split over the tasks
# Mammoth 'seq-mnist' best args per buffer: lr, minibatch_size (replay batch), alpha, beta.
MAMMOTH = {
    "er": {200: (0.01, 10, 0.0, 0.0), 500: (0.1, 10, 0.0, 0.0), 5120: (0.1, 10, 0.0, 0.0)},
    "der": {200: (0.03, 10, 0.2, 0.0), 500: (0.03, 128, 1.0, 0.0), 5120: (0.1, 128, 0.5, 0.0)},
    "derpp": {200: (0.03, 128, 0.2, 1.0), 500: (0.03, 10, 1.0, 0.5), 5120: (0.1, 64, 0.2, 0.5)},
}
GEM = {200: (0.01, 1.0), 500: (0.03, 0.5), 5120: (0.1, 1.0)}  # lr, margin (Mammoth's gamma)
ICARL_LR = 0.1  # Mammoth's seq-mnist icarl: lr 0.1, optim_wd 0, batch 10, 1 epoch, for every buffer


def get_config(arg: str = "der"):
  name, _, size = arg.partition("-")
  if name not in REHEARSAL + OTHERS or (size and not size.isdigit()):
    raise ValueError(f"config argument '{arg}' is not a method of {', '.join(REHEARSAL + OTHERS)}, optionally "
                     "with -BUFFER (e.g. der-200)")
  if size and name not in REHEARSAL + MEMORY:
    raise ValueError(f"config argument '{arg}': {name} keeps no memory; drop '-{size}' (a buffer is for "
                     f"{', '.join(REHEARSAL + MEMORY)})")
  buffer = int(size) if size else 500
  c = default_config(__file__)
  c.scenario.kind = "split"
  c.scenario.incremental = "class"
  c.scenario.num_tasks = 5
  c.scenario.classes_per_task = 2
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.0
  c.optimizer.learning_rate = 0.03
  c.train.batch_size = 10
  c.train.epochs_per_task = 1
  c.method.name = name
  if name == "lgd_authors":  # method.name lgd, the released rule's keys
    sibling(__file__, "lgd_permuted_fashion_mnist").apply_preset(c, "authors")
  if name == "icarl":
    c.optimizer.learning_rate = ICARL_LR
    c.method.icarl_memory = buffer
  elif name in REHEARSAL:
    if buffer not in MAMMOTH[name]:
      raise ValueError(f"config argument '{arg}': Mammoth's settings exist for buffers {BUFFERS}")
    lr, replay_batch, alpha, beta = MAMMOTH[name][buffer]
    c.optimizer.learning_rate = lr
    c.method.buffer_size = buffer
    c.method.replay_batch = replay_batch
    c.method.der_alpha = alpha if name != "er" else c.method.der_alpha
    c.method.der_beta = beta if name == "derpp" else c.method.der_beta
  elif name in MEMORY:
    c.method.memory_per_task = max(buffer // c.scenario.num_tasks, 1)
    if name == "agem":
      c.optimizer.learning_rate = 0.1
      c.method.agem_ref_batch = 128
    elif name == "gem":
      c.optimizer.learning_rate, c.method.gem_margin = GEM.get(buffer, GEM[500])
  if name == "lwf":  # Mammoth's lwf: lr 0.03, alpha 1, softmax_temp 2, optim_wd 5e-4 (SGD's weight_decay)
    c.method.lwf_alpha, c.method.lwf_temperature = 1.0, 2.0
    c.optimizer.weight_decay = 5e-4
  elif name == "si":
    c.optimizer.learning_rate = 0.1
    c.method.strength, c.method.si_xi = 2.0, 0.9  # Mammoth's c 1.0 (lwcl's SI c is strength / 2), xi 0.9
    c.optimizer.grad_clip_value = 1.0  # Mammoth's si.py: clip_grad_value_(params, 1) before every step
  return c
