"""NAI, neuron activation importance (Kim & Lee 2021, arXiv 2107.12657): an importance penalty whose
importance comes from the neurons' mean activations."""

from __future__ import annotations

from lwcl.core.model_fns import mask_logits
from lwcl.core.options import Option
from lwcl.errors import ConfigError
from lwcl.methods import regularization as reg
from lwcl.methods.importance import EstimatedPenalty


class NAI(EstimatedPenalty):
  """Neuron activation importance (Kim & Lee 2021, arXiv 2107.12657): omega is
  :func:`~lwcl.methods.regularization.nai_importance` of each finished task, with ``method.nai_normalize``,
  ``method.nai_weight_rule`` and ``method.nai_include_heads``; accumulated by ``method.accumulate``.
  In layer-wise training the auxiliary heads are heads: like the task heads they get importance only with
  ``method.nai_include_heads`` (from their own softmax outputs); the blocks' neurons get theirs from
  their activations in every mode. State: :class:`~lwcl.methods.importance.ImportanceState`.

  Raises:
    ConfigError: also ``nai_weight_rule='max'`` with a residual network (its inputs are not the previous
      layer's neurons).
  """

  OPTIONS = EstimatedPenalty.OPTIONS + (
      Option("method.nai_normalize", "layer_mean", "neuron mean activation / layer_mean | layer_max | none",
             choices=reg.NAI_NORMALIZE),
      Option("method.nai_weight_rule", "output", "a weight gets its output neuron's importance | max (of in, "
             "out)", choices=reg.NAI_WEIGHT_RULES),
      Option("method.nai_include_heads", False, "also penalize the task heads (softmax outputs as neurons)"))

  def __init__(self, method_config, scenario, fns):
    super().__init__(method_config, scenario, fns)
    self.normalize = self.options["nai_normalize"]
    self.weight_rule = self.options["nai_weight_rule"]
    self.include_heads = self.options["nai_include_heads"]
    if self.weight_rule == "max":
      from lwcl.models.convnet import ConvStage  # pylint: disable=g-import-not-at-top
      from lwcl.models.mlp import DenseBlock  # pylint: disable=g-import-not-at-top
      blocks = getattr(fns.model, "blocks", ())
      if any(not isinstance(b, (ConvStage, DenseBlock)) for b in blocks):
        raise ConfigError("method.nai_weight_rule='max' needs a sequential model (mlp or convnet); use "
                          "--config.method.nai_weight_rule=output with residual networks")

  def estimate(self, params, batch_stats, examples, mask, rng):
    del rng
    fns = self.fns

    def forward(p, batch):
      x = fns.preprocess(batch["image"], None)
      logits, state = fns.model.apply({"params": p, "batch_stats": batch_stats}, x, batch["task"],
                                      train=False, mutable=["intermediates"])
      logits = mask_logits(logits, fns.label_masks, batch["task"])
      if self.include_heads and fns.is_layerwise:  # layer-wise: auxiliary heads are heads too
        blocks = fns.block_logits(p, batch_stats, batch)
        logits = {**{fns.head_name(k): l for k, l in enumerate(blocks[:-1])}, "head": logits}
      return logits, state["intermediates"]

    return reg.nai_importance(forward, params, examples, mask, batch_size=self.batch_size,
                              normalize=self.normalize, weight_rule=self.weight_rule,
                              include_heads=self.include_heads)
