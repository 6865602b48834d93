"""LGD on the GEM protocol, rotated Fashion-MNIST (local IDX files, else TFDS): 20 tasks, MLP 2x100.

    bin/run --config=configs/lgd_rotated_fashion_mnist.py:authors --workdir=runs/lgd_rfm_authors

Task k is rotated by k * 180 / 20 degrees; otherwise as configs/lgd_permuted_fashion_mnist.py, whose
``apply_preset`` sets the LGD rule the argument names: ``equation`` (default; the paper's Eq. 5-9),
``authors`` (the released code ``tangshixiang/grad-cl``, ``model/newblockgem_group5_pca_partmargin.py``:
margin 0.5 along the sum of the old gradients, one-old-task push, groups of 5 tensors, top-3 basis) or
``authors_mean`` (``authors`` with the push along the mean). Protocol: configs/_protocols.py.
"""

from lwcl.config.files import sibling


def get_config(arg: str = "equation"):
  c = sibling(__file__, "_protocols").gem_protocol("fashion_mnist", "rotated", "auto")
  sibling(__file__, "lgd_permuted_fashion_mnist").apply_preset(c, arg)
  return c
