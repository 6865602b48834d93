"""lwcl: layer-wise (locally supervised) training and continual learning in JAX/Flax."""

__version__ = "0.1.0"
