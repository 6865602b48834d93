"""Deprecated: ``lwcl.train`` was split into ``lwcl.core.state`` (TrainState), ``lwcl.core.model_fns``
(ModelFns, MASKED_LOGIT, mask_logits, cross_entropy) and ``lwcl.engine.steps`` (make_train_step,
make_train_steps, make_eval_step) (removed in lwcl 0.3)."""
import warnings

from lwcl.core.model_fns import MASKED_LOGIT, ModelFns, cross_entropy, mask_logits  # noqa: F401
from lwcl.core.state import TrainState  # noqa: F401
from lwcl.engine.steps import make_eval_step, make_train_step, make_train_steps  # noqa: F401

warnings.warn("lwcl.train was split into lwcl.core.state, lwcl.core.model_fns and lwcl.engine.steps; import "
              "from there (the old path goes in lwcl 0.3)", DeprecationWarning, stacklevel=2)
