"""The compiled steps of a run (:class:`Steps`): as written for a single run, mapped over batched replicas
(:meth:`lwcl.engine.replicas.Replicas.vmap`). Replicas differ only in data: their states (seeds; a swept
method hyper-parameter is in the method state), their batches (task orders), the learning rate argument,
and, for task orders under masked heads, the row of a stacked table of label masks each reads at its index
on the vmapped axis (:func:`lwcl.core.model_fns.task_masks`). On a mesh of several devices or processes
(:attr:`lwcl.platform.devices.DataParallel.shards_replicas`) the replicas' states, batches and per-replica
arguments are split over the mesh's ``replica`` axis and each replica's batch over its ``data`` axis
(``jax.vmap``'s ``spmd_axis_name``: the partitioner keeps each replica's computation on its devices); the
values the host reads come back replicated. On one device of one process they are compiled as before.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax

from lwcl.core.model_fns import ModelFns
from lwcl.engine.replicas import Replicas
from lwcl.engine.steps import make_eval_step, make_train_step, make_train_steps
from lwcl.methods import Method
from lwcl.platform.devices import DATA, REPLICA, DataParallel


@dataclasses.dataclass(frozen=True)
class Steps:
  """The compiled steps of a setup (vmapped over the replicas when they are batched).

  Attributes:
    train_step: ``(state, batch, learning_rate) -> (state, metrics)`` (:func:`lwcl.engine.steps.make_train_step`),
      state donated; batched replicas each get their own minibatch (``[R, B, ...]``).
    train_steps: ``(state, data, steps, count) -> (state, losses)`` (:func:`lwcl.engine.steps.make_train_steps`);
      batched replicas each get their own ``steps['index']`` (``[R, K, B]``) on shared data.
    eval_step: ``(params, batch_stats, batch, method_state) -> (correct, count)``, and the Task-IL hits
      ``task_il_correct`` third in class-incremental scenarios (:func:`lwcl.engine.steps.make_eval_step`: the
      method state is read only by a method with its own evaluation scores; :func:`compile_eval_step`).
    init_opt: ``params -> opt_state`` (a fresh optimizer state, ``optimizer.reset_each_task``).
  """
  train_step: Callable
  train_steps: Callable
  eval_step: Callable
  init_opt: Callable


def compile_steps(fns: ModelFns, tx, method: Method, parallel: DataParallel, replicas: Replicas,
                  shared_data: bool = True, lr_per_replica: bool = False, task_il_masks=None) -> Steps:
  """The jitted steps of ``fns``, ``tx`` and ``method`` for ``replicas`` (see :class:`Steps`).

  Args:
    shared_data: whether every replica trains and is evaluated on the same task data (seeds); False for task
      orders, whose training data (``train_steps``) and evaluation batches carry the replica axis too.
    lr_per_replica: the learning rate argument carries the replica axis (a swept learning rate).
    task_il_masks: each task's classes for the Task-IL hits of the evaluation step (class-incremental
      scenarios; :func:`compile_eval_step`), or None.
  """
  rep, bat = parallel.replicated, parallel.batch
  eval_step = compile_eval_step(fns, method, parallel, replicas, shared_data, task_il_masks)
  if not replicas.batched:
    return Steps(jax.jit(make_train_step(fns, tx, method), donate_argnums=(0,), in_shardings=(rep, bat, rep),
                         out_shardings=(rep, rep)),
                 jax.jit(make_train_steps(fns, tx, method, bat), donate_argnums=(0,),
                         in_shardings=(rep, rep, rep, rep), out_shardings=(rep, rep)),
                 eval_step, lambda params: parallel.replicate(tx.init(params)))
  data_axis, lr_axis = None if shared_data else 0, 0 if lr_per_replica else None
  steps_axes = {"index": 0, "learning_rate": lr_axis, **({"phase": None} if fns.is_greedy else {})}
  in_axes = {"train_step": (0, 0, lr_axis), "train_steps": (0, data_axis, steps_axes, None)}
  if not parallel.shards_replicas:  # one device of one process: compiled as before meshes existed
    builders = {"train_step": make_train_step, "train_steps": make_train_steps}

    def compiled(name: str, **jit_kwargs):
      return jax.jit(replicas.vmap(builders[name](fns, tx, method), in_axes[name]), **jit_kwargs)

    return Steps(compiled("train_step", donate_argnums=(0,)), compiled("train_steps", donate_argnums=(0,)),
                 eval_step, jax.jit(replicas.vmap(tx.init, 0)))
  # Replicas split over the mesh's 'replica' axis, each replica's batch over 'data'; what the host reads
  # (losses, metrics) comes back replicated, so every process can read every replica's.
  per, lr = parallel.sharding(REPLICA), parallel.sharding(REPLICA) if lr_per_replica else rep
  steps_in = {"index": per, "learning_rate": lr, **({"phase": rep} if fns.is_greedy else {})}
  vmapped = functools.partial(replicas.vmap, spmd_axis_name=REPLICA)
  train_step = jax.jit(vmapped(make_train_step(fns, tx, method), in_axes["train_step"]), donate_argnums=(0,),
                       in_shardings=(per, parallel.sharding(REPLICA, DATA), lr), out_shardings=(per, rep))
  train_steps = jax.jit(vmapped(make_train_steps(fns, tx, method, bat), in_axes["train_steps"]),
                        donate_argnums=(0,), in_shardings=(per, rep if shared_data else per, steps_in, rep),
                        out_shardings=(per, rep))
  return Steps(train_step, train_steps, eval_step,
               jax.jit(vmapped(tx.init, 0), in_shardings=(per,), out_shardings=per))


def compile_eval_step(fns: ModelFns, method: Method, parallel: DataParallel, replicas: Replicas,
                      shared_data: bool = True, task_il_masks=None) -> Callable:
  """The jitted evaluation step (:func:`lwcl.engine.steps.make_eval_step`) for ``replicas``.

  Args:
    shared_data: as in :func:`compile_steps` (the evaluation batches carry the replica axis when False).
    task_il_masks: bool ``[max_tasks, O]``, or ``[R, max_tasks, O]`` when the replicas' task orders give
      them different tables (read at each replica's index on the vmapped axis, as label masks are:
      :func:`lwcl.core.model_fns.task_il_scores`), or None: the step then returns ``(correct, count)`` as
      compiled before the Task-IL hits existed, else ``(correct, count, task_il_correct)``.
  """
  step = make_eval_step(fns, method, task_il_masks)
  rep, bat = parallel.replicated, parallel.batch
  outs = (rep,) * (2 if task_il_masks is None else 3)
  if not replicas.batched:
    return jax.jit(step, in_shardings=(rep, rep, bat, rep), out_shardings=outs)
  in_axes = (0, 0, None if shared_data else 0, 0)
  if not parallel.shards_replicas:
    return jax.jit(replicas.vmap(step, in_axes))
  per = parallel.sharding(REPLICA)
  batch = bat if shared_data else parallel.sharding(REPLICA, DATA)
  return jax.jit(replicas.vmap(step, in_axes, spmd_axis_name=REPLICA), in_shardings=(per, per, batch, per),
                 out_shardings=outs)
