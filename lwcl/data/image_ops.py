"""ImageNet-style host image operations of the streaming reader (run in grain's read threads or workers).

Training images get a random-resized crop (Szegedy et al., *Going Deeper with Convolutions*, 2015: area
8%-100% of the image, aspect ratio 3/4-4/3, 10 tries, else the central crop) resized to ``size x size``
and a horizontal flip with probability 1/2; evaluation images are resized so the shorter side is
``size * 256 / 224`` and centre-cropped. The randomness of an image is a function of ``(seed, task, epoch,
record index)``, so a resumed run crops as an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np

EVAL_RESIZE = 256 / 224  # shorter side / crop size at evaluation, the usual ImageNet protocol


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 ``[h, w, C]`` resized (bilinear, PIL) to ``[height, width, C]``."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  c = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if c == 1 else image)
  out = np.asarray(pil.resize((width, height), Image.BILINEAR))
  return out.reshape(height, width, c)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """Evaluation view: shorter side resized to ``round(size * 256 / 224)``, central ``size x size`` crop.
  uint8 ``[h, w, C] -> [size, size, C]``."""
  h, w = image.shape[:2]
  short = max(size, int(round(size * EVAL_RESIZE)))
  if h <= w:
    nh, nw = short, max(short, int(round(w * short / h)))
  else:
    nh, nw = max(short, int(round(h * short / w))), short
  image = _resize(image, nh, nw)
  top, left = (nh - size) // 2, (nw - size) // 2
  return image[top:top + size, left:left + size]


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True) -> np.ndarray:
  """Training view: a random crop of ``scale`` of the area and ``ratio`` aspect, resized to ``size x size``,
  flipped left-right with probability 1/2 when ``flip``. uint8 ``[h, w, C] -> [size, size, C]``."""
  h, w = image.shape[:2]
  area = h * w
  crop = None
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
      crop = image[top:top + ch, left:left + cw]
      break
  if crop is None:  # the central square of the shorter side
    s = min(h, w)
    crop = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
  out = _resize(crop, size, size)
  if flip and rng.random() < 0.5:
    out = out[:, ::-1]
  return np.ascontiguousarray(out)


def view(image: np.ndarray, size: int, augment: tuple | None, index: int) -> np.ndarray:
  """The training view (``augment = (seed, task, epoch)``: random-resized crop and flip, seeded with the
  record ``index``) or the evaluation view (``augment`` None: resize and centre crop) of one image."""
  if augment is None:
    return center_crop(image, size)
  rng = np.random.default_rng([int(v) for v in augment] + [int(index)])
  return random_resized_crop(image, size, rng)
