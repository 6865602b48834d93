"""lwcl.engine.loop (and lwcl.engine.dispatch): no host round trip inside a log interval (issue 30, item 2).

``jax.transfer_guard('disallow')`` does not fire on the CPU backend (its arrays are host memory), so the test
counts every read of a device array's value on the host instead: ``jax.Array``'s ``_value`` (what
``np.asarray``, ``float``, ``.item()``, ``jax.device_get`` and printing all go through) and calls of
``jax.device_get``, between consecutive steps of a run (``on_step``).
"""

import jax
import pytest
from jax._src import array as jax_array  # ArrayImpl._value: every device-to-host read of a jax.Array

from lwcl.engine.experiment import Experiment

from helpers import small_config

LOG_EVERY, STEPS_PER_TASK = 4, 12  # 120 examples per task, batch 20, 2 epochs


@pytest.mark.parametrize("k", [1, 4])
def test_nothing_is_fetched_between_log_steps_and_the_losses_once_per_interval(tmp_path, monkeypatch, k):
  config = small_config(**{"model.hidden": (16,), "scenario.num_tasks": 2, "scenario.samples_per_task": 120,
                           "train.epochs_per_task": 2, "train.log_every_steps": LOG_EVERY,
                           "train.steps_per_dispatch": k})
  exp = Experiment(config)
  assert exp.steps_per_epoch == (STEPS_PER_TASK // 2,) * 2
  counts = {"reads": 0, "device_get": 0}
  value, device_get = jax_array.ArrayImpl._value, jax.device_get

  def counted_value(self):
    counts["reads"] += 1
    return value.fget(self)

  def counted_device_get(x):
    counts["device_get"] += 1
    return device_get(x)

  monkeypatch.setattr(jax_array.ArrayImpl, "_value", property(counted_value))
  monkeypatch.setattr(jax, "device_get", counted_device_get)
  after_step = []  # (global step, reads so far, device_get calls so far), after every step
  exp.run(str(tmp_path), on_step=lambda step: after_step.append((step, counts["reads"], counts["device_get"])))
  assert [s for s, _, _ in after_step] == list(range(1, 2 * STEPS_PER_TASK + 1))
  assert counts["reads"] > 0  # the counter sees the run's fetches (evaluations, checkpoints, losses)

  for (_, reads0, gets0), (step, reads, gets) in zip(after_step, after_step[1:]):
    task_step = (step - 1) % STEPS_PER_TASK + 1
    if task_step == 1:  # the previous task's end (evaluation, checkpoint) precedes this step
      continue
    if task_step % LOG_EVERY:
      assert (reads - reads0, gets - gets0) == (0, 0), f"step {step}: a host read inside a log interval"
    else:  # the interval's losses, in one device_get: one array per step (k = 1) or per dispatch of k steps
      assert (reads - reads0, gets - gets0) == (LOG_EVERY // k, 1), f"log step {step}"
