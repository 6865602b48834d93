"""Command-line entry point.

    python -m lwcl.main --config=configs/default.py --workdir=runs/x [--config.a.b=value ...]

The config is locked: an override of a key that does not exist, or of the wrong type, is an error; every
value is then checked against ``configs/default.py`` (:mod:`lwcl.config_check`, from ``driver.run``)
before anything is built. Any user error ends with one line ``error: <problem>; <fix>`` on stderr and
exit status 2.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import Callable

# TensorFlow (inside tensorflow-datasets and the TensorBoard writer) logs start-up chatter; keep warnings.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging
from ml_collections import config_flags

from lwcl.errors import LwclError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file with get_config().",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, results.json, TensorBoard events, plots.")

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
  """Prints one error line and exits with status 2."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def parse_flags(argv: list) -> list:
  """absl flag parsing whose errors (unknown key, bad value, missing flag) are one line and exit 2."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    msg = " ".join(str(e).split())
    fail(_override_message(msg, argv) or f"{msg}; see configs/default.py for every key and its type")
  except (KeyError, AttributeError, TypeError, ValueError) as e:
    msg = " ".join(str(e).split()).strip("'\"")
    fail(f"bad config override ({msg}); see configs/default.py for every key and its type")
  except Exception as e:  # config file that fails to load
    fail(f"cannot load the config ({type(e).__name__}: {' '.join(str(e).split())}); check --config")
  return []


def _override_message(msg: str, argv: list) -> str | None:
  """For a ``--config.KEY=VALUE`` that ml_collections could not convert (``flag --config.KEY=...: ...``),
  the message of :func:`lwcl.config_check.override_message` (key, value, expected type, example)."""
  match = re.match(r"flag --config\.([\w.]+)=", msg)
  if not match:
    return None
  key = match.group(1)
  texts = [a.split("=", 1)[1] for a in argv if a.startswith(f"--config.{key}=")]
  texts = [t for t in texts if msg.startswith(" ".join(f"flag --config.{key}={t}:".split()))]
  if not texts:
    return None
  text = max(texts, key=len)  # the refused one of repeated overrides (its text starts the message)
  from lwcl import config_check  # pylint: disable=g-import-not-at-top
  try:
    return config_check.override_message(key, text, config_check.default_reference())
  except LwclError:
    return None


def main(argv: list, on_step: Callable[[int], None] | None = None) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments {' '.join(argv[1:])}; overrides look like --config.train.batch_size=32")
  if FLAGS.config is None:
    fail("no config given; pass --config=configs/default.py")
  if not FLAGS.workdir:
    fail("no workdir given; pass --workdir=DIR (results and checkpoints go there)")
  logging.set_verbosity(logging.WARNING)
  from lwcl import driver  # pylint: disable=g-import-not-at-top  (after flags: keeps --help fast)
  try:
    results = driver.run(FLAGS.config, FLAGS.workdir, on_step)
  except LwclError as e:
    fail(str(e))
  print(driver.format_summary(results), flush=True)
  print(f"results: {FLAGS.workdir}/results.json", flush=True)


def run(on_step: Callable[[int], None] | None = None) -> None:
  """Parses the command line and runs it; ``on_step(global_step)`` is called after every train step (a
  hook for fault-injection tests, see ``tests/fault_run.py``)."""
  app.run(functools.partial(main, on_step=on_step), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
