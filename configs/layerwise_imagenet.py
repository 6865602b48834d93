"""Layer-wise training on ImageNet (ILSVRC-2012), streamed from ArrayRecord files; for GPUs and TPUs.

    bin/run --config=configs/layerwise_imagenet.py:resnet18,local --workdir=runs/lw_in_r18_local \\
        --config.data.data_dir=/data/tfds            # TFDS imagenet2012 prepared as array_record
    bin/run --config=configs/layerwise_imagenet.py:vgg,greedy --workdir=runs/lw_in_vgg_greedy \\
        --config.data.source=arrayrecord --config.data.record_dir=/data/imagenet_records

Argument ``MODEL,VARIANT``: MODEL ``resnet18`` (ImageNet ResNet-18, :mod:`lwcl.models.imagenet`) or
``vgg`` (the VGG-like network of Belilovsky, Eickenberg, Oyallon, *Greedy Layerwise Learning Can Scale to
ImageNet*, ICML 2019: one 3x3 conv + BatchNorm + ReLU per block, invertible 2x2 downsampling at each stage
start); VARIANT a mode (``backprop`` | ``local`` | ``greedy``) with optional ``+accelerated`` (ResNet-18:
stride-2 transitions moved to residual blocks 1-3).

Data: ``imagenet2012`` through ``data.source=tfds_stream`` (prepare it once with ``tfds build imagenet2012
--file_format=array_record``; the JPEGs stay on disk) or a record folder (``arrayrecord``). Images are read
at 224 x 224 by the loader's threads: random-resized crop + flip for training, resize to 256 + centre crop
for evaluation (``data.image_size``, :mod:`lwcl.data.image_ops`); ``data.normalize=unit`` (no pass over the
training set for statistics; the networks have BatchNorm).

Recipe (ours, the standard ResNet ImageNet schedule, not a reproduction of the paper's numbers): SGD,
momentum 0.9, weight decay 1e-4, batch 256, learning rate 0.1 x 0.1 every 30 epochs, 90 epochs; one task
with all 1000 classes. Local blocks: every residual block (ResNet-18) or every conv block (VGG) with a
linear auxiliary head (2x2 average pool, Dense, the paper's k = 1 auxiliary problem); ``greedy`` trains the
stages in turn (``layerwise.cuts='stage'``: 4 local blocks), 20 epochs each with the decay every 8.
VGG widths: 128, then doubled at every downsampling up to 1024 (8 conv blocks); the paper's exact widths
are not reproduced.
"""

from lwcl.config import files as config_files

MODELS = ("resnet18", "vgg")
MODES = ("backprop", "local", "greedy")
VGG_STAGES = ((128,), (256, 256), (512, 512), (1024, 1024), (1024,))


def stage_count(c) -> int:
  """Local blocks of ``layerwise.cuts='stage'``: runs of equal width (ResNet-18: 4, the stem joining stage
  1; VGG: 4, its last two stages having the same width)."""
  if c.model.name == "imagenet_resnet18":
    return 4
  widths = [w for stage in c.model.conv_stages for w in stage]
  return 1 + sum(a != b for a, b in zip(widths, widths[1:]))


def get_config(arg: str = "resnet18,local"):
  model, _, variant = (arg or "resnet18,local").partition(",")
  model = model.strip().lower()
  if model not in MODELS:
    raise ValueError(f"layerwise_imagenet argument '{arg}': the model must be one of {', '.join(MODELS)}")
  tokens = [t.strip() for t in (variant or "local").split("+") if t.strip()]
  modes = [t for t in tokens if t in MODES]
  if len(modes) != 1 or any(t not in MODES + ("accelerated",) for t in tokens):
    raise ValueError(f"layerwise_imagenet argument '{arg}': name one mode of {', '.join(MODES)}, optionally "
                     "+accelerated")
  c = config_files.default_config(__file__)
  c.data.name = "imagenet2012"
  c.data.source = "tfds_stream"
  c.data.train_split, c.data.test_split = "train", "validation"
  c.data.image_size = 224
  c.data.normalize = "unit"
  c.data.augment.random_crop = c.data.augment.horizontal_flip = False  # the loader crops and flips
  c.data.stream.threads, c.data.stream.prefetch = 16, 8
  c.scenario.kind, c.scenario.num_tasks, c.scenario.classes_per_task = "split", 1, 0
  c.scenario.incremental = "class"
  c.optimizer.name, c.optimizer.learning_rate, c.optimizer.momentum = "sgd", 0.1, 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule, c.optimizer.decay_factor, c.optimizer.decay_every_epochs = "step", 0.1, 30
  c.train.batch_size, c.train.eval_batch_size, c.train.epochs_per_task = 256, 500, 90
  c.train.log_every_steps = 100
  c.checkpoint.every_steps = 2000
  c.layerwise.mode = modes[0]
  c.layerwise.readouts = modes[0] == "backprop"
  c.layerwise.cuts = "block"
  c.layerwise.aux_head = "linear"
  c.layerwise.linear_probe.enabled = False  # a probe per block over ImageNet features: too costly here
  if model == "resnet18":
    c.model.name, c.model.width = "imagenet_resnet18", 64
  else:
    c.model.name, c.model.conv_stages = "greedy_vgg", VGG_STAGES
  if "accelerated" in tokens:
    if model != "resnet18":
      raise ValueError(f"layerwise_imagenet argument '{arg}': +accelerated applies to resnet18 only")
    c.model.strides = "accelerated"
  if modes[0] == "greedy":
    c.layerwise.cuts = "stage"
    c.layerwise.greedy_epochs_per_block = 20
    c.train.epochs_per_task = 20 * stage_count(c)
    c.optimizer.decay_every_epochs = 8
  return c
