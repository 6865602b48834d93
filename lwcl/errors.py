"""User-facing errors.

Every error a user can cause (a bad config, missing data, a corrupt checkpoint, a diverged run) is raised
as an :class:`LwclError` whose message is one line naming the problem and the fix. ``lwcl.main`` prints
it as ``error: <message>`` and exits with status 2 (:func:`exit_with`); nothing already written is
overwritten. A run stopped with Ctrl-C ends with one ``stopped: <where>; <how to resume>`` line and
status 130 (:class:`Interrupted`).
"""

import os
import sys


class LwclError(Exception):
  """Base class: a problem the user can fix, described in one line."""


class ConfigError(LwclError):
  """The configuration is invalid or asks for something impossible."""


class DataError(LwclError):
  """A data set is missing, unreadable or does not fit the scenario."""


class CheckpointError(LwclError):
  """A checkpoint is corrupt, or belongs to a different experiment."""


class DivergenceError(LwclError):
  """Training produced a non-finite loss."""


class Interrupted(LwclError):
  """The user stopped the run (Ctrl-C, SIGINT); the message says where, and that a rerun resumes."""


EXIT_USER_ERROR = 2  # every LwclError
EXIT_INTERRUPTED = 130  # Interrupted: 128 + SIGINT, as a shell reports a process stopped by Ctrl-C


def exit_with(error: LwclError):
  """Prints ``error`` as one line on stderr and exits: ``stopped: <message>`` and status 130 for
  :class:`Interrupted`, else ``error: <message>`` and status 2. Never returns."""
  stopped = isinstance(error, Interrupted)
  print(f"{'stopped' if stopped else 'error'}: {error}", file=sys.stderr, flush=True)
  sys.exit(EXIT_INTERRUPTED if stopped else EXIT_USER_ERROR)


def exit_now(error: LwclError):
  """Prints ``error`` as :func:`exit_with` does and ends the process at once (``os._exit``: no cleanup
  handlers run), from any thread. For a process that cannot stop in order: its main thread is blocked in a
  collective whose partner is gone (:mod:`lwcl.platform.liveness`). Never returns."""
  sys.stdout.flush()
  print(f"error: {error}", file=sys.stderr, flush=True)
  os._exit(EXIT_USER_ERROR)  # pylint: disable=protected-access
