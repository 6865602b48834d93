"""``python -m lwcl.benchmarks NAME [args]``: runs benchmark NAME."""

import importlib
import pkgutil
import sys

import lwcl.benchmarks


def main() -> None:
  names = sorted(m.name for m in pkgutil.iter_modules(lwcl.benchmarks.__path__) if not m.name.startswith("_"))
  if len(sys.argv) < 2 or sys.argv[1] not in names:
    print(f"usage: bin/bench NAME [args]; NAME is one of: {', '.join(names) or '(none yet)'}",
          file=sys.stderr)
    sys.exit(2)
  importlib.import_module(f"lwcl.benchmarks.{sys.argv[1]}").main(sys.argv[2:])


if __name__ == "__main__":
  main()
