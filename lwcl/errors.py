"""User-facing errors.

Every error a user can cause (a bad config, missing data, a corrupt checkpoint, a diverged run) is raised
as an :class:`LwclError` whose message is one line naming the problem and the fix. ``lwcl.main`` prints
it as ``error: <message>`` and exits with status 2; nothing already written is overwritten.
"""


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
