"""Layer-wise (locally supervised) training: local blocks, auxiliary heads, training modes, read-outs.

A :class:`~lwcl.models.network.Network` (blocks ``f_1 .. f_N`` then the task heads) is cut into ``K``
*local blocks*, each a contiguous run of network blocks (config ``layerwise.cuts``). Local block ``k < K``
gets an auxiliary head ``h_k`` (:class:`~lwcl.models.aux_heads.AuxHead`, parameters ``aux_<k>``); the last
local block's head is the network's own head (global read-out + ``head``), so the network's output is the
same module in every mode. With ``x_k`` the output of local block ``k`` (``x_0`` the preprocessed input),
the local loss is ``L_k = CE(h_k(f_k(stop_gradient(x_{k-1}))), y)``.

Modes (``layerwise.mode``):

* ``backprop``: end to end from the last head (plain training). With ``layerwise.readouts`` the auxiliary
  heads are trained too, on *detached* features (``stop_gradient``), so they read out every depth without
  changing the backbone's gradient; the loss value reported is the end-to-end loss alone (the read-out
  losses enter as ``L - stop_gradient(L)``). Without read-outs :func:`build_fns` returns a plain
  :class:`~lwcl.core.model_fns.ModelFns`, bit-identical to a run without this module.
* ``local``: decoupled greedy learning (Belilovsky, Eickenberg, Oyallon, *Decoupled Greedy Learning of
  CNNs*, ICML 2020): every local block is updated at every step from its own loss, the loss is
  ``sum_k L_k``. The gradient is computed block by block inside one compiled step (see
  :class:`LayerwiseFns`), so only one local block's activations are alive at a time.
* ``greedy``: sequential (Belilovsky et al., *Greedy Layerwise Learning Can Scale to ImageNet*, ICML
  2019): local block ``k`` is trained for its share of the task's epochs while blocks ``< k`` are frozen
  (BatchNorm in inference mode, parameters and statistics bit-identical); blocks ``> k`` are not run.

Accelerated downsampling and convolution intensity (Ma, Yu, Li, Wang, *Why Layer-Wise Learning is Hard to
Scale-up and a Possible Solution via Accelerated Downsampling*, arXiv 2010.08038) are model settings:
``model.strides='accelerated'`` and ``model.shallow_{blocks,convs,width}`` (``lwcl/models/resnet.py``).

Read-outs (:class:`Readouts`): the test accuracy of every local block's head after each task
(``block_accuracy``), a linear probe on each block's frozen features after the last task
(``linear_probe_accuracy``), and a plot of accuracy against depth.

Submodules (they import one another one-way, by full module path; none imports :mod:`lwcl.engine.optim`):

* :mod:`lwcl.layerwise.cuts`: network block output shapes; ``layerwise.cuts`` parsing and validation.
* :mod:`lwcl.layerwise.fns`: :class:`LayerwiseFns` (local losses, custom VJP), the section's options, :func:`build_fns`.
* :mod:`lwcl.layerwise.greedy`: greedy mode's phase schedule and optimizer transformation.
* :mod:`lwcl.layerwise.readouts`: block accuracies, linear probes, the depth plot, :class:`Readouts`.

The run's optimizer factory (greedy-aware) is :func:`lwcl.engine.optim.optimizer`.
"""

from __future__ import annotations

from lwcl.layerwise import fns as _fns
from lwcl.layerwise import readouts as _readouts
from lwcl.layerwise.cuts import block_output_shapes, parse_cuts
from lwcl.layerwise.fns import LOCAL_STEPS, MODES, LayerwiseFns, build_fns, is_layerwise
from lwcl.layerwise.greedy import GreedyState, check_schedule, greedy_phase, greedy_transformation, with_phase
from lwcl.layerwise.readouts import (
                                   FORGETTING_PLOT_FILE,
                                   PLOT_FILE,
                                   Readouts,
                                   block_depths,
                                   plot_block_accuracy,
                                   plot_block_forgetting,
                                   train_linear_probe,
)

# Every layerwise.* key (lwcl/layerwise/fns.py, lwcl/layerwise/readouts.py).
OPTIONS = _fns.OPTIONS + _readouts.OPTIONS

__all__ = [
    "FORGETTING_PLOT_FILE", "LOCAL_STEPS", "MODES", "PLOT_FILE", "GreedyState", "LayerwiseFns", "Readouts",
    "block_depths",
    "block_output_shapes", "build_fns", "check_schedule", "greedy_phase", "greedy_transformation",
    "is_layerwise", "parse_cuts", "plot_block_accuracy", "plot_block_forgetting", "train_linear_probe", "with_phase",
]
