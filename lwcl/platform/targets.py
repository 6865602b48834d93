"""The platforms a run's programs are built for: a build-time input of
:meth:`lwcl.engine.build.Setup.build` (and :class:`lwcl.engine.experiment.Experiment`), by default the
platform of the process's default backend.

What is traced depends on it where lwcl picks a lowering per platform: ``model.conv_impl=auto`` computes
convolutions with CPU-tuned lowerings (oneDNN's custom calls, multiply-adds, patch matmuls) only in programs
built for the CPU alone, and the ConvNet's 2x2 max pool takes its CPU form only there
(:mod:`lwcl.models.conv`, :func:`lwcl.models.convnet.max_pool_2x2`). A program that is exported with
``jax.export`` for another platform than the one it runs on (e.g. lowered for ``cuda`` or ``tpu`` on a
CPU-only machine) is built for that platform::

    exp = Experiment(config, platforms=("cuda",))
    jax.export.export(exp.train_step, platforms=["cuda"])(state, batch, learning_rate)

Names are ``jax.export``'s (:data:`PLATFORMS`); ``gpu`` (``jax.default_backend()``'s name for either GPU
platform) is accepted as well.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax

from lwcl.errors import LwclError

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
_ALIASES = ("gpu",)


def target_platforms(platforms: str | Sequence[str] | None = None) -> tuple[str, ...]:
  """``platforms`` as a tuple of platform names: a name or names (:data:`PLATFORMS`, or ``gpu``), or None
  for the default backend's platform (``jax.export.default_export_platform()``: ``cpu``, ``cuda``, ``rocm``
  or ``tpu``).

  Raises:
    ValueError: an unknown platform name, or an empty sequence.
    LwclError: ``platforms`` is None and no backend starts (:func:`default_platform`).
  """
  if platforms is None:
    return (default_platform(),)
  names = (platforms,) if isinstance(platforms, str) else tuple(platforms)
  names = tuple(str(p).lower() for p in names)
  unknown = [p for p in names if p not in PLATFORMS + _ALIASES]
  if unknown or not names:
    raise ValueError(f"unknown platform {unknown[0] if unknown else '(none given)'}; use one or more of "
                     f"{', '.join(PLATFORMS)}")
  return names


def default_platform() -> str:
  """The platform of the process's default backend (``jax.export.default_export_platform()``), starting the
  backends if none has started.

  Raises:
    LwclError: no backend starts, e.g. ``JAX_PLATFORMS=cuda`` where no CUDA jaxlib is installed (JAX raises
      a bare ``AssertionError``) or ``JAX_PLATFORMS=tpu`` without libtpu; one line naming the setting and
      the fix.
  """
  try:
    return jax.export.default_export_platform()
  except (RuntimeError, AssertionError) as e:
    asked = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms or ""
    detail = " ".join(str(e).split())[:200] or "no backend registered for it"
    raise LwclError(f"JAX could not start a backend for JAX_PLATFORMS={asked!r} ({detail}); install the jaxlib "
                    "for that platform (a GPU: pip install 'jax[cuda12]', as bin/gpu-check does; a TPU: "
                    "pip install 'jax[tpu]') or unset JAX_PLATFORMS to run on the CPU") from None


def cpu_only(platforms: str | Sequence[str] | None = None) -> bool:
  """Whether every platform of ``platforms`` (as :func:`target_platforms` reads it) is the CPU: only then may
  a program contain CPU-only or CPU-tuned lowerings."""
  return all(p == "cpu" for p in target_platforms(platforms))
