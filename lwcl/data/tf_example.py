"""The ``tf.train.Example`` records of a record folder: the message class (built from its descriptor, so
TensorFlow is not needed), one record written deterministically, one record parsed."""

from __future__ import annotations

from lwcl.data.shards import FEATURES_FILE, REWRITE
from lwcl.errors import DataError


def _example_class():
  """The ``tf.train.Example`` message class, built from its descriptor in a private pool."""
  # pylint: disable-next=g-import-not-at-top
  from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
  f = descriptor_pb2.FileDescriptorProto(name="lwcl_example.proto", package="lwcl_tf", syntax="proto3")
  T = descriptor_pb2.FieldDescriptorProto

  def message(name, fields, nested=()):
    m = f.message_type.add(name=name) if not nested else nested
    for num, (fname, ftype, label, type_name) in enumerate(fields, 1):
      fd = m.field.add(name=fname, number=num, type=ftype, label=label)
      if type_name:
        fd.type_name = type_name
    return m

  rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL
  message("BytesList", [("value", T.TYPE_BYTES, rep, "")])
  message("FloatList", [("value", T.TYPE_FLOAT, rep, "")])
  message("Int64List", [("value", T.TYPE_INT64, rep, "")])
  feature = message("Feature", [("bytes_list", T.TYPE_MESSAGE, opt, ".lwcl_tf.BytesList"),
                                ("float_list", T.TYPE_MESSAGE, opt, ".lwcl_tf.FloatList"),
                                ("int64_list", T.TYPE_MESSAGE, opt, ".lwcl_tf.Int64List")])
  feature.oneof_decl.add(name="kind")
  for fd in feature.field:
    fd.oneof_index = 0
  features = f.message_type.add(name="Features")
  entry = features.nested_type.add(name="FeatureEntry")
  entry.options.map_entry = True
  entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=opt)
  entry.field.add(name="value", number=2, type=T.TYPE_MESSAGE, label=opt, type_name=".lwcl_tf.Feature")
  features.field.add(name="feature", number=1, type=T.TYPE_MESSAGE, label=rep,
                     type_name=".lwcl_tf.Features.FeatureEntry")
  message("Example", [("features", T.TYPE_MESSAGE, opt, ".lwcl_tf.Features")])
  pool = descriptor_pool.DescriptorPool()
  pool.Add(f)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("lwcl_tf.Example"))


_EXAMPLE = []


def example_class():
  if not _EXAMPLE:
    _EXAMPLE.append(_example_class())
  return _EXAMPLE[0]


def serialize(image_bytes: bytes, label: int, spec) -> bytes:
  """One record: a serialized ``tf.train.Example`` with ``image`` bytes and an int64 ``label``; the same
  bytes in every process (map entries in key order, not protobuf's per-process hash order)."""
  ex = example_class()()
  ex.features.feature[spec.image_key].bytes_list.value.append(image_bytes)
  ex.features.feature[spec.label_key].int64_list.value.append(int(label))
  return ex.SerializeToString(deterministic=True)


def parse(record: bytes, spec, where: str) -> tuple[bytes, int]:
  """``(image bytes, label)`` of one record; DataError when it is no Example with the spec's features."""
  try:
    feats = example_class().FromString(record).features.feature
  except Exception as e:  # pylint: disable=broad-except  (protobuf's DecodeError)
    raise DataError(f"a record of {where} is not a tf.train.Example ({type(e).__name__}); {REWRITE}") from None
  if spec.image_key not in feats or spec.label_key not in feats:
    raise DataError(f"records of {where} have features {sorted(feats)}, not '{spec.image_key}' and "
                    f"'{spec.label_key}'; set image_key / label_key in {FEATURES_FILE}")
  image, label = feats[spec.image_key].bytes_list.value, feats[spec.label_key].int64_list.value
  if len(image) != 1 or len(label) != 1:
    raise DataError(f"a record of {where} has {len(image)} bytes value(s) of '{spec.image_key}' and {len(label)} "
                    f"int64 value(s) of '{spec.label_key}', not one each; fix image_key / label_key in "
                    f"{FEATURES_FILE} or rewrite the records")
  return image[0], int(label[0])
