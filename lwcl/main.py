"""Command-line entry point: ``python -m lwcl.main --config=configs/default.py --workdir=DIR``.

Kept short on purpose (the project card fixes this entry point): the command line lives in
:mod:`lwcl.cli.main`.
"""

from lwcl.cli.main import main, parse_flags, run  # noqa: F401  (re-exported for callers of lwcl.main)

if __name__ == "__main__":
  run()
