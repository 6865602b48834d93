"""lwcl.platform.targets: the platforms a run's programs are built for."""

import pytest

from lwcl.platform import targets


def test_default_is_the_default_backends_platform():
  assert targets.target_platforms() == ("cpu",)  # the suite runs on JAX_PLATFORMS=cpu
  assert targets.cpu_only()


@pytest.mark.parametrize("given,names,cpu_only", [
    ("cpu", ("cpu",), True), ("CUDA", ("cuda",), False), (("cuda", "tpu"), ("cuda", "tpu"), False),
    (["cpu", "cpu"], ("cpu", "cpu"), True), (("cpu", "rocm"), ("cpu", "rocm"), False), ("gpu", ("gpu",), False)])
def test_names(given, names, cpu_only):
  assert targets.target_platforms(given) == names
  assert targets.cpu_only(given) == cpu_only


@pytest.mark.parametrize("given", ["metal", ("cpu", "npu"), ()])
def test_unknown_or_no_platform_is_an_error(given):
  with pytest.raises(ValueError, match="platform"):
    targets.target_platforms(given)
