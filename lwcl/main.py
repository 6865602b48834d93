"""Command-line entry point: ``python -m lwcl.main --config=configs/default.py --workdir=DIR``.

Kept short on purpose (the project card fixes this entry point): the command line lives in
:mod:`lwcl.cli.main`.
"""

if __name__ == "__main__":  # Ctrl-C recorded from here on, raised at lwcl's safe points (not on import)
  from lwcl.platform import interrupts
  interrupts.install()

from lwcl.cli.main import main, parse_flags, run  # noqa: E402,F401  (re-exported for callers of lwcl.main)

if __name__ == "__main__":
  run()
