"""lwcl.engine.budget and lwcl.platform.host_memory: what a run will hold, estimated without allocating it,
compared with the machine's memory to the byte (issue 32: runs that could not fit said nothing, or failed
after task 1)."""

import jax.numpy as jnp
import pytest

from lwcl.engine import budget
from lwcl.errors import ConfigError
from lwcl.platform import host_memory

from helpers import small_config


def _one_state(key):
  """A replica of 10 float32 parameters, ``(params, (params, momentum, int32 step))``: 84 bytes of state and
  a 40-byte gradient."""
  params = {"w": jnp.zeros((2, 5), jnp.float32)}
  return params, (params, {"m": jnp.zeros((2, 5), jnp.float32)}, jnp.zeros((), jnp.int32))


def test_state_bytes_count_every_leaf_without_allocating():
  assert budget.state_bytes(_one_state) == (40 + 40 + 4, 40)
  huge = lambda key: ({"w": jnp.zeros((10**6, 10**6))}, ())  # 4 TB if it were allocated  # noqa: E731
  assert budget.state_bytes(huge) == (0, 4 * 10**12)


@pytest.mark.parametrize("replicas", [1, 3])
def test_states_refused_one_byte_past_the_memory(monkeypatch, replicas):
  config = small_config(num_seeds=replicas if replicas > 1 else 0)
  need = replicas * (84 + 40)
  monkeypatch.setattr(host_memory, "limit_bytes", lambda: need)
  budget.check_states(config, replicas, _one_state)  # exactly fits
  monkeypatch.setattr(host_memory, "limit_bytes", lambda: need - 1)
  words = "the model's state" if replicas == 1 else "3 replicas \\(num_seeds=3\\) of 84 B of state and a 40 B"
  with pytest.raises(ConfigError, match=f"^{words}.* would take at least {need} B of memory, but this machine "
                                        f"has {need - 1} B; "):
    budget.check_states(config, replicas, _one_state)


def test_evaluation_batch_and_replica_minibatches(monkeypatch):
  config = small_config(**{"train.eval_batch_size": 10**9, "num_seeds": 1000})
  monkeypatch.setattr(host_memory, "limit_bytes", lambda: 10**12)
  with pytest.raises(ConfigError, match=r"^train.eval_batch_size=1000000000: one evaluation batch \(1000000000 "
                                        r"images of 28x28x1 pixels, as uint8 and as float32\) would take at least "
                                        r"3.57 TiB .* largest split has 60000 examples\)$"):
    budget.check_batches(config, (28, 28, 1), 1, 10**9, 60000)
  budget.check_batches(config, (28, 28, 1), 1000, 500, 60000)  # 1000 x 20 x 784 x 4 B: 62.7 MB
  monkeypatch.setattr(host_memory, "limit_bytes", lambda: 1000 * 20 * 784 * 4 - 1)
  with pytest.raises(ConfigError, match=r"^1000 replicas \(num_seeds=1000\) at train.batch_size=20: .* lower "
                                        r"--config.num_seeds or --config.train.batch_size$"):
    budget.check_batches(config, (28, 28, 1), 1000, 500, 60000)


def test_size_text_and_the_machine_limit():
  assert [host_memory.size_text(n) for n in (512, 1536, 730 * 2**30, 23.54 * 2**30)] == [
      "512 B", "1.5 KiB", "730 GiB", "23.5 GiB"]
  assert 2**28 < host_memory.limit_bytes() <= 2**60
