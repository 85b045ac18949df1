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

from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError

from generated.govc import (
    BatchOperation,
    BatchOperationResult,
    BatchOperationsRequest,
    BatchOperationsResponse,
    FullTextSearchRequest,
    FullTextSearchResponse,
    GetBlobRequest,
    GetBlobResponse,
    SearchDocument,
    SearchResult,
    StoreBlobRequest,
    StoreBlobResponse,
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
    StoreBlobRequest: [(1, "repository_id", "str"), (2, "content", "bytes")],
    StoreBlobResponse: [(1, "hash", "str"), (2, "size", "int64")],
    GetBlobRequest: [(1, "repository_id", "str"), (2, "hash", "str")],
    GetBlobResponse: [(1, "content", "bytes"), (2, "hash", "str"), (3, "size", "int64")],
    FullTextSearchRequest: [
        (1, "repository_id", "str"),
        (2, "query", "str"),
        (3, "file_types", "strs"),
        (4, "max_size", "int64"),
        (5, "min_score", "double"),
        (6, "include_content", "bool"),
        (7, "highlight_length", "int32"),
        (8, "limit", "int32"),
        (9, "offset", "int32"),
        (10, "sort_by", "str"),
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
# The fields of each message that form a oneof: at most one may come on the wire.
ONEOFS: dict[type, set[int]] = {StreamBlobResponse: {1, 2, 3, 4}, UploadBlobStreamRequest: {2, 3}}

# SPECS compiled once, at import: a small integer per kind (compared, not looked up, in the
# loops below) and each field's tag bytes, so a field costs one comparison chain, not a parse
# of its description.
_STR, _BYTES, _BOOL, _DOUBLE_KIND, _INT32, _INT64 = range(6)
_TIMESTAMP, _STRS, _MESSAGE, _MESSAGES = range(6, 10)
_KINDS = {
    "str": _STR,
    "bytes": _BYTES,
    "bool": _BOOL,
    "double": _DOUBLE_KIND,
    "int32": _INT32,
    "int64": _INT64,
    "timestamp": _TIMESTAMP,
    "strs": _STRS,
}
_WIRE_TYPES = {_BOOL: 0, _INT32: 0, _INT64: 0, _DOUBLE_KIND: 1}  # the others: 2


def _kind_of(kind: Any) -> tuple[int, type | None]:
    if isinstance(kind, list):
        return _MESSAGES, kind[0]
    if isinstance(kind, type):
        return _MESSAGE, kind
    return _KINDS[kind], None


_Encoder = list[tuple[str, int, bytes]]  # per field: attribute, kind, tag bytes
# By tag (field number and wire type): attribute, kind, nested class; then every field number
# of the message (a known number with another wire type is an anomaly, an unknown one is
# skipped) and its oneof's numbers.
_Decoder = tuple[dict[int, tuple[str, int, Any]], frozenset[int], set[int] | None]


def _compile(cls: type) -> tuple[_Encoder, _Decoder]:
    encoder: _Encoder = []
    table: dict[int, tuple[str, int, Any]] = {}
    for number, name, kind in SPECS[cls]:
        code, nested = _kind_of(kind)
        tag = number << 3 | _WIRE_TYPES.get(code, 2)
        encoder.append((name, code, _varint(tag)))
        table[tag] = (name, code, nested)
    numbers = frozenset(number for number, _, _ in SPECS[cls])
    return encoder, (table, numbers, ONEOFS.get(cls))


_ENCODERS: dict[type, _Encoder] = {}
_DECODERS: dict[type, _Decoder] = {}
for _cls in SPECS:
    _ENCODERS[_cls], _DECODERS[_cls] = _compile(_cls)


def encode(message: Any) -> bytes:
    """`message` in protobuf wire format, byte for byte as betterproto2 writes it."""
    parts: list[bytes] = []
    add = parts.append
    for name, kind, tag in _ENCODERS[type(message)]:
        value = getattr(message, name)
        if kind == _MESSAGES:
            for item in value:
                body = encode(item)
                add(tag)
                add(_varint(len(body)))
                add(body)
        elif kind in (_MESSAGE, _TIMESTAMP):
            if value is not None:  # present, even empty (a oneof member, an optional field)
                body = encode(value) if kind == _MESSAGE else _timestamp(value)
                add(tag)
                add(_varint(len(body)))
                add(body)
        elif kind == _STRS:
            for item in value:
                body = item.encode()
                add(tag)
                add(_varint(len(body)))
                add(body)
        elif not value:
            continue  # proto3 leaves default values out
        elif kind == _STR:
            body = value.encode()
            add(tag)
            add(_varint(len(body)))
            add(body)
        elif kind == _BYTES:
            add(tag)
            add(_varint(len(value)))
            add(value)
        elif kind == _BOOL:
            add(tag)
            add(b"\x01")
        elif kind == _DOUBLE_KIND:
            add(tag)
            add(_DOUBLE.pack(value))
        else:  # int32/int64: negatives as 64-bit two's complement, like every protobuf
            add(tag)
            add(_varint(value & 0xFFFFFFFFFFFFFFFF))
    return b"".join(parts)


def decode(data: bytes, cls: type) -> Any:
    """A message of type `cls` from wire bytes; raises _Fallback on anything unexpected."""
    table, known, oneof = _DECODERS[cls]
    message = cls()
    repeated: dict[str, list[Any]] = {}
    oneof_member = None
    pos, end = 0, len(data)
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(data, pos)
        wire = key & 7
        value: Any
        if wire == 2:
            length = data[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = _read_varint(data, pos)
            if pos + length > end:
                raise _Fallback
            value = data[pos : pos + length]
            pos += length
        elif wire == 0:
            if pos < end and data[pos] < 0x80:
                value = data[pos]
                pos += 1
            else:
                value, pos = _read_varint(data, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise _Fallback
            value = _DOUBLE.unpack_from(data, pos)[0]
            pos += 8
        else:
            raise _Fallback
        field = table.get(key)
        if field is None:
            if key >> 3 in known:
                raise _Fallback  # a known field with another wire type
            continue  # unknown fields are skipped, as protobuf does
        if oneof is not None and key >> 3 in oneof:
            if oneof_member is not None and oneof_member != key >> 3:
                raise _Fallback  # several members of a oneof: let betterproto2 decide
            oneof_member = key >> 3
        name, kind, nested = field
        if kind == _STR:
            value = _text(value)
        elif kind == _MESSAGE:
            value = decode(value, nested)
        elif kind in (_MESSAGES, _STRS):
            item = decode(value, nested) if kind == _MESSAGES else _text(value)
            items = repeated.get(name)
            if items is None:
                repeated[name] = [item]
            else:
                items.append(item)
            continue
        elif kind == _TIMESTAMP:
            value = _datetime(value)
        elif kind == _BOOL:
            value = bool(value)
        elif kind == _INT64:
            value = _signed(value, 64)
        elif kind == _INT32:
            value = _signed(value, 32)
        setattr(message, name, value)
    for name, items in repeated.items():
        setattr(message, name, items)
    return message


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
    pos, end = 0, len(data)
    while pos < end:
        key = data[pos]
        pos += 1
        if key == 0x08:  # field 1 (seconds), varint
            seconds, pos = _read_varint(data, pos)
            seconds = _signed(seconds, 64)
        elif key == 0x10:  # field 2 (nanos), varint
            nanos, pos = _read_varint(data, pos)
            nanos = _signed(nanos, 32)
        else:
            raise _Fallback
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


def _text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise _Fallback from None


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return int(value - (1 << bits) if value >> (bits - 1) else value)


ROOTS = (
    StoreBlobRequest,
    StoreBlobResponse,
    GetBlobRequest,
    GetBlobResponse,
    BatchOperationsRequest,
    BatchOperationsResponse,
    StreamBlobResponse,
    UploadBlobStreamRequest,
    FullTextSearchRequest,
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
        try:
            return super().decode(data, message_type)
        except Exception as exc:  # bad UTF-8 in a string field, a truncated field, ...
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"the message is not a valid {message_type.__name__}: {exc}",
            ) from None
