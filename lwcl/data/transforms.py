"""Per-image transforms of the permuted and rotated scenarios, applied to any batch of images.

Both act on each image on its own, so applying them to a whole task at once (the in-memory source) or to
each batch as it is read (the streaming source) gives the same pixels.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=256)
def pixel_permutation(seed: int, num_pixels: int) -> np.ndarray:
  """The pixel permutation of a permuted task: int64 ``[num_pixels]``, a function of ``seed``."""
  return np.random.default_rng(seed).permutation(num_pixels)


def rotate(images: np.ndarray, angle: float) -> np.ndarray:
  """uint8 ``[N, H, W, C]`` rotated by ``angle`` degrees about the centre (bilinear, zeros outside)."""
  if angle % 360 == 0:
    return images
  import scipy.ndimage  # pylint: disable=g-import-not-at-top  (0.3 s: only rotated streams need it)
  out = scipy.ndimage.rotate(images.astype(np.float32), angle, axes=(1, 2), reshape=False, order=1,
                             mode="constant", cval=0.0)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def permute(images: np.ndarray, perm: np.ndarray | None) -> np.ndarray:
  """uint8 ``[N, H, W, C]`` with the pixels (all channels together) reordered by ``perm`` ``[H * W]``."""
  if perm is None:
    return images
  n, h, w, c = images.shape
  return images.reshape(n, h * w, c)[:, perm].reshape(n, h, w, c)


def _permute_task(images: np.ndarray, seed) -> np.ndarray:
  h, w = images.shape[1:3]
  return permute(images, pixel_permutation(int(seed), h * w))


def _rotate_task(images: np.ndarray, angle) -> np.ndarray:
  return rotate(images, float(angle))


# A task's transform is a dict of one entry; its key names the function applied to uint8 [N, H, W, C] with
# the entry's value (a scenario kind adds its transform here).
TRANSFORMS = {"permutation_seed": _permute_task, "angle_degrees": _rotate_task}


def apply(images: np.ndarray, transform: dict | None) -> np.ndarray:
  """A task's transform (``Task.transform``: None, or one entry of :data:`TRANSFORMS`, e.g.
  ``{'permutation_seed': s}`` or ``{'angle_degrees': a}``) applied to uint8 ``[N, H, W, C]``; returns the
  same shape and dtype."""
  if not transform:
    return images
  for key, fn in TRANSFORMS.items():
    if key in transform:
      return fn(images, transform[key])
  raise ValueError(f"unknown transform {transform}")
