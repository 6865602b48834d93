"""The options of the run's own sections: the top-level keys, ``optimizer``, ``train``, ``eval`` and ``sweep``.

Their readers (:mod:`lwcl.engine.optim`, :mod:`lwcl.engine.loop`, :mod:`lwcl.runs`) sit above
:mod:`lwcl.config`, which the engine imports, so their declarations live here, where both the validator
(:mod:`lwcl.config.options`) and the readers can import them: :mod:`lwcl.engine.optim` exposes
:data:`OPTIMIZER` as its ``OPTIONS``, :mod:`lwcl.runs.sweep` :data:`SWEEP`. The other sections are declared
by the components that read them (models, scenarios, data sources, layer-wise training, checkpoints,
devices, methods).
"""

from __future__ import annotations

from lwcl.core.options import Option

TOP_LEVEL = (
    Option("seed", 0, "model initialization, training order, augmentation (a 32-bit PRNG seed: JAX's key "
           "of seed + 2**32 is the key of seed)", minimum=0, maximum=2**32),
    Option("num_orders", 0, "> 0: run the stream in this many distinct task orders (order 0 = as defined; "
           "lwcl/runs/orders.py); 0 = one order", minimum=0),
    Option("num_seeds", 0, "> 0: train seeds seed..seed+R-1 as R replicas of one vmapped program "
           "(lwcl/runs/seeds.py); with num_orders or sweep.key, every order or candidate over these seeds; "
           "0 = one seed", minimum=0),
    Option("orders_as_replicas", True, "num_orders: the orders as replicas of one vmapped program (False: one "
           "after another, e.g. convolutional models on CPU); same results up to float rounding"),
)

OPTIMIZER = (
    Option("optimizer.name", "sgd", "the optimizer", choices=("sgd", "adam", "adamw")),
    Option("optimizer.learning_rate", 0.01, "the (peak) learning rate", minimum=0, strict=True),
    Option("optimizer.momentum", 0.9, "sgd: momentum (0 = none)", minimum=0.0, maximum=1.0),
    Option("optimizer.nesterov", False, "sgd: Nesterov momentum"),
    Option("optimizer.b1", 0.9, "adam / adamw: first-moment decay", minimum=0.0, maximum=1.0),
    Option("optimizer.b2", 0.999, "adam / adamw: second-moment decay", minimum=0.0, maximum=1.0),
    Option("optimizer.eps", 1e-8, "adam / adamw: epsilon (added to the divisor: 0 divides 0 by 0 for a parameter "
           "without gradient)", minimum=0.0, strict=True),
    Option("optimizer.weight_decay", 0.0, "weight decay (sgd, adam: added to the gradient; adamw: decoupled)",
           minimum=0.0),
    Option("optimizer.grad_clip_norm", 0.0, "clip the gradient's global norm to this; 0 = off", minimum=0.0),
    Option("optimizer.grad_clip_value", 0.0, "clip every gradient element to [-v, v] (PyTorch's clip_grad_value_, "
           "Mammoth's SI: 1); 0 = off", minimum=0.0),
    Option("optimizer.schedule", "constant", "learning-rate schedule (per task with reset_each_task)",
           choices=("constant", "step", "cosine")),
    Option("optimizer.decay_factor", 0.2, "step schedule: factor applied every decay_every_epochs", minimum=0.0,
           strict=True),
    Option("optimizer.decay_every_epochs", 15, "step schedule: epochs between decays", minimum=1),
    Option("optimizer.warmup_epochs", 0.0, "linear warm-up, in epochs; 0 = none", minimum=0.0),
    Option("optimizer.reset_each_task", True, "fresh optimizer state (momentum, schedule) at every task"),
)

TRAIN = (
    Option("train.epochs_per_task", 2, "epochs over each task's training data", minimum=1),
    Option("train.batch_size", 64, "global batch, split over devices", minimum=1),
    Option("train.eval_batch_size", 1000, "batch of the evaluations", minimum=1),
    Option("train.log_every_steps", 50, "steps between logged training losses", minimum=1),
    Option("train.progress", True, "a progress bar per task"),
    Option("train.steps_per_dispatch", 1, "train steps per compiled call (K > 1: the task's data on the "
           "device, up to K steps in one compiled loop; streamed data needs 1)", minimum=1),
)

EVAL = (
    Option("eval.lca_batches", 0, "> 0: record the accuracy on each task over its first N minibatches (LCA); "
           "0 = off", minimum=0),
    Option("eval.every_epoch", False, "also record each task's accuracy after every epoch of its own training"),
    Option("eval.split", "test", "evaluate on test, or on valid (held-out scenario.validation_fraction; for "
           "model selection)", choices=("test", "valid")),
)

SWEEP = (
    Option("sweep.key", "", "dotted numeric config key to sweep, e.g. 'method.strength'; '' = no sweep"),
    Option("sweep.candidates", (), "candidate values (finite numbers), e.g. (1.0, 10.0, 100.0)"),
    Option("sweep.metric", "acc", "selection metric on the validation split (forgetting: lower is better)",
           choices=("acc", "bwt", "forgetting")),
)

OPTIONS = TOP_LEVEL + OPTIMIZER + TRAIN + EVAL + SWEEP
