"""LGD on the GEM protocol, permuted Fashion-MNIST (local IDX files, else TFDS): 20 tasks, MLP 2x100.

    bin/run --config=configs/lgd_permuted_fashion_mnist.py:authors --workdir=runs/lgd_pfm_authors

The protocol is GEM's (configs/_protocols.py): 1000 training examples per task, one epoch, minibatches of
10, plain SGD with learning rate 0.1, 256 memories per task, one 10-way head; the projection is applied at
every step. The argument picks the LGD
rule (docs/design.md, "LGD"; :func:`apply_preset`, shared with configs/lgd_rotated_fashion_mnist.py):
``equation`` (default), ``authors`` or ``authors_mean``.
"""

from lwcl.config.files import sibling

PRESETS = ("equation", "authors", "authors_mean")


def apply_preset(c, arg: str) -> None:
  """Sets ``method.*`` of config ``c`` to LGD with the rule ``arg`` names.

  * ``equation``: the paper's rule, Tang et al., *Layerwise Optimization by Gradient Decomposition for
    Continual Learning*, CVPR 2021, Sec. 3.2-3.3, Eq. 5-9, i.e. lwcl's defaults: per layer
    (``grouping='auto'`` -> ``layer``), every numerically non-zero residual direction (``lgd_threshold=0``,
    ``lgd_top_k=0``), no margin.
  * ``authors``: the released code, ``tangshixiang/grad-cl``, ``model/newblockgem_group5_pca_partmargin.py``
    (``project5cone5`` and the model's parameter loop): margin 0.5 pushed along the sum of the old
    gradients in the conflict case (``lgd_margin=0.5``, ``lgd_push='sum'``); with one old task
    ``g + max(-<s,g>/<s,s>, 0.5) s`` (``lgd_single_task_push=True``); groups of 5 consecutive parameter
    tensors in definition order (``grouping='tensors:5'``: for the 2x100 MLP {W1, b1, W2, b2, W3}, {b3});
    the top-3 residual basis of the ``pca3`` variant (``lgd_top_k=3``). Plain SGD 0.1 and projection at
    every step are the protocol's.
  * ``authors_mean``: ``authors`` with the push along the mean of the old gradients (``lgd_push='mean'``),
    lwcl's ablation of the push's scale (the sum grows with the number of old tasks).

  Raises:
    ValueError: ``arg`` is not one of :data:`PRESETS` (the config loader reports it in one line).
  """
  arg = (arg or "equation").strip()
  if arg not in PRESETS:
    raise ValueError(f"LGD config argument '{arg}' is not one of {', '.join(PRESETS)}")
  c.method.name = "lgd"
  c.method.memory_per_task = 256
  if arg == "equation":
    return
  c.method.lgd_margin = 0.5
  c.method.lgd_push = "sum" if arg == "authors" else "mean"
  c.method.lgd_single_task_push = True
  c.method.grouping = "tensors:5"
  c.method.lgd_top_k = 3


def get_config(arg: str = "equation"):
  c = sibling(__file__, "_protocols").gem_protocol("fashion_mnist", "permuted", "auto")
  apply_preset(c, arg)
  return c
