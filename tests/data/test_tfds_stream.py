"""lwcl.data.tfds_stream.feature_spec: a TFDS data set's features (from its features.json) that lwcl cannot
read right are refused with one line (issue 32: 10**11 classes were allocated until the kernel killed the
run after 70 s; a 10**6 x 10**6 image shape ended in NumPy's MemoryError; float32 images, stored bit-cast
to 4 uint8 channels, would be read as other images). Stub builders: no TensorFlow needed. The damaged
features.json of a real prepared set: tests/e2e/test_streaming.py."""

import types

import numpy as np
import pytest

from lwcl.data import tfds_stream
from lwcl.errors import DataError


def builder(shape=(28, 28, 1), num_classes=4, dtype=np.uint8):
  image = types.SimpleNamespace(shape=shape, encoding_format="png", np_dtype=np.dtype(dtype))
  label = types.SimpleNamespace(num_classes=num_classes, names=[str(i) for i in range(min(num_classes, 10))])
  info = types.SimpleNamespace(features={"image": image, "label": label})
  return types.SimpleNamespace(name="tiny", data_dir="/data/tiny/1.0.0", info=info)


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(num_classes=10 ** 11), "label.num_classes=100000000000 is not in [1, 1048576]"),
    (dict(num_classes=0), "label.num_classes=0 is not in"),
    (dict(shape=(10 ** 6, 10 ** 6, 1)), "image.shape [1000000, 1000000, 1] needs over 2147483648 bytes"),
    (dict(dtype=np.float32), "image.dtype float32 is not uint8"),
    (dict(shape=(28, 28, 0)), "image.shape [28, 28, 0] is not [H, W, C]"),
])
def test_features_lwcl_cannot_read_are_refused(kwargs, fragment):
  with pytest.raises(DataError) as e:
    tfds_stream.feature_spec(builder(**kwargs))
  assert fragment in str(e.value) and "TFDS data set 'tiny' in /data/tiny/1.0.0" in str(e.value), str(e.value)


def test_readable_features_give_the_spec():
  spec = tfds_stream.feature_spec(builder(shape=(None, None, 3)))
  assert spec.image_shape == (0, 0, 3) and spec.num_classes == 4 and spec.encoding == "png"
