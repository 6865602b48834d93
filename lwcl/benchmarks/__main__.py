"""``python -m lwcl.benchmarks NAME [args]``: runs benchmark NAME (a module of this package; dashes in NAME
stand for underscores, e.g. ``vs-torch``)."""

import importlib
import pkgutil
import sys

import lwcl.benchmarks


def main() -> None:
  names = sorted(m.name for m in pkgutil.iter_modules(lwcl.benchmarks.__path__) if not m.name.startswith("_"))
  name = sys.argv[1].replace("-", "_") if len(sys.argv) > 1 else ""
  if name not in names:
    shown = ", ".join(n.replace("_", "-") for n in names)
    print(f"usage: bin/bench NAME [args]; NAME is one of: {shown or '(none yet)'}", file=sys.stderr)
    sys.exit(2)
  importlib.import_module(f"lwcl.benchmarks.{name}").main(sys.argv[2:])


if __name__ == "__main__":
  main()
