"""Default experiment: Split Fashion-MNIST, 5 tasks of 2 classes, task-incremental (one head per task),
small ConvNet, fine-tuning. Finishes in a few minutes on 2 CPU cores.

Every key any experiment may set is defined here (the config is locked, so a misspelled override is an
error); other configs start from this one and change values.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # model initialization, training order, augmentation
  c.num_orders = 0  # > 0: run the stream in this many distinct task orders (order 0 = as defined; lwcl/runs/orders.py)
  c.num_seeds = 0  # > 0: train seeds seed..seed+R-1 as R replicas of one vmapped program (lwcl/runs/seeds.py);
  # with num_orders or sweep.key, every order or candidate over these seeds (one program; lwcl/runs/kinds.py)
  # num_orders: the orders as replicas of one vmapped program (False: one after another, e.g. convolutional
  # models on CPU, whose batched convolutions XLA runs slowly). Same results up to float rounding.
  c.orders_as_replicas = True

  c.data = ml_collections.ConfigDict()
  c.data.name = "fashion_mnist"  # TFDS name; mnist/fashion_mnist/kmnist also read from local IDX files
  # auto (data.record_dir set: arrayrecord; else local IDX files when present, else TFDS) | idx | tfds (all
  # in memory) | arrayrecord (streamed from data.record_dir) | tfds_stream (streamed from a TFDS data set
  # prepared with file_format=array_record in data.data_dir); README "Streaming data"
  c.data.source = "auto"
  c.data.record_dir = ""  # folder of ArrayRecord files + features.json (lwcl/data/records.py)
  # streamed images read at image_size x image_size (random-resized crop + flip in training, resize + centre
  # crop in evaluation, lwcl/data/image_ops.py); 0 = as stored (needed > 0 for records of varying size)
  c.data.image_size = 0
  c.data.stream = ml_collections.ConfigDict()
  c.data.stream.threads = 2  # grain read threads of the streaming loader
  c.data.stream.prefetch = 4  # batches read ahead (host), one more placed on the device
  c.data.stream.workers = 0  # grain worker processes decoding batches (0: the read threads decode)
  c.data.idx_dir = ""  # folder of MNIST-format files; default: $LWCL_IDX_DIR, then Debian's folder
  c.data.data_dir = ""  # TFDS data_dir ('' = TFDS default, ~/tensorflow_datasets)
  c.data.train_split = "train"
  c.data.test_split = "test"
  c.data.download = True  # let TFDS download missing data sets
  c.data.normalize = "standardize"  # standardize (per-channel mean/std of the training set) | unit | none
  c.data.augment = ml_collections.ConfigDict()
  c.data.augment.random_crop = False  # pad then crop back at a random offset
  c.data.augment.crop_padding = 4
  c.data.augment.horizontal_flip = False

  c.scenario = ml_collections.ConfigDict()
  c.scenario.kind = "split"  # split | permuted | rotated
  c.scenario.incremental = "task"  # task | class | domain
  c.scenario.task_heads = "multi"  # task-incremental only: multi (head per task) | masked (shared, masked)
  c.scenario.num_tasks = 5
  c.scenario.classes_per_task = 2  # split only; 0 = num_classes // num_tasks
  c.scenario.class_order = ()  # explicit class order, e.g. (3, 1, 0, ...); () = 0..C-1
  c.scenario.shuffle_classes = False  # seeded by scenario.seed when class_order is ()
  c.scenario.order_seed = -1  # task order: -1 = as defined; otherwise a seeded permutation of the tasks
  c.scenario.task_order = ()  # explicit task order (indices of the tasks as defined); () = use order_seed
  c.scenario.samples_per_task = 0  # cap on training examples per task (GEM protocol: 1000); 0 = all
  c.scenario.validation_fraction = 0.0  # share of each task's training data held out for validation
  c.scenario.max_tasks = 0  # task slots the state is padded to; 0 = num_tasks
  c.scenario.permute_first_task = True  # permuted: False keeps the first task unpermuted
  c.scenario.angles = ()  # rotated: one angle (degrees) per task; () = k * max_angle / num_tasks
  c.scenario.max_angle = 180.0
  c.scenario.seed = 0  # permutations, class shuffling, subsampling, validation split

  c.model = ml_collections.ConfigDict()
  c.model.name = "convnet"  # mlp | convnet | resnet | reduced_resnet18 | imagenet_resnet18 | greedy_vgg
  c.model.hidden = (100, 100)  # mlp
  # convnet / greedy_vgg: channels of the 3x3 convs of each stage (convnet: 2x2 max pool after a stage;
  # greedy_vgg: invertible 2x2 downsampling before it)
  c.model.conv_stages = ((32,), (64,))
  c.model.dense = (128,)  # convnet: hidden Dense layers after the conv stages
  c.model.batch_norm = False  # convnet
  c.model.depth = 20  # resnet: 6n+2
  c.model.width = 0  # resnet / reduced_resnet18 base width; 0 = 16 / 20
  c.model.strides = "standard"  # resnet / reduced_resnet18: standard | accelerated | comma-separated ints
  c.model.stem_stride = 1
  # How convolutions are computed: auto | native (XLA's convolution) | onednn (oneDNN's, CPU, float32;
  # built by bin/setup) | patches (shifted slices + one matmul) | direct (multiply-adds of the shifted
  # slices). auto = native off the CPU; on CPU direct where kh*kw*C <= 36 (an image's first 3x3 conv), and
  # for the others onednn when lwcl's oneDNN library is built (LWCL_ONEDNN=0: not), else patches when
  # train.steps_per_dispatch > 1 (XLA:CPU's convolution is very slow inside compiled loops), else native.
  # Same parameters and values up to float rounding (lwcl/models/conv.py).
  c.model.conv_impl = "auto"
  # Computation dtype: float32 | bfloat16 (mixed precision: activations and matmuls bfloat16; parameters,
  # optimizer state, BatchNorm statistics, logits, losses, importances, Gram matrices and QPs float32;
  # convolutions take XLA's lowering, oneDNN's being float32 only). lwcl/models/__init__.py, DTYPES.
  c.model.dtype = "float32"
  # Convolution intensity (resnet / reduced_resnet18; Ma et al. 2010.08038): the first shallow_blocks residual
  # blocks get shallow_convs 3x3 convs (standard: 2) and shallow_width channels (0 = their stage's width).
  c.model.shallow_blocks = 0
  c.model.shallow_convs = 2
  c.model.shallow_width = 0

  c.method = ml_collections.ConfigDict()
  c.method.name = "finetune"  # a name of the METHODS table in lwcl/methods/__init__.py (docs/adding.md)
  # Importance penalties (lwcl/methods/importance.py, one file each: ewc.py, ...):
  #   strength/2 sum omega (theta - anchor)^2
  c.method.strength = 1.0  # EWC lambda (SI c and MAS lambda are strength / 2); select on validation data
  c.method.accumulate = "sum"  # combine the tasks' importances: sum | max
  c.method.importance_samples = 1000  # ewc/mas/nai: examples per task the importance is estimated on; 0 = all
  c.method.importance_batch_size = 64  # ewc/mas/nai: examples per vmapped chunk (memory bound)
  c.method.ewc_fisher = "empirical"  # ewc: empirical (true labels) | sampled (labels drawn from the model)
  c.method.si_xi = 1e-3  # si: damping xi in omega = path / (delta^2 + xi) (Zenke et al. use 1e-3)
  c.method.nai_normalize = "layer_mean"  # nai: neuron mean activation / layer_mean | layer_max | none
  c.method.nai_weight_rule = "output"  # nai: a weight gets its output neuron's importance | max (of in, out)
  c.method.nai_include_heads = False  # nai: also penalize the task heads (softmax outputs as neurons)
  # Episodic memory (lwcl/methods/episodic.py, one file each: agem.py, ...; maths in projection.py)
  c.method.memory_per_task = 256  # agem/gem/lgd: ring buffer per task, the last N examples seen (GEM: 256)
  c.method.memory_grad_chunk = 1  # gem/lgd: old-task gradients n = the old tasks' slots only, n at a time
  #   (skips the slots of tasks not seen yet) | 0 = every slot in one vmap (a fixed program)
  c.method.grouping = "auto"  # agem/gem/lgd: auto (agem, gem: network, local_block in layer-wise local/greedy
  #   training; lgd: layer) | layer | block | network | local_block | tensors:N (runs of N parameter
  #   tensors in definition order; the LGD authors' code: tensors:5)
  c.method.gem_margin = 0.5  # gem: dual v >= margin (reference memory_strength; 0 = exact projection)
  c.method.gem_max_iter = 0  # gem: QP solver iteration bound (0 = 3K + 10, K old tasks); results.json's
  #   gem_solver counts the steps that hit it or leave a constraint violated
  c.method.agem_ref_batch = 256  # agem: reference batch drawn from the union of the old tasks' memories
  c.method.lgd_threshold = 0.0  # lgd: keep residual directions with singular value > t * largest (0 = rank)
  c.method.lgd_top_k = 0  # lgd: > 0 keeps at most the k leading residual directions (authors' pca3: 3)
  c.method.lgd_margin = 0.0  # lgd: authors' push along the old gradients in the conflict case (0 = off)
  c.method.lgd_push = "sum"  # lgd, margin > 0: push along the sum of the old gradients (authors) | mean
  c.method.lgd_single_task_push = False  # lgd, margin > 0: with one old task, the authors' rule
  #   g + max(-<s,g>/<s,s>, margin) s, which pushes also without a conflict (False: conflict case only)
  c.method.buffer_size = 500  # er/der/derpp: replay buffer slots, filled by reservoir sampling (200/500/5120)
  c.method.replay_batch = 0  # er/der/derpp: examples per replay batch; 0 = the training minibatch's size
  c.method.der_alpha = 0.3  # der/derpp: weight of the MSE between replayed logits and the stored ones
  c.method.der_beta = 0.5  # derpp: weight of the cross-entropy on a second replay batch
  c.method.lwf_alpha = 1.0  # lwf: weight of the distillation of the previous task's network
  c.method.lwf_temperature = 2.0  # lwf: distillation temperature T (Li & Hoiem: 2)
  c.method.icarl_memory = 500  # icarl: exemplars in all, K (m = K // classes seen per class, by herding)

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"  # sgd | adam | adamw
  c.optimizer.learning_rate = 0.01
  c.optimizer.momentum = 0.9  # sgd
  c.optimizer.nesterov = False
  c.optimizer.b1 = 0.9  # adam
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.0
  c.optimizer.grad_clip_norm = 0.0  # 0 = off
  c.optimizer.grad_clip_value = 0.0  # 0 = off; each gradient element clipped to [-v, v]
  c.optimizer.schedule = "constant"  # constant | step | cosine (per task with reset_each_task)
  c.optimizer.decay_factor = 0.2  # step
  c.optimizer.decay_every_epochs = 15  # step
  c.optimizer.warmup_epochs = 0.0
  c.optimizer.reset_each_task = True  # fresh optimizer state (momentum, schedule) at every task

  c.train = ml_collections.ConfigDict()
  c.train.epochs_per_task = 2
  c.train.batch_size = 64  # global batch, split over devices
  c.train.eval_batch_size = 1000
  c.train.log_every_steps = 50
  c.train.progress = True  # a progress bar per task
  # Train steps per compiled call. 1: one host batch per step. K > 1: the task's training data is put on the
  # device once and up to K steps run in one compiled loop (batches gathered on the device, same example
  # order, results equal up to float rounding); dispatches also end at checkpoints and after each of the
  # first eval.lca_batches steps. Pays off for small, dispatch-bound models (GEM-protocol MLP on CPU, K=32:
  # 1.2-1.7x faster). On CPU, XLA's convolution is far slower inside loops (jax-ml/jax#12868), so there
  # model.conv_impl=auto uses patch matmuls; convolutional models are still faster at 1 on CPU, hence 1.
  # Multi-process runs use 1. The task's data must fit on the device.
  c.train.steps_per_dispatch = 1

  c.eval = ml_collections.ConfigDict()
  c.eval.lca_batches = 0  # > 0: record the accuracy on each task over its first N minibatches (LCA)
  c.eval.every_epoch = False  # also record each task's accuracy after every epoch of its own training
  c.eval.split = "test"  # test | valid (held-out scenario.validation_fraction; for model selection)

  c.sweep = ml_collections.ConfigDict()  # model selection on the validation split (lwcl/runs/sweep.py)
  c.sweep.key = ""  # dotted config key to sweep, e.g. 'method.strength'; '' = no sweep
  c.sweep.candidates = ()  # candidate values (floats), e.g. (1.0, 10.0, 100.0)
  c.sweep.metric = "acc"  # acc | bwt | forgetting (lower is better) on the validation split

  c.layerwise = ml_collections.ConfigDict()  # layer-wise training (lwcl/layerwise/)
  c.layerwise.mode = "backprop"  # backprop (end to end, plain training) | local (decoupled) | greedy
  c.layerwise.readouts = False  # backprop: also train aux heads on detached features (block_accuracy, probes)
  c.layerwise.cuts = "block"  # local blocks: block | stage | even:K | comma-separated first-block indices
  c.layerwise.aux_head = "linear"  # linear (pool + Dense) | cnn (3x3 convs + BN + ReLU, pool, Dense) | mlp
  c.layerwise.aux_pool = 2  # aux heads average-pool feature maps to aux_pool x aux_pool (DGL: 2)
  c.layerwise.aux_convs = 2  # cnn head: number of 3x3 convs
  c.layerwise.aux_width = 0  # cnn head: conv channels; 0 = the block's channels
  c.layerwise.aux_hidden = (256,)  # mlp head: hidden Dense sizes
  c.layerwise.local_step = "segmented"  # segmented (block-by-block gradients, low memory) | autodiff
  c.layerwise.greedy_epochs_per_block = 0  # greedy: epochs per local block (x K = epochs_per_task); 0 = split
  c.layerwise.linear_probe = ml_collections.ConfigDict()  # after the last task, per block and task
  c.layerwise.linear_probe.enabled = False
  c.layerwise.linear_probe.train_examples = 2000  # per task (seeded subset of its training data)
  c.layerwise.linear_probe.steps = 300  # full-batch Adam steps
  c.layerwise.linear_probe.learning_rate = 0.01
  c.layerwise.linear_probe.l2 = 1e-4
  c.layerwise.linear_probe.pool = 2  # average-pool feature maps to pool x pool before the probe; 0 = none

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 500  # also at every task end; 0 = task ends only
  c.checkpoint.keep = 2

  c.devices = ml_collections.ConfigDict()
  c.devices.num_devices = 0  # use this many local devices; 0 = all
  c.devices.replica_shards = 0  # replicas (num_seeds, num_orders, sweep) split over this many device groups; 0 = auto
  c.devices.data_shards = 0  # each replica's batch split over this many devices; 0 = the devices left
  c.devices.multihost = False  # call jax.distributed.initialize() (TPU pods, SLURM, ...)
  c.devices.coordinator_address = ""  # multihost: '' = auto-detect
  c.devices.num_processes = 0  # multihost: 0 = auto-detect
  c.devices.process_id = -1  # multihost: -1 = auto-detect
  c.devices.startup_timeout = 30.0  # multihost: seconds to wait for every process at start-up
  c.devices.heartbeat_timeout = 60.0  # multihost: seconds of a silent process before the others stop
  return c
