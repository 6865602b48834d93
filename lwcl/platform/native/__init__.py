"""Compiled extensions of lwcl: oneDNN convolutions as XLA FFI custom calls (:mod:`lwcl.platform.native.build`)."""
