"""What a run's batches and replicas will hold, estimated before any of it is allocated (issue 32).

:meth:`lwcl.engine.build.Setup.build` calls these once the data set is loaded, before anything whose size
grows with the replicas is built (their configs included: 10**6 of them took minutes of Python alone):

* :func:`check_batches`: one evaluation batch, ``train.eval_batch_size`` images padded whole, held as uint8
  on the host and as float32 on the device (``eval_batch_size=10**9`` failed after task 1, allocating
  730 GiB); and one training step's minibatches, one per replica (float32 on the device);
* :func:`check_states`: the run's state, or one per replica (parameters, batch statistics, optimizer and
  method state, shapes from ``jax.eval_shape`` without allocating: 0.02-0.2 s), plus one gradient each
  (``num_seeds=10**6`` printed nothing for 90 s; ``scenario.max_tasks=10**9`` heads asked XLA for 1 TB).

Every figure is a lower bound (activations, compiled programs and copies are left out), so a run that fits
is never refused; what does not fit ends in one line (:func:`lwcl.platform.host_memory.check_fits`). In a
multi-process run each host is charged its share of what lives on the devices (minibatches, states) and
the whole host copy of an evaluation batch, which every process builds. The
tasks' examples are checked where the scenario is built (:func:`lwcl.data.scenarios.held_bytes`).
"""

from __future__ import annotations

import math
from typing import Callable

import jax

from lwcl.platform import host_memory

FLOAT32 = 4


def check_batches(config, image_shape: tuple, replicas: int, eval_batch_size: int, largest_split: int) -> None:
  """Refuses an evaluation batch, or the replicas' minibatches of one step, that cannot fit in memory.

  Args:
    config: the run's config (``train.batch_size``, ``train.eval_batch_size``).
    image_shape: ``(H, W, C)`` of the data set's images.
    replicas: how many runs the program trains at once (1 for a single run).
    eval_batch_size: the evaluation batch as padded (:attr:`lwcl.engine.build.Setup.eval_batch_size`).
    largest_split: the most examples in one split of the data set (named in the fix).
  Raises:
    ConfigError: one line with the estimate, the memory and the key to lower.
  """
  pixels, processes = math.prod(image_shape), jax.process_count()
  shape = "x".join(str(d) for d in image_shape)
  host_memory.check_fits(
      eval_batch_size * pixels + eval_batch_size * pixels * FLOAT32 // processes,
      f"train.eval_batch_size={config.train.eval_batch_size}: one evaluation batch ({eval_batch_size} images of "
      f"{shape} pixels, as uint8 and as float32)",
      f"lower --config.train.eval_batch_size (the data set's largest split has {largest_split} examples)")
  if replicas > 1:
    host_memory.check_fits(
        replicas * config.train.batch_size * pixels * FLOAT32 // processes,
        f"{_replicas_text(config, replicas)} at train.batch_size={config.train.batch_size}: one step's "
        f"minibatches ({replicas} x {config.train.batch_size} images of {shape} pixels as float32)",
        f"{_fewer_replicas(config)} or --config.train.batch_size")


def _replicas_text(config, replicas: int) -> str:
  """``'1000000 replicas (num_seeds=1000000)'``, ``'6 replicas (num_orders=2 x num_seeds=3)'``, ..."""
  parts = [f"{len(config.sweep.candidates)} sweep.candidates"] if config.sweep.key else []
  parts += [f"{k}={config[k]}" for k in ("num_orders", "num_seeds") if config[k]]
  return f"{replicas} replicas ({' x '.join(parts)})"


def _fewer_replicas(config) -> str:
  """The keys that make the replicas, as a fix: ``'lower --config.num_seeds'``."""
  keys = (["sweep.candidates"] if config.sweep.key else []) + [k for k in ("num_orders", "num_seeds") if config[k]]
  return "lower " + " or ".join(f"--config.{k}" for k in keys) if keys else "train fewer replicas at once"


def state_bytes(one_state: Callable[[jax.Array], object]) -> tuple[int, int]:
  """``(state bytes, parameter bytes)`` of one replica: ``one_state(key)`` returns ``(params, state)``
  (``state`` every array a replica keeps), traced with ``jax.eval_shape``, nothing allocated."""
  params, state = jax.eval_shape(one_state, jax.random.PRNGKey(0))
  size = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree))  # noqa: E731
  return size(state), size(params)


def check_states(config, replicas: int, one_state: Callable[[jax.Array], object]) -> None:
  """Refuses a run, or replicas, whose states (each with one gradient) cannot fit in memory.

  Args:
    config: the run's config (named in the message).
    replicas: how many runs the program trains at once.
    one_state: as :func:`state_bytes`.
  Raises:
    ConfigError: one line with the estimate, the memory and how many replicas would fit.
  """
  state, params = state_bytes(one_state)
  each = state + params
  sizes = f"{host_memory.size_text(state)} of state and a {host_memory.size_text(params)} gradient"
  if replicas <= 1:
    host_memory.check_fits(each, f"the model's state ({sizes}; model.name={config.model.name}, "
                           f"{config.scenario.max_tasks or config.scenario.num_tasks} task slots)",
                           "shrink the model, or lower --config.scenario.max_tasks or num_tasks")
    return
  processes = jax.process_count()  # the replicas are split over the processes' devices
  fit = host_memory.limit_bytes() * processes // max(each, 1)
  host_memory.check_fits(replicas * each // processes, f"{_replicas_text(config, replicas)} of {sizes} each"
                         + (f", {processes} processes" if processes > 1 else ""),
                         f"{_fewer_replicas(config)} (about {fit} replicas fit) or shrink the model")
