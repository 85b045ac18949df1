"""The gRPC codec: betterproto2, with a fast path for the hot bulk messages.

A BatchOperations call carries up to 1,000 small sub-messages, a streamed blob is a message per
64 KiB chunk, and a search answer is a page of nested results; betterproto2 spends tens of
microseconds on each in pure Python, more than the storage or index work behind them. These
messages have a simple shape (strings, bytes, integers, bools, doubles, timestamps, nested and
repeated messages, repeated strings), so they are encoded and decoded here, by functions
generated from a layout table; the bytes are exactly betterproto2's (property tests check both
directions). Anything unexpected on decode (an unknown wire type, bad UTF-8, two members of a
oneof) falls back to betterproto2, which decides.
"""

import datetime
import struct
from collections.abc import Callable
from typing import Any, cast

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
from govc.errors import InvalidArgument

_DOUBLE = struct.Struct("<d")


class _Fallback(Exception):
    """The fast decoder met something it does not handle; betterproto2 takes over."""


_SMALL = [bytes([n]) for n in range(0x80)]  # one-byte varints: most tags and lengths


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:  # two bytes: most lengths
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = []
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
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

# SPECS compiled once, at import, into an encoder and a decoder function per message, written out
# as Python source and executed (as `dataclasses` and `namedtuple` do). A generic loop over the
# table paid for a lookup, a tuple unpacking and a chain of kind comparisons on every field; the
# generated functions have each field's tag and conversion written in, about twice as fast. The
# source of every function is kept in SOURCES for reading and debugging.
_MASK64 = 0xFFFFFFFFFFFFFFFF
_READ_LENGTH = """\
n = data[pos]
if n < 0x80:
    pos += 1
else:
    n, pos = _read_varint(data, pos)
stop = pos + n
if stop > end:
    raise _Fallback
v = data[pos:stop]
pos = stop"""
_READ_VARINT = """\
v = data[pos]
if v < 0x80:
    pos += 1
else:
    v, pos = _read_varint(data, pos)"""
_READ_DOUBLE = """\
if pos + 8 > end:
    raise _Fallback
v = _unpack_double(data, pos)[0]
pos += 8"""
# kind: (wire type, how a present value is written: `v` is the value, `out` the parts list;
# how a read value `v` is stored, `m` the message)
_SCALARS: dict[str, tuple[int, str, str]] = {
    "str": (
        2,
        "if v:\n    b = v.encode()\n    out += ({tag}, _varint(len(b)), b)",
        "m.{name} = v.decode()",
    ),
    "bytes": (2, "if v:\n    out += ({tag}, _varint(len(v)), v)", "m.{name} = v"),
    "bool": (0, "if v:\n    out.append({tag} + b'\\x01')", "m.{name} = v != 0"),
    "double": (1, "if v:\n    out += ({tag}, _pack_double(v))", "m.{name} = v"),
    "int32": (
        0,
        "if v:\n    out += ({tag}, _varint(v & _MASK64))",
        "m.{name} = v if v < 0x80000000 else _signed(v, 32)",
    ),
    "int64": (
        0,
        "if v:\n    out += ({tag}, _varint(v & _MASK64))",
        "m.{name} = v if v < 0x8000000000000000 else _signed(v, 64)",
    ),
    "timestamp": (
        2,
        "if v is not None:\n    b = _timestamp(v)\n    out += ({tag}, _varint(len(b)), b)",
        "m.{name} = _datetime(v)",
    ),
}


def _indent(text: str, depth: int) -> str:
    return "\n".join("    " * depth + line for line in text.splitlines())


def _wire(kind: Any) -> int:
    """The wire type of a field of `kind`: a scalar's own, else length-delimited."""
    return _SCALARS[kind][0] if isinstance(kind, str) and kind in _SCALARS else 2


def _encoder_source(cls: type) -> str:
    lines = [f"def _encode_{cls.__name__}(m):", "    out = []"]
    for number, name, kind in SPECS[cls]:
        tag = repr(_varint(number << 3 | _wire(kind)))
        if isinstance(kind, list) or kind == "strs":  # repeated message or string
            item = f"_encode_{kind[0].__name__}(v)" if isinstance(kind, list) else "v.encode()"
            body = f"b = {item}\nout += ({tag}, _varint(len(b)), b)"
            lines += [f"    for v in m.{name}:", _indent(body, 2)]
        elif isinstance(kind, type):  # nested message: present even when empty
            body = f"if v is not None:\n    b = _encode_{kind.__name__}(v)\n"
            body += f"    out += ({tag}, _varint(len(b)), b)"
            lines += [f"    v = m.{name}", _indent(body, 1)]
        else:
            lines += [f"    v = m.{name}", _indent(_SCALARS[kind][1].format(tag=tag), 1)]
    lines += ["    if m._unknown_fields:", "        out.append(m._unknown_fields)"]
    lines.append("    return b''.join(out)")
    return "\n".join(lines)


def _decoder_source(cls: type) -> str:
    oneof = ONEOFS.get(cls, set())
    repeated = [name for _, name, kind in SPECS[cls] if isinstance(kind, list) or kind == "strs"]
    branches = []
    for number, name, kind in SPECS[cls]:
        wire = _wire(kind)
        if isinstance(kind, list) or kind == "strs":
            item = f"_decode_{kind[0].__name__}(v)" if isinstance(kind, list) else "v.decode()"
            store = f"if r_{name} is None:\n    r_{name} = [{item}]\nelse:\n"
            store += f"    r_{name}.append({item})"
        elif isinstance(kind, type):
            store = f"m.{name} = _decode_{kind.__name__}(v)"
        else:
            store = _SCALARS[kind][2].format(name=name)
        read = {0: _READ_VARINT, 1: _READ_DOUBLE, 2: _READ_LENGTH}[wire]
        if number in oneof:  # at most one member on the wire, else betterproto2 decides
            read += f"\nif member and member != {number}:\n    raise _Fallback\nmember = {number}"
        branches.append(f"if key == {number << 3 | wire}:  # {name}\n{_indent(read, 1)}\n")
        branches[-1] += _indent(store, 1)
    dispatch = "\nel".join(branches) + "\nelse:  # unknown: kept, as betterproto2 keeps it\n"
    dispatch += f"    pos = _skip(data, pos, end, key, _KNOWN_{cls.__name__})\n"
    dispatch += "    unknown += data[start:pos]"
    lines = [
        f"def _decode_{cls.__name__}(data):",
        f"    m = {cls.__name__}()",
        "    pos = 0",
        "    end = len(data)",
        "    member = 0",
        "    unknown = b''",
        *[f"    r_{name} = None" for name in repeated],
        "    try:",
        "        while pos < end:",
        "            start = pos",
        "            key = data[pos]",
        "            if key < 0x80:",
        "                pos += 1",
        "            else:",
        "                key, pos = _read_varint(data, pos)",
        _indent(dispatch, 3),
        "    except (IndexError, UnicodeDecodeError):  # truncated, or a string not UTF-8",
        "        raise _Fallback from None",
        *[f"    if r_{name} is not None:\n        m.{name} = r_{name}" for name in repeated],
        "    if unknown:",
        "        m._unknown_fields = unknown",
        "    return m",
    ]
    return "\n".join(lines)


def _skip(data: bytes, pos: int, end: int, key: int, known: frozenset[int]) -> int:
    """Past an unknown field (protobuf skips them); a known field number with another wire type,
    or a wire type the fast path does not read, is an anomaly."""
    if key >> 3 in known:
        raise _Fallback
    wire = key & 7
    if wire == 0:
        return _read_varint(data, pos)[1]
    if wire == 1:
        pos += 8
    elif wire == 2:
        length, pos = _read_varint(data, pos)
        pos += length
    else:
        raise _Fallback
    if pos > end:
        raise _Fallback
    return pos


SOURCES: dict[type, str] = {}
_ENCODE: dict[type, Callable[[Any], bytes]] = {}
_DECODE: dict[type, Callable[[bytes], Any]] = {}


def _generate() -> None:
    namespace: dict[str, Any] = {
        "_Fallback": _Fallback,
        "_varint": _varint,
        "_read_varint": _read_varint,
        "_skip": _skip,
        "_signed": _signed,
        "_timestamp": _timestamp,
        "_datetime": _datetime,
        "_pack_double": _DOUBLE.pack,
        "_unpack_double": _DOUBLE.unpack_from,
        "_MASK64": _MASK64,
    }
    for cls in SPECS:
        namespace[cls.__name__] = cls
        namespace[f"_KNOWN_{cls.__name__}"] = frozenset(number for number, _, _ in SPECS[cls])
        SOURCES[cls] = _encoder_source(cls) + "\n\n\n" + _decoder_source(cls) + "\n"
        exec(compile(SOURCES[cls], f"<codec {cls.__name__}>", "exec"), namespace)
    for cls in SPECS:
        _ENCODE[cls] = namespace[f"_encode_{cls.__name__}"]
        _DECODE[cls] = namespace[f"_decode_{cls.__name__}"]


def encode(message: Any) -> bytes:
    """`message` in protobuf wire format, byte for byte as betterproto2 writes it."""
    return _ENCODE[type(message)](message)


def decode(data: bytes, cls: type) -> Any:
    """A message of type `cls` from wire bytes; raises _Fallback on anything unexpected."""
    return _DECODE[cls](data)


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _timestamp(value: datetime.datetime) -> bytes:
    """google.protobuf.Timestamp of an aware datetime, the way betterproto2 computes it."""
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone aware")
    offset = value - _EPOCH  # normalised: 0 <= seconds < 86400, 0 <= microseconds < 10**6
    seconds = offset.days * 86400 + offset.seconds
    us = offset.microseconds
    out = b"\x08" + _varint(seconds & 0xFFFFFFFFFFFFFFFF) if seconds else b""
    if us:
        out += b"\x10" + _varint(us * 1000)
    return out


def _datetime(data: bytes) -> datetime.datetime:
    seconds = nanos = 0
    pos, end = 0, len(data)
    while pos < end:
        key = data[pos]
        value, pos = _read_varint(data, pos + 1)
        if key == 0x08:  # field 1 (seconds), varint
            seconds = value
        elif key == 0x10:  # field 2 (nanos), varint
            nanos = value
        else:
            raise _Fallback
    if seconds >= 0x8000000000000000:
        seconds = _signed(seconds, 64)
    if nanos >= 0x80000000:
        nanos = _signed(nanos, 32)
    try:
        return _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise _Fallback from None


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it. Past the end of `data` it raises
    IndexError, which every decoder turns into _Fallback."""
    byte = data[pos]
    result = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if shift > 63:
            raise _Fallback
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        shift += 7
    return result, pos + 1


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return int(value - (1 << bits) if value >> (bits - 1) else value)


_generate()

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


def encode_message(message: Any, message_type: type) -> bytes:
    """`message` on the wire: the fast path for its type, else betterproto2."""
    if message_type in ROOTS and type(message) is message_type:
        return encode(message)
    return bytes(message.SerializeToString())


def decode_message(data: bytes, message_type: type) -> Any:
    """A `message_type` from `data`; InvalidArgument when the bytes are not one."""
    if message_type in ROOTS:
        try:
            return decode(data, message_type)
        except _Fallback:
            pass
    try:
        return cast(Any, message_type).FromString(data)
    except Exception as exc:  # bad UTF-8 in a string field, a truncated field, ...
        raise InvalidArgument(
            f"the message is not a valid {message_type.__name__}: {exc}"
        ) from None
