"""TFRecord files of ``tf.train.Example`` records, read without TensorFlow.

A TFRecord file is a run of records, each framed as (little-endian, TensorFlow's ``record_writer.cc``)::

    uint64 length | uint32 masked_crc32c(length) | data[length] | uint32 masked_crc32c(data)

with ``masked_crc32c(x) = rotate_right(crc32c(x), 15) + 0xa282ead8 (mod 2**32)``. Each ``data`` is a
serialised ``tf.train.Example``; only the protobuf wire format of the messages involved is decoded here
(``example.proto`` / ``feature.proto``)::

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }   // map entry: string key = 1; Feature value = 2;
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }

A bytes value is located by its byte range, so an image can be read later straight from the file by
offset. Checksums come from ``google-crc32c`` (the ``[train]`` extra). open_clip_jax's layout is a folder
of ``*.tfrecord`` files whose Examples hold the JPEG bytes under ``jpg`` and the caption under ``caption``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import struct
from typing import Iterator

from .common import DatasetError

TFRECORD_SUFFIXES = (".tfrecord", ".tfrec", ".tfrecords")
IMAGE_KEY, CAPTION_KEY = "jpg", "caption"
"""open_clip_jax's default feature keys (``--image-key`` / ``--text-key``)."""

_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")
_KINDS = {1: "bytes_list", 2: "float_list", 3: "int64_list"}


class ExampleError(ValueError):
    """A record is not a usable ``tf.train.Example`` (the message says why)."""


@functools.cache
def _crc32c():
    try:
        import google_crc32c
    except ImportError:
        raise ImportError("reading TFRecord files needs the google-crc32c package: "
                          "pip install 'anyclip[train]' (or pip install google-crc32c)") from None
    return google_crc32c.value


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C checksum of ``data``.

    Example:
        >>> hex(masked_crc32c(b"123456789"))
        '0xc78ab0e5'
    """
    crc = _crc32c()(bytes(data))
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class Record:
    """Record ``index`` (counted from 0) of a TFRecord file: its ``data`` starts at byte ``offset``; when
    the record cannot be used ``data`` is ``None`` and ``problem`` says why."""

    index: int
    offset: int
    data: bytes | None
    problem: str | None = None


def read_records(path: str | os.PathLike) -> Iterator[Record]:
    """The records of a TFRecord file, checksums verified.

    A record whose data checksum fails comes with a ``problem`` and the next records are still read; a
    bad length checksum or a truncated record ends the file (with a ``problem``). A file whose first
    record is not TFRecord framing is a :class:`DatasetError` naming it.

    Example:
        >>> [len(r.data) for r in read_records("train/00000.tfrecord")]  # doctest: +SKIP
        [1843, 1790, 1912]
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        index = pos = 0
        while pos < size:
            header = f.read(_HEADER.size)
            length, crc = _HEADER.unpack(header) if len(header) == _HEADER.size else (0, None)
            if crc is None or masked_crc32c(header[:8]) != crc:
                if index == 0:
                    raise DatasetError(_not_tfrecord(path, header))
                what = "a cut-off record header" if crc is None else "a bad length checksum"
                yield Record(index, pos, None, f"{what} at byte {pos}; the rest of the file "
                                               f"({size - pos} bytes) cannot be read")
                return
            start, end = pos + _HEADER.size, pos + _HEADER.size + length + _CRC.size
            if end > size:
                yield Record(index, start, None, f"truncated: the file ends {end - size} bytes before the "
                                                 f"end of this record")
                return
            data = f.read(length)
            (crc,) = _CRC.unpack(f.read(_CRC.size))
            ok = masked_crc32c(data) == crc
            yield Record(index, start, data if ok else None, None if ok else "bad data checksum")
            index, pos = index + 1, end


def _not_tfrecord(path: str, header: bytes) -> str:
    hint = " (it is gzip-compressed: decompress it first)" if header[:2] == b"\x1f\x8b" else ""
    return f"{path}: not a TFRecord file{hint}; the first record's length checksum does not match"


@dataclasses.dataclass(frozen=True)
class Feature:
    """One feature of an Example: its ``kind`` (``bytes_list``, ``float_list``, ``int64_list`` or
    ``empty``) and, for ``bytes_list``, the ``(start, end)`` byte range of each value in the record."""

    kind: str
    spans: tuple[tuple[int, int], ...] = ()


def parse_example(data: bytes) -> dict[str, Feature]:
    """The features of a serialised ``tf.train.Example``, by key; :class:`ExampleError` when unparsable.

    Example:
        >>> features = parse_example(record.data)  # doctest: +SKIP
        >>> start, end = features["caption"].spans[0]; record.data[start:end]  # doctest: +SKIP
        b'a red circle'
    """
    features = {}
    for _, start, end in _messages(data, 0, len(data), 1, "Example.features"):
        for _, entry_start, entry_end in _messages(data, start, end, 1, "Features.feature"):
            key, value = "", Feature("empty")  # a map entry's defaults
            for number, a, b in _messages(data, entry_start, entry_end, (1, 2), "Features.feature entry"):
                if number == 1:
                    try:
                        key = bytes(data[a:b]).decode("utf-8")
                    except UnicodeDecodeError:
                        raise ExampleError(f"feature key {bytes(data[a:b])!r} is not UTF-8") from None
                else:
                    value = _feature(data, a, b)
            features[key] = value
    return features


def _feature(data: bytes, start: int, end: int) -> Feature:
    kind, spans = "empty", []
    for number, a, b in _messages(data, start, end, tuple(_KINDS), "Feature"):
        if _KINDS[number] != kind:  # oneof: the last kind seen wins; the same kind again is merged
            kind, spans = _KINDS[number], []
        if kind == "bytes_list":
            spans += [(c, d) for _, c, d in _messages(data, a, b, 1, "BytesList.value")]
    return Feature(kind, tuple(spans))


def _messages(data: bytes, start: int, end: int, numbers, what: str) -> Iterator[tuple[int, int, int]]:
    """``(field number, start, end)`` of the length-delimited fields ``numbers`` in ``data[start:end]``;
    other fields are skipped, as protobuf parsers skip unknown fields."""
    numbers = numbers if isinstance(numbers, tuple) else (numbers,)
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, after = _varint(data, pos, end)
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            after = pos + length
        elif wire in (1, 5):
            after = pos + (8 if wire == 1 else 4)
        else:
            raise ExampleError(f"field {number} at byte {pos} has wire type {wire}, which Examples do not use")
        if number == 0 or after > end:
            raise ExampleError(f"malformed field at byte {pos} (number {number}, ends at {after} of {end})")
        if number in numbers:
            if wire != 2:
                raise ExampleError(f"{what} at byte {pos} has wire type {wire}, expected 2 (length-delimited)")
            yield number, pos, after
        pos = after


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ExampleError(f"malformed varint ending at byte {pos}")


@dataclasses.dataclass(frozen=True)
class ImageTextRecord:
    """Record ``index`` of a TFRecord file as an image-caption pair: the image's ``size`` bytes start at
    file byte ``offset``; ``problem`` says why the record cannot be used (then the rest is empty)."""

    index: int
    offset: int = 0
    size: int = 0
    caption: str = ""
    problem: str | None = None


def read_image_text_records(path: str | os.PathLike, image_key: str = IMAGE_KEY,
                            caption_key: str = CAPTION_KEY) -> Iterator[ImageTextRecord]:
    """Image-caption pairs of a TFRecord file of Examples with one bytes value under each key.

    Example:
        >>> for r in read_image_text_records("train/00000.tfrecord"):  # doctest: +SKIP
        ...     print(r.index, r.caption or r.problem)
        0 a red circle
    """
    for record in read_records(path):
        if record.problem is not None:
            yield ImageTextRecord(record.index, problem=record.problem)
            continue
        try:
            features = parse_example(record.data)
        except ExampleError as e:
            yield ImageTextRecord(record.index, problem=f"not a tf.train.Example: {e}")
            continue
        try:
            (image_start, image_end), (text_start, text_end) = (_one_value(features, k)
                                                                for k in (image_key, caption_key))
        except ExampleError as e:
            yield ImageTextRecord(record.index, problem=str(e))
            continue
        caption = record.data[text_start:text_end].decode("utf-8", "replace").strip()
        yield ImageTextRecord(record.index, record.offset + image_start, image_end - image_start, caption)


def _one_value(features: dict[str, Feature], key: str) -> tuple[int, int]:
    feature = features.get(key)
    if feature is None:
        raise ExampleError(f"no {key!r} feature (the Example has {sorted(features)})")
    if feature.kind != "bytes_list":
        raise ExampleError(f"feature {key!r} is of kind {feature.kind}, not bytes_list")
    if len(feature.spans) != 1:
        raise ExampleError(f"feature {key!r} holds {len(feature.spans)} values, expected 1")
    return feature.spans[0]


__all__ = ["CAPTION_KEY", "IMAGE_KEY", "TFRECORD_SUFFIXES", "ExampleError", "Feature", "ImageTextRecord", "Record",
           "masked_crc32c", "parse_example", "read_image_text_records", "read_records"]
