"""Command-line entry point.

    python -m lwcl.main --config=configs/default.py --workdir=runs/x [--config.a.b=value ...]
    python -m lwcl.main --options NAME   # the options of a section (model, method, ...) or a component
                                         # (resnet, ewc, split, ...): type, default, bounds, doc

The config is locked: an override of a key that does not exist, or of the wrong type, is an error; every
value is then checked against ``configs/default.py`` (:mod:`lwcl.config.types`, from ``driver.run``)
before anything is built. Any user error ends with one line ``error: <problem>; <fix>`` on stderr and
exit status 2; Ctrl-C ends with one line ``stopped: <where>; <how to resume>`` and status 130.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import Callable

# TensorFlow (inside tensorflow-datasets) logs start-up chatter; keep warnings (lwcl.platform.quiet).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging
from ml_collections import config_flags

from lwcl import platform
from lwcl.config import files as config_files
from lwcl.errors import Interrupted, LwclError, exit_with
from lwcl.platform import interrupts, quiet

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file with get_config().",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, results.json, TensorBoard events, plots.")
flags.DEFINE_string("options", None, "Print the options of a config section (model, method, scenario, data, "
                    "layerwise, optimizer, train, eval, sweep, checkpoint, devices, top-level) or of a "
                    "component (a model, scenario kind or method name, e.g. resnet, split, ewc) with type, "
                    "default, bounds and doc, then exit.")

HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def fail(message: str) -> None:
  """Prints one error line and exits with status 2."""
  exit_with(LwclError(message))


def parse_flags(argv: list) -> list:
  """absl flag parsing whose errors (missing config file, unknown key, bad value) are one line and exit 2;
  ``--help`` exits 0."""
  spec = _config_spec(argv)
  base = None
  if spec is not None:
    try:
      base = config_files.load_spec(spec)  # loaded again by the flag: cheap, and its errors are one line
      from lwcl.config import types as config_check  # pylint: disable=g-import-not-at-top
      # before the overrides: on a partial config they would fail as unknown keys
      config_check.check_complete(base, config_check.default_reference(spec.partition(":")[0]))
    except LwclError as e:
      fail(str(e))
  try:
    return FLAGS(argv)
  except SystemExit:  # absl prints the usage for --help and exits 1
    if any(a.split("=")[0] in HELP_FLAGS for a in argv[1:]):
      sys.exit(0)
    raise
  except flags.Error as e:
    msg = " ".join(str(e).split())
    fail(_override_message(msg, argv) or f"{msg}; see --help for the flags and configs/default.py for the "
         "config keys")
  except (KeyError, AttributeError, TypeError, ValueError) as e:
    msg = " ".join(str(e.args[0] if e.args else e).split())
    fail(_unknown_key_message(argv, base) or f"bad config override ({msg}); see configs/default.py for "
         "every key and its type")
  except Exception as e:  # config file that fails to load
    fail(f"cannot load the config ({type(e).__name__}: {' '.join(str(e).split())}); check --config")
  return []


def _config_spec(argv: list) -> str | None:
  """The value of the last ``--config=SPEC`` (or ``--config SPEC``) in ``argv``."""
  spec = None
  for i, a in enumerate(argv[1:], 1):
    name, eq, value = a.partition("=")
    if name in ("--config", "-config"):
      spec = value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
  return spec


def _unknown_key_message(argv: list, base) -> str | None:
  """For the first ``--config.KEY`` override that ``base`` (the loaded config) does not have: ``unknown
  config key KEY (did you mean ...?); ...``."""
  if base is None:
    return None
  for a in argv[1:]:
    if not a.startswith(("--config.", "-config.")):
      continue
    key = a.split("=", 1)[0].split("config.", 1)[1]
    try:
      config_files.get_key(base, key)
    except KeyError:
      close = config_files.close_key(base, key)
      hint = f" (did you mean {close}?)" if close and close != key else ""
      return f"unknown config key {key}{hint}; see configs/default.py for every key"
  return None


def _override_message(msg: str, argv: list) -> str | None:
  """For a ``--config.KEY=VALUE`` that ml_collections could not convert (``flag --config.KEY=...: ...``),
  the message of :func:`lwcl.config.types.override_message` (key, value, expected type, example)."""
  match = re.match(r"flag --config\.([\w.]+)=", msg)
  if not match:
    return None
  key = match.group(1)
  texts = [a.split("=", 1)[1] for a in argv if a.startswith(f"--config.{key}=")]
  texts = [t for t in texts if msg.startswith(" ".join(f"flag --config.{key}={t}:".split()))]
  if not texts:
    return None
  text = max(texts, key=len)  # the refused one of repeated overrides (its text starts the message)
  from lwcl.config import types as config_check  # pylint: disable=g-import-not-at-top
  try:
    return config_check.override_message(key, text, config_check.default_reference())
  except LwclError:
    return None


def print_options(name: str) -> None:
  """``--options NAME``: prints :func:`lwcl.config.options.describe` and exits 0 (an unknown name: one
  error line, status 2)."""
  from lwcl.config import options  # pylint: disable=g-import-not-at-top  (imports the components: JAX)
  try:
    text = options.describe(name)
  except LwclError as e:
    fail(str(e))
  print(text, flush=True)
  sys.exit(0)


def main(argv: list, on_step: Callable[[int], None] | None = None) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments {' '.join(argv[1:])}; overrides look like --config.train.batch_size=32")
  if FLAGS.options is not None:
    print_options(FLAGS.options)
  if FLAGS.config is None:
    fail("no config given; pass --config=configs/default.py")
  if not FLAGS.workdir:
    fail("no workdir given; pass --workdir=DIR (results and checkpoints go there)")
  logging.set_verbosity(logging.WARNING)
  try:
    interrupts.check()
    from lwcl.runs import driver  # pylint: disable=g-import-not-at-top  (after flags: keeps --help fast)
    results, summarized = _seeds_added_or_reported(FLAGS.config, FLAGS.workdir)
    if results is None:
      results = driver.run(FLAGS.config, FLAGS.workdir, on_step)
  except LwclError as e:
    exit_with(e)
  except KeyboardInterrupt:  # outside the train loop (which names its task and checkpoint)
    exit_with(Interrupted(f"interrupted (Ctrl-C) in {FLAGS.workdir}; rerun the same command to resume from "
                          "its last checkpoint, if any"))
  if interrupts.pressed():  # pressed after the last safe point: the results were written whole
    exit_with(Interrupted(f"interrupted (Ctrl-C) as the run finished; its results are complete in "
                          f"{FLAGS.workdir}/results.json"))
  print(driver.format_summary(results), flush=True)
  if summarized is not None and summarized > results["num_seeds"]:
    print(f"results: {FLAGS.workdir}/seed<s>/results.json ({FLAGS.workdir}/results.json summarizes its "
          f"{summarized} seeds)", flush=True)
  else:
    print(f"results: {FLAGS.workdir}/results.json", flush=True)


def _seeds_added_or_reported(config, workdir: str) -> tuple:
  """``(summary, seeds summarized in workdir)`` when ``workdir`` holds ``config``'s experiment over another
  number of seeds (:func:`lwcl.runs.seed_folders.other_seed_count`): more seeds train alone and join the
  summary, fewer are reported from their folders (:func:`lwcl.runs.seed_folders.run`, as ``bin/compare
  --seeds=N``); else ``(None, None)``, and the run is :func:`lwcl.runs.driver.run`'s. A multi-host run is
  always the driver's: its processes share the workdir, and copying seed folders is one process's work."""
  from lwcl.runs import seed_folders, summaries  # pylint: disable=g-import-not-at-top
  if not config.num_seeds or config.devices.multihost:  # num_seeds 0: one run, not a run of seeds
    return None, None
  summarized = seed_folders.other_seed_count(config, workdir)
  if summarized is None:
    return None, None
  return summaries.summarize(config, seed_folders.run(config, workdir, config.num_seeds)), summarized


def run(on_step: Callable[[int], None] | None = None) -> None:
  """Parses the command line and runs it; ``on_step(global_step)`` is called after every train step (a
  hook for fault-injection tests, see ``tests/fault_run.py``). Applies lwcl's process settings first
  (:func:`lwcl.platform.configure`: XLA:CPU flags, compilation cache), before any JAX computation."""
  interrupts.install()  # Ctrl-C raised at safe points only (lwcl.platform.interrupts)
  quiet.install()  # no echo of a failed checkpoint write around its error line (lwcl.platform.quiet)
  try:
    platform.configure()
  except LwclError as e:  # e.g. a value in XLA_FLAGS that XLA would abort on
    exit_with(e)
  app.run(functools.partial(main, on_step=on_step), flags_parser=parse_flags)


if __name__ == "__main__":
  run()
