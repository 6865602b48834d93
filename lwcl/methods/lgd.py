"""LGD, layerwise gradient decomposition (Tang et al., CVPR 2021): shared + task-specific decomposition of
the old tasks' gradients."""

from __future__ import annotations

import optax

from lwcl.core.options import Option
from lwcl.methods import projection
from lwcl.methods.episodic import EpisodicMethod


class LGD(EpisodicMethod):
  """LGD (Tang et al., CVPR 2021): shared + task-specific decomposition of the old gradients, per layer by
  default (``method.grouping='network'`` is the paper's concatenated ablation). ``method.lgd_margin``,
  ``lgd_push`` and ``lgd_single_task_push`` select the authors' margin push
  (:func:`lwcl.methods.projection.project_lgd`). State: :class:`~lwcl.methods.episodic.EpisodicState`.
  ``lgd_threshold`` and ``lgd_margin`` choose what is compiled (host values, :attr:`HOST_OPTIONS`).

  Raises (constructor):
    ConfigError: an ``lgd_*`` key out of range, ``lgd_push`` not ``sum``/``mean``, or
      ``lgd_single_task_push`` not a boolean.
  """

  default_grouping = "layer"
  OPTIONS = EpisodicMethod.OPTIONS + (
      Option("method.lgd_threshold", 0.0, "keep residual directions with singular value > t * largest (0 = "
             "rank)", minimum=0.0, maximum=1.0),
      Option("method.lgd_top_k", 0, "> 0 keeps at most the k leading residual directions (authors' pca3: 3)",
             minimum=0),
      Option("method.lgd_margin", 0.0, "authors' push along the old gradients in the conflict case (0 = off)",
             minimum=0.0),
      Option("method.lgd_push", "sum", "with margin > 0: push along the sum of the old gradients (authors) | "
             "mean", choices=projection.LGD_PUSHES),
      Option("method.lgd_single_task_push", False, "with margin > 0 and one old task: the authors' rule"))
  HOST_OPTIONS = ("method.lgd_threshold", "method.lgd_margin")

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.threshold = self.options["lgd_threshold"]
    self.top_k = self.options["lgd_top_k"]
    self.margin = self.options["lgd_margin"]
    self.push = self.options["lgd_push"]
    self.single_task_push = self.options["lgd_single_task_push"]

  def transformation(self) -> optax.GradientTransformationExtraArgs:
    return projection.lgd(self.grouping, self.threshold, self.top_k, self.margin, self.push,
                          self.single_task_push)
