"""TensorBoard scalars without TensorFlow: :class:`MetricWriter` writes TensorBoard event files with the
``tensorboard`` package's record writer and protocol buffers and logs every scalar.

Why not clu's or tensorboard's own writer: both open their files through ``tf.io.gfile``, which imports
TensorFlow when it is installed (it is, for tensorflow-datasets): about 4-7 s of every run. The record
format (length, masked CRC-32C, payload, masked CRC-32C), the ``Event``/``Summary`` protos and the scalar
plugin's metadata all come from ``tensorboard``; the events are the ones ``tf.summary.scalar`` writes
(a float32 scalar tensor with the ``scalars`` plugin's metadata), so TensorBoard and its
``EventAccumulator`` read them as before. Only local paths are supported (no ``gs://``).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Mapping

import numpy as np
from absl import logging
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

from lwcl.io import safe_files

FILE_PREFIX = "events.out.tfevents"


class MetricWriter:
  """Scalars to the INFO log (as clu's ``LoggingWriter``: ``[step] key=value, ...``) and, when
  ``write_events``, to a new TensorBoard event file in ``logdir``.

  Args:
    logdir: the folder for the event file (created if missing); unused without ``write_events``.
    write_events: False logs only (processes other than the main one of a multi-host run).
  Raises:
    OSError: ``logdir`` cannot be created or written.
    LwclError: the events file's name is a symbolic link (:func:`lwcl.io.safe_files.create_new`).
  """

  def __init__(self, logdir: str, write_events: bool = True):
    self._records = None
    self.path = None
    if write_events:
      os.makedirs(logdir, exist_ok=True)
      stem = os.path.join(logdir, f"{FILE_PREFIX}.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}")
      self.path, fd = _new_events_file(stem)
      self._records = RecordWriter(os.fdopen(fd, "wb"))
      self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
      self.flush()
    self._metadata = scalar_metadata.create_summary_metadata(display_name=None, description=None)
    self._metadata.data_class = summary_pb2.DataClass.DATA_CLASS_SCALAR

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Records ``scalars`` (tag -> a number; written as float32) at global step ``step`` (int); the event
    reaches the file at once (TensorBoard shows a running run; a crash loses nothing written)."""
    shown = [f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(scalars.items())]
    logging.info("[%d] %s", step, ", ".join(shown))
    if self._records is None:
      return
    event = event_pb2.Event(wall_time=time.time(), step=int(step))
    for tag, value in scalars.items():
      event.summary.value.add(tag=tag, metadata=self._metadata,
                              tensor=tensor_util.make_tensor_proto(np.float32(value)))
    self._write(event)
    self.flush()

  def _write(self, event) -> None:
    self._records.write(event.SerializeToString())

  def flush(self) -> None:
    """Writes buffered events to the file."""
    if self._records is not None and not self._records.closed:
      self._records.flush()

  def close(self) -> None:
    """Flushes and closes the file; later writes raise ValueError. Safe to call twice."""
    if self._records is not None and not self._records.closed:
      self._records.close()


def _new_events_file(stem: str) -> tuple:
  """``(path, descriptor)`` of a new events file ``STEM.lwcl.v2``, or ``STEM.N.lwcl.v2`` when this process
  already wrote one in the same second (a run resumed at once): created here (``O_EXCL``), never an existing
  file, never through a symbolic link (refused, :func:`lwcl.io.safe_files.create_new`)."""
  for n in range(100):
    path = f"{stem}{f'.{n}' if n else ''}.lwcl.v2"
    if not os.path.exists(path) or os.path.islink(path):
      return path, safe_files.create_new(path)
  return path, safe_files.create_new(path)  # 100 files in one second: refused, one line
