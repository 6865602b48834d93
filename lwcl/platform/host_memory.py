"""The memory of the machine a run is on, and the one-line refusal of a run that cannot fit in it.

Issue 32 found runs that asked for far more than any machine holds and said nothing until the kernel or
NumPy stopped them: ``num_tasks=10**6`` permuted tasks and ``num_seeds=10**6`` printed nothing for 90 s,
``eval_batch_size=10**9`` failed after task 1 allocating 730 GiB. The callers (:mod:`lwcl.data.scenarios`,
:mod:`lwcl.engine.budget`) estimate what a run will hold before allocating it, as a lower bound (so a run
that fits is never refused), and :func:`check_fits` compares it with :func:`limit_bytes`.

The limit is the host's memory: the physical memory, or the control group's limit where that is lower (a
container). An accelerator's own memory is not consulted: where it is smaller than the host's, an
estimate below the host's memory may still not fit the device.
"""

from __future__ import annotations

import os

from lwcl.errors import ConfigError

# Control-group memory limits (v2, v1); an unlimited v1 group reports a number near 2**63.
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def limit_bytes() -> int:
  """The memory this process may use at most: the physical memory (``SC_PHYS_PAGES * SC_PAGE_SIZE``), or its
  control group's limit where that is lower."""
  limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  for path in _CGROUP_LIMITS:
    try:
      with open(path) as f:
        text = f.read().strip()
    except OSError:
      continue
    if text.isdigit() and 0 < int(text) < limit:
      limit = int(text)
  return limit


def size_text(nbytes: float) -> str:
  """``nbytes`` in binary units, three significant figures: ``'730 GiB'``, ``'23.5 GiB'``, ``'512 B'``."""
  units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
  k = 0
  while nbytes >= 1024 and k < len(units) - 1:
    nbytes, k = nbytes / 1024, k + 1
  return f"{nbytes:.3g} {units[k]}" if k else f"{int(nbytes)} B"


def check_fits(need: int, what: str, fix: str, limit: int | None = None) -> None:
  """Refuses, in one line, a run that would hold at least ``need`` bytes when the machine has less.

  Args:
    need: a lower bound of the bytes the run will hold (int; Python ints do not overflow).
    what: what holds them, with the numbers behind the estimate (``'1000000 replicas ...'``).
    fix: the setting to change (``'lower --config.num_seeds'``).
    limit: the memory to compare with (default :func:`limit_bytes`).
  Raises:
    ConfigError: ``need > limit``: ``<what> would take at least <need> of memory, but this machine has
      <limit>; <fix>``.
  """
  limit = limit_bytes() if limit is None else limit
  if need > limit:
    raise ConfigError(f"{what} would take at least {size_text(need)} of memory, but this machine has "
                      f"{size_text(limit)}; {fix}")
