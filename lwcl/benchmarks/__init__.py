"""Benchmarks run by ``bin/bench NAME``: each submodule ``lwcl.benchmarks.NAME`` has ``main(argv)``.

Numbers are reported as ratios against a baseline measured in the same run (never as timed assertions in
tests).
"""
