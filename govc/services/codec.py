"""The gRPC codec: betterproto2, with a hand-written fast path for the hot bulk messages.

A BatchOperations call carries up to 1,000 small sub-messages, a streamed blob is a message per
64 KiB chunk, and a search answer is a page of nested results; betterproto2 spends tens of
microseconds on each in pure Python, more than the storage or index work behind them. These
messages have a simple shape (strings, bytes, integers, bools, doubles, timestamps, nested and
repeated messages, repeated strings), so they are encoded and decoded here directly; the bytes are
exactly betterproto2's (property tests check both directions). Anything unexpected on decode (an
unknown wire type, bad UTF-8, two members of a oneof) falls back to betterproto2, which decides.
"""

import datetime
import struct
from typing import Any

from grpclib.encoding.proto import ProtoCodec

from generated.govc import (
    BatchOperation,
    BatchOperationResult,
    BatchOperationsRequest,
    BatchOperationsResponse,
    FullTextSearchResponse,
    SearchDocument,
    SearchResult,
    StreamBlobResponse,
    StreamChunk,
    StreamError,
    StreamMetadata,
    StreamProgress,
    UploadBlobStreamRequest,
    UploadMetadata,
)

_DOUBLE = struct.Struct("<d")


class _Fallback(Exception):
    """The fast decoder met something it does not handle; betterproto2 takes over."""


_SMALL = [bytes([n]) for n in range(0x80)]  # one-byte varints: most tags and lengths


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# How each fast-path message is laid out: (field number, attribute, kind), in field order.
# Kinds: str, bytes, bool, int (int32/int64 alike on the wire), double, timestamp (a
# google.protobuf.Timestamp held as an aware datetime, absent when None), strs (repeated
# string), a message class (a nested message, encoded even when empty, as a oneof member or
# optional field is), or a one-element list holding a message class (a repeated message field).
Spec = list[tuple[int, str, Any]]
SPECS: dict[type, Spec] = {
    BatchOperation: [(1, "id", "str"), (2, "type", "str"), (3, "params", "bytes")],
    BatchOperationsRequest: [
        (1, "repository_id", "str"),
        (2, "operations", [BatchOperation]),
        (3, "parallel", "bool"),
        (4, "transaction", "bool"),
    ],
    BatchOperationResult: [
        (1, "id", "str"),
        (2, "success", "bool"),
        (3, "result", "bytes"),
        (4, "error", "str"),
    ],
    BatchOperationsResponse: [
        (1, "results", [BatchOperationResult]),
        (2, "success", "bool"),
        (3, "error", "str"),
        (4, "execution_time_ms", "double"),
    ],
    StreamChunk: [
        (1, "stream_id", "str"),
        (2, "sequence_num", "int32"),
        (3, "data", "bytes"),
        (4, "checksum", "str"),
        (5, "is_last", "bool"),
    ],
    StreamMetadata: [
        (1, "stream_id", "str"),
        (2, "total_size", "int64"),
        (3, "chunk_count", "int32"),
        (4, "content_type", "str"),
        (5, "checksum", "str"),
    ],
    StreamProgress: [
        (1, "stream_id", "str"),
        (2, "bytes_streamed", "int64"),
        (3, "total_bytes", "int64"),
        (4, "chunks_streamed", "int32"),
        (5, "total_chunks", "int32"),
        (6, "transfer_rate_mbps", "double"),
        (7, "status", "str"),
    ],
    StreamError: [(1, "stream_id", "str"), (2, "error", "str"), (3, "error_code", "int32")],
    StreamBlobResponse: [
        (1, "metadata", StreamMetadata),
        (2, "chunk", StreamChunk),
        (3, "progress", StreamProgress),
        (4, "error", StreamError),
    ],
    UploadMetadata: [
        (1, "filename", "str"),
        (2, "total_size", "int64"),
        (3, "chunk_size", "int32"),
        (4, "content_type", "str"),
    ],
    UploadBlobStreamRequest: [
        (1, "repository_id", "str"),
        (2, "metadata", UploadMetadata),
        (3, "chunk", StreamChunk),
    ],
    SearchDocument: [
        (1, "path", "str"),
        (2, "hash", "str"),
        (3, "size", "int64"),
        (4, "last_modified", "timestamp"),
        (5, "content", "bytes"),
        (6, "content_type", "str"),
    ],
    SearchResult: [
        (1, "document", SearchDocument),
        (2, "score", "double"),
        (3, "highlights", "strs"),
    ],
    FullTextSearchResponse: [
        (1, "results", [SearchResult]),
        (2, "total", "int32"),
        (3, "query_time_ms", "double"),
    ],
}
# SPECS by field number, for decoding.
_BY_NUMBER = {
    cls: {number: (name, kind) for number, name, kind in spec} for cls, spec in SPECS.items()
}

# The fields of each message that form a oneof: at most one may come on the wire.
ONEOFS: dict[type, set[int]] = {StreamBlobResponse: {1, 2, 3, 4}, UploadBlobStreamRequest: {2, 3}}


def _length_delimited(number: int, body: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def encode(message: Any) -> bytes:
    """`message` in protobuf wire format, byte for byte as betterproto2 writes it."""
    parts = []
    for number, name, kind in SPECS[type(message)]:
        value = getattr(message, name)
        if isinstance(kind, list):
            parts += [_length_delimited(number, encode(item)) for item in value]
        elif isinstance(kind, type):
            if value is not None:
                parts.append(_length_delimited(number, encode(value)))
        elif kind == "timestamp":
            if value is not None:
                parts.append(_length_delimited(number, _timestamp(value)))
        elif kind == "strs":
            parts += [_length_delimited(number, item.encode()) for item in value]
        elif not value:
            continue  # proto3 leaves default values out
        elif kind == "str":
            parts.append(_length_delimited(number, value.encode()))
        elif kind == "bytes":
            parts.append(_length_delimited(number, value))
        elif kind == "bool":
            parts.append(_varint(number << 3) + b"\x01")
        elif kind == "double":
            parts.append(_varint(number << 3 | 1) + _DOUBLE.pack(value))
        else:  # int32/int64: negatives as 64-bit two's complement, like every protobuf
            parts.append(_varint(number << 3) + _varint(value & 0xFFFFFFFFFFFFFFFF))
    return b"".join(parts)


def decode(data: bytes, cls: type) -> Any:
    """A message of type `cls` from wire bytes; raises _Fallback on anything unexpected."""
    fields = _fields(data)
    oneof = ONEOFS.get(cls)
    if oneof and len({number for number, _, _ in fields if number in oneof}) > 1:
        raise _Fallback  # several members of a oneof: let betterproto2 decide
    spec = _BY_NUMBER[cls]
    message = cls()
    repeated: dict[str, list[Any]] = {}
    for number, wire, value in fields:
        if number not in spec:
            continue  # unknown fields are skipped, as protobuf does
        name, kind = spec[number]
        if isinstance(kind, list):
            repeated.setdefault(name, []).append(decode(_blob(value, wire), kind[0]))
        elif kind == "strs":
            repeated.setdefault(name, []).append(_text(value, wire))
        elif kind == "timestamp":
            setattr(message, name, _datetime(_blob(value, wire)))
        elif isinstance(kind, type):
            setattr(message, name, decode(_blob(value, wire), kind))
        elif kind == "str":
            setattr(message, name, _text(value, wire))
        elif kind == "bytes":
            setattr(message, name, _blob(value, wire))
        elif kind == "bool":
            setattr(message, name, _flag(value, wire))
        elif kind == "double":
            if wire != 1:
                raise _Fallback
            setattr(message, name, value)
        else:
            setattr(message, name, _signed(value, wire, 32 if kind == "int32" else 64))
    for name, items in repeated.items():
        setattr(message, name, items)
    return message


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of a message: bytes for length-delimited fields,
    int for varints, float for 64-bit fields."""
    out: list[tuple[int, int, Any]] = []
    pos, end = 0, len(data)
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            out.append((number, wire, value))
        elif wire == 2:
            length = data[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = _read_varint(data, pos)
            if pos + length > end:
                raise _Fallback
            out.append((number, wire, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            if pos + 8 > end:
                raise _Fallback
            out.append((number, wire, _DOUBLE.unpack_from(data, pos)[0]))
            pos += 8
        else:
            raise _Fallback
    return out


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _timestamp(value: datetime.datetime) -> bytes:
    """google.protobuf.Timestamp of an aware datetime, the way betterproto2 computes it."""
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone aware")
    offset = value - _EPOCH
    seconds, us = divmod(
        (offset.days * 86400 + offset.seconds) * 10**6 + offset.microseconds, 10**6
    )
    out = b""
    if seconds:
        out += b"\x08" + _varint(seconds & 0xFFFFFFFFFFFFFFFF)
    if us:
        out += b"\x10" + _varint(us * 1000)
    return out


def _datetime(data: bytes) -> datetime.datetime:
    seconds = nanos = 0
    for number, wire, value in _fields(data):
        if number == 1:
            seconds = _signed(value, wire, 64)
        elif number == 2:
            nanos = _signed(value, wire, 32)
    try:
        return _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise _Fallback from None


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Fallback
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _text(value: Any, wire: int) -> str:
    if wire != 2:
        raise _Fallback
    try:
        return bytes(value).decode()
    except UnicodeDecodeError:
        raise _Fallback from None


def _blob(value: Any, wire: int) -> bytes:
    if wire != 2:
        raise _Fallback
    return bytes(value)


def _flag(value: Any, wire: int) -> bool:
    if wire != 0:
        raise _Fallback
    return bool(value)


def _signed(value: Any, wire: int, bits: int) -> int:
    if wire != 0:
        raise _Fallback
    value &= (1 << bits) - 1
    return int(value - (1 << bits) if value >> (bits - 1) else value)


ROOTS = (
    BatchOperationsRequest,
    BatchOperationsResponse,
    StreamBlobResponse,
    UploadBlobStreamRequest,
    FullTextSearchResponse,
)


class GovcCodec(ProtoCodec):
    """ProtoCodec with the fast path above; every other message goes through betterproto2."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        if message_type in ROOTS and type(message) is message_type:
            return encode(message)
        return super().encode(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        if message_type in ROOTS:
            try:
                return decode(data, message_type)
            except _Fallback:
                pass
        return super().decode(data, message_type)
