"""The gRPC codec: betterproto2, with a fast path for the hot bulk messages.

A BatchOperations call carries up to 1,000 small sub-messages, a streamed blob is a message per
64 KiB chunk, and a search answer is a page of nested results; betterproto2 spends tens of
microseconds on each in pure Python, more than the storage or index work behind them. These
messages have a simple shape (strings, bytes, integers, bools, doubles, timestamps, nested and
repeated messages, repeated strings), so they are encoded and decoded here, by functions
generated from their layouts; the bytes are exactly betterproto2's (property tests check both
directions). Anything unexpected on decode (an unknown wire type, bad UTF-8, two members of a
oneof) falls back to betterproto2, which decides; at the server's door (`strict`) the bytes are
first checked by `check_wire`, as betterproto2 decodes leniently what is not a message at all.

Only the list of root messages (ROOTS) is written by hand. Each layout is derived, at import, from
the generated betterproto2 classes (their dataclass fields' metadata), so a field added to the
contract is encoded without anyone editing this module. A message with a field the fast path
cannot write exactly as betterproto2 does (a map, an enum, an optional scalar, ...), or one
nesting such a message, is refused (REFUSED, with the reason, and a warning in the log) and goes
through betterproto2: slower, never a dropped field.
"""

import dataclasses
import datetime
import logging
import struct
from collections.abc import Callable, Iterable
from typing import Any, cast

import betterproto2

from generated.google.protobuf import Timestamp
from generated.govc import (
    BatchOperationsRequest,
    BatchOperationsResponse,
    FullTextSearchRequest,
    FullTextSearchResponse,
    GetBlobRequest,
    GetBlobResponse,
    StoreBlobRequest,
    StoreBlobResponse,
    StreamBlobResponse,
    UploadBlobStreamRequest,
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


# The messages served by the fast path: the only hand-written part. Everything else, the layout of
# each of these messages and of every message nested in them, is read from the generated
# betterproto2 classes (their dataclass fields' metadata) when this module is imported.
ROOTS: tuple[type, ...] = (
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

# Kinds of field the fast path reads and writes, by betterproto2 proto type (singular, not in a
# oneof, not proto3 `optional`: zero values are not written); int32 and int64 differ only in how
# a negative value read back is sign-extended.
_SCALAR_KINDS = {
    betterproto2.TYPE_STRING: "str",
    betterproto2.TYPE_BYTES: "bytes",
    betterproto2.TYPE_BOOL: "bool",
    betterproto2.TYPE_INT32: "int32",
    betterproto2.TYPE_INT64: "int64",
    betterproto2.TYPE_DOUBLE: "double",
}
_ZERO: dict[str, object] = {
    "str": "",
    "bytes": b"",
    "bool": False,
    "int32": 0,
    "int64": 0,
    "double": 0.0,
}


@dataclasses.dataclass(frozen=True)
class Field:
    """How one field of a fast-path message is read and written.

    kind: one of the scalar kinds above; "timestamp" (a google.protobuf.Timestamp held as an
    aware datetime, absent when None); "strs" (repeated string); "message" (a nested message,
    `message`, written whenever it is not None, even when empty); "messages" (a repeated
    `message`). `oneof` names the oneof the field belongs to (only message and timestamp fields
    may): at most one member of a oneof may come on the wire.
    """

    number: int
    name: str
    kind: str
    message: type | None = None
    oneof: str | None = None


class Unsupported(Exception):
    """A message has a field the fast path cannot read or write exactly as betterproto2 does."""


def field_layout(cls: type, field: dataclasses.Field[Any]) -> Field:
    """The layout of one dataclass field of the betterproto2 message `cls`; Unsupported if the
    fast path does not know its kind (a map, an enum, a packed or optional scalar, ...)."""
    where = f"{cls.__name__}.{field.name}"
    meta = field.metadata.get("betterproto")
    if not isinstance(meta, betterproto2.FieldMetadata):
        raise Unsupported(f"{where}: no betterproto2 field metadata")
    if field.default_factory is dataclasses.MISSING:
        raise Unsupported(f"{where}: no default factory")
    default = field.default_factory()
    proto_type, number, group = meta.proto_type, meta.number, meta.group
    if not (isinstance(number, int) and 1 <= number < 1 << 29):
        raise Unsupported(f"{where}: bad field number {number!r}")
    message: type | None = None
    if meta.map_meta is not None or proto_type == betterproto2.TYPE_MAP:
        raise Unsupported(f"{where}: map fields are not supported")
    if meta.repeated:
        if group is not None or meta.unwrap is not None or default != []:
            raise Unsupported(f"{where}: unexpected repeated field shape")
        if proto_type == betterproto2.TYPE_STRING:
            kind = "strs"
        elif proto_type == betterproto2.TYPE_MESSAGE:
            kind, message = "messages", _nested_class(cls, field, where)
        else:
            raise Unsupported(f"{where}: repeated {proto_type} is not supported")
    elif proto_type == betterproto2.TYPE_MESSAGE:
        if default is not None:
            raise Unsupported(f"{where}: message field whose default is not None")
        if meta.unwrap is None:
            kind, message = "message", _nested_class(cls, field, where)
        elif meta.unwrap() is Timestamp:
            kind = "timestamp"
        else:
            raise Unsupported(f"{where}: wrapped {meta.unwrap().__name__} is not supported")
    elif proto_type in _SCALAR_KINDS:
        kind = _SCALAR_KINDS[proto_type]
        if group is not None or meta.optional:  # presence: a zero value would be written
            raise Unsupported(f"{where}: {proto_type} in a oneof or optional is not supported")
        zero = _ZERO[kind]
        if type(default) is not type(zero) or default != zero:
            raise Unsupported(f"{where}: default {default!r} is not the zero value")
    else:
        raise Unsupported(f"{where}: {proto_type} fields are not supported")
    return Field(number, field.name, kind, message, group)


def _nested_class(cls: type, field: dataclasses.Field[Any], where: str) -> type:
    try:
        nested = cast(Any, cls)._betterproto.cls_by_field[field.name]
    except Exception as exc:  # an annotation that does not resolve
        raise Unsupported(f"{where}: cannot resolve its message class ({exc})") from None
    if not (isinstance(nested, type) and issubclass(nested, betterproto2.Message)):
        raise Unsupported(f"{where}: {nested!r} is not a betterproto2 message")
    return nested


def message_layout(cls: type) -> tuple[Field, ...]:
    """The layout of every field of the betterproto2 message `cls` (not of the messages nested
    in it), in field-number order; Unsupported if any field is unknown to the fast path."""
    if not (
        isinstance(cls, type)
        and issubclass(cls, betterproto2.Message)
        and dataclasses.is_dataclass(cls)
    ):
        raise Unsupported(f"{cls!r} is not a betterproto2 message dataclass")
    if hasattr(cls, "__pydantic_validator__"):  # betterproto2 validates these on encode
        raise Unsupported(f"{cls.__name__}: pydantic messages are not supported")
    layout = sorted((field_layout(cls, f) for f in dataclasses.fields(cls)), key=_number)
    numbers = [f.number for f in layout]
    if len(set(numbers)) != len(numbers):
        raise Unsupported(f"{cls.__name__}: a field number is used twice")
    return tuple(layout)


def _number(field: Field) -> int:
    return field.number


def derive(roots: Iterable[type]) -> tuple[dict[type, tuple[Field, ...]], dict[type, str]]:
    """The layouts of `roots` and of every message nested in them, and the messages refused
    (with the reason): one with a field the fast path does not know, or containing one."""
    layouts: dict[type, tuple[Field, ...]] = {}
    refused: dict[type, str] = {}
    pending = list(roots)
    while pending:
        cls = pending.pop()
        if cls in layouts or cls in refused:
            continue
        try:
            layouts[cls] = message_layout(cls)
        except Unsupported as exc:
            refused[cls] = str(exc)
            continue
        pending += [f.message for f in layouts[cls] if f.message is not None]
    changed = True
    while changed:  # a message containing a refused one is refused
        changed = False
        for cls, layout in list(layouts.items()):
            for f in layout:
                if f.message in refused:
                    refused[cls] = f"{cls.__name__}.{f.name}: {refused[f.message]}"
                    del layouts[cls]
                    changed = True
                    break
    return layouts, refused


LAYOUTS, REFUSED = derive(ROOTS)
for _cls, _reason in REFUSED.items():  # still correct (betterproto2 encodes them), only slower
    logging.getLogger(__name__).warning(
        "fast codec: %s goes through betterproto2: %s", _cls.__name__, _reason
    )

# LAYOUTS compiled once, at import, into an encoder and a decoder function per message, written out
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


def _wire(kind: str) -> int:
    """The wire type of a field of `kind`: a scalar's own, else length-delimited."""
    return _SCALARS[kind][0] if kind in _SCALARS else 2


def _encoder_source(cls: type, layout: tuple[Field, ...], names: dict[type, str]) -> str:
    lines = [f"def _encode_{names[cls]}(m):", "    out = []"]
    for f in layout:
        tag = repr(_varint(f.number << 3 | _wire(f.kind)))
        if f.kind in ("messages", "strs"):
            item = f"_encode_{names[f.message]}(v)" if f.message is not None else "v.encode()"
            body = f"b = {item}\nout += ({tag}, _varint(len(b)), b)"
            lines += [f"    for v in m.{f.name}:", _indent(body, 2)]
        elif f.kind == "message":  # present even when empty
            body = f"if v is not None:\n    b = _encode_{names[cast(type, f.message)]}(v)\n"
            body += f"    out += ({tag}, _varint(len(b)), b)"
            lines += [f"    v = m.{f.name}", _indent(body, 1)]
        else:
            lines += [f"    v = m.{f.name}", _indent(_SCALARS[f.kind][1].format(tag=tag), 1)]
    lines += ["    if m._unknown_fields:", "        out.append(m._unknown_fields)"]
    lines.append("    return b''.join(out)")
    return "\n".join(lines)


def _decoder_source(cls: type, layout: tuple[Field, ...], names: dict[type, str]) -> str:
    oneofs = list(dict.fromkeys(f.oneof for f in layout if f.oneof is not None))
    repeated = [f.name for f in layout if f.kind in ("messages", "strs")]
    branches = []
    for f in layout:
        wire = _wire(f.kind)
        if f.kind in ("messages", "strs"):
            item = f"_decode_{names[f.message]}(v)" if f.message is not None else "v.decode()"
            store = f"if r_{f.name} is None:\n    r_{f.name} = [{item}]\nelse:\n"
            store += f"    r_{f.name}.append({item})"
        elif f.kind == "message":
            store = f"m.{f.name} = _decode_{names[cast(type, f.message)]}(v)"
        else:
            store = _SCALARS[f.kind][2].format(name=f.name)
        read = {0: _READ_VARINT, 1: _READ_DOUBLE, 2: _READ_LENGTH}[wire]
        if f.oneof is not None:  # at most one member on the wire, else betterproto2 decides
            member = f"member{oneofs.index(f.oneof)}"
            read += f"\nif {member} and {member} != {f.number}:\n    raise _Fallback\n"
            read += f"{member} = {f.number}"
        branches.append(f"if key == {f.number << 3 | wire}:  # {f.name}\n{_indent(read, 1)}\n")
        branches[-1] += _indent(store, 1)
    unknown = f"pos = _skip(data, pos, end, key, _KNOWN_{names[cls]})\nunknown += data[start:pos]"
    if branches:  # else: unknown, kept as betterproto2 keeps it
        unknown = "se:  # unknown: kept, as betterproto2 keeps it\n" + _indent(unknown, 1)
    dispatch = "\nel".join([*branches, unknown])
    lines = [
        f"def _decode_{names[cls]}(data):",
        f"    m = {names[cls]}()",
        "    pos = 0",
        "    end = len(data)",
        *[f"    member{i} = 0" for i in range(len(oneofs))],
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


Encoders = dict[type, Callable[[Any], bytes]]
Decoders = dict[type, Callable[[bytes], Any]]


def generate(layouts: dict[type, tuple[Field, ...]]) -> tuple[dict[type, str], Encoders, Decoders]:
    """An encoder and a decoder function for each message of `layouts` (which must hold every
    message nested in them, as `derive` returns), and the source of each message's functions."""
    sources: dict[type, str] = {}
    encoders: Encoders = {}
    decoders: Decoders = {}
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
    names: dict[type, str] = {}  # a distinct identifier per class (two packages may share names)
    for cls in sorted(layouts, key=_qualified_name):
        name = cls.__name__
        while name in namespace or f"_KNOWN_{name}" in namespace:
            name += "_"
        namespace[name] = cls
        names[cls] = name
    for cls in sorted(layouts, key=_qualified_name):
        layout = layouts[cls]
        namespace[f"_KNOWN_{names[cls]}"] = frozenset(f.number for f in layout)
        sources[cls] = _encoder_source(cls, layout, names) + "\n\n\n"
        sources[cls] += _decoder_source(cls, layout, names) + "\n"
        exec(compile(sources[cls], f"<codec {cls.__name__}>", "exec"), namespace)
    for cls in layouts:
        encoders[cls] = namespace[f"_encode_{names[cls]}"]
        decoders[cls] = namespace[f"_decode_{names[cls]}"]
    return sources, encoders, decoders


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


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


SOURCES, _ENCODE, _DECODE = generate(LAYOUTS)
# The roots served by the fast path: all of ROOTS unless one was refused.
_ROOT_ENCODE = {cls: _ENCODE[cls] for cls in ROOTS if cls in LAYOUTS}
_ROOT_DECODE = {cls: _DECODE[cls] for cls in ROOTS if cls in LAYOUTS}


def encode_message(message: Any, message_type: type) -> bytes:
    """`message` on the wire: the fast path for its type, else betterproto2."""
    encoder = _ROOT_ENCODE.get(message_type)
    if encoder is not None and type(message) is message_type:
        return encoder(message)
    return bytes(message.SerializeToString())


def decode_message(data: bytes, message_type: type, *, strict: bool = False) -> Any:
    """A `message_type` from `data`; InvalidArgument when the bytes are not one.

    `strict` (the server's door): also InvalidArgument for what betterproto2 would decode
    leniently (see `check_wire`). A message the fast path decodes is already well formed."""
    decoder = _ROOT_DECODE.get(message_type)
    if decoder is not None:
        try:
            return decoder(data)
        except _Fallback:
            pass
    if strict:
        check_wire(data, message_type)
    try:
        return cast(Any, message_type).FromString(data)
    except Exception as exc:  # bad UTF-8 in a string field, a truncated field, ...
        raise InvalidArgument(
            f"the message is not a valid {message_type.__name__}: {exc}"
        ) from None


# ---- strict validation of untrusted bytes (the server's door) ----
#
# betterproto2 decodes leniently: a field that runs past the end of its message is cut short
# (a truncated StoreBlob stored the shortened content), a known field with another wire type
# puts an int or None where a string belongs, and two members of a oneof both end up set.
# `check_wire` walks the bytes once, against the layout read from the generated classes, and
# refuses all of that before betterproto2 sees it.

_WIRE_NAMES = {
    0: "varint",
    1: "64-bit",
    2: "length-delimited",
    3: "start-group",
    4: "end-group",
    5: "32-bit",
    6: "invalid",
    7: "invalid",
}
_MAX_DEPTH = 100  # protobuf's default recursion limit


@dataclasses.dataclass(frozen=True)
class _Rule:
    """How one known field may appear on the wire."""

    name: str
    wire: int  # its wire type when not packed
    kind: str  # "string", "message", "packed" (a repeated number, packed or not), "plain"
    nested: type | None = None  # kind "message": the message (or map entry) inside
    packed_size: int = 0  # kind "packed": bytes per element, 0 for varints
    oneof: str | None = None


_RULES: dict[type, dict[int, _Rule] | None] = {}


def _rules(cls: type) -> dict[int, _Rule] | None:
    """The wire rules of the betterproto2 message `cls`, by field number; None for a class that
    is not a betterproto2 message (a protobuf class, which its own strict parser checks)."""
    if cls in _RULES:
        return _RULES[cls]
    rules: dict[int, _Rule] | None = None
    if isinstance(cls, type) and issubclass(cls, betterproto2.Message):
        rules = {}
        for f in dataclasses.fields(cast(Any, cls)):
            meta = f.metadata.get("betterproto")
            if isinstance(meta, betterproto2.FieldMetadata):
                rules[meta.number] = _rule(cls, f.name, meta)
    _RULES[cls] = rules
    return rules


def _rule(cls: type, name: str, meta: betterproto2.FieldMetadata) -> _Rule:
    proto_type = meta.proto_type
    if proto_type in betterproto2.WIRE_VARINT_TYPES:
        wire, size = 0, 0
    elif proto_type in betterproto2.WIRE_FIXED_64_TYPES:
        wire, size = 1, 8
    elif proto_type in betterproto2.WIRE_FIXED_32_TYPES:
        wire, size = 5, 4
    elif proto_type == betterproto2.TYPE_STRING:
        return _Rule(name, 2, "string", oneof=meta.group)
    elif proto_type in (betterproto2.TYPE_MESSAGE, betterproto2.TYPE_MAP):
        nested: Any = meta.unwrap() if meta.unwrap is not None else None
        if nested is None:
            try:
                nested = cast(Any, cls)._betterproto.cls_by_field[name]
            except Exception:  # not resolvable: betterproto2 alone decides about its content
                nested = None
        return _Rule(name, 2, "message", nested=nested, oneof=meta.group)
    else:  # bytes, and anything unknown: only the wire type is checked
        return _Rule(name, 2, "plain", oneof=meta.group)
    if meta.repeated and proto_type in betterproto2.PACKED_TYPES:
        return _Rule(name, wire, "packed", packed_size=size, oneof=meta.group)
    return _Rule(name, wire, "plain", oneof=meta.group)


def check_wire(data: bytes, message_type: type) -> None:
    """InvalidArgument, naming the problem, unless `data` is a well-formed `message_type`:
    every varint ends within 10 bytes, every field lies inside its message, wire types are
    0, 1, 2 or 5, each known field has its own wire type (repeated numbers: packed or not),
    strings are UTF-8, nested messages are well formed too (to a depth of 100), and at most one
    member of each oneof is on the wire. Unknown fields are allowed (protobuf keeps them)."""
    problem = _check(data, message_type, message_type.__name__, 0)
    if problem is not None:
        raise InvalidArgument(f"the message is not a valid {message_type.__name__}: {problem}")


def _check(data: bytes, cls: type, where: str, depth: int) -> str | None:
    """What is wrong with `data` as a `cls` (at `where`), or None."""
    rules = _rules(cls)
    if rules is None:
        return None
    if depth > _MAX_DEPTH:
        return f"{where}: messages nested more than {_MAX_DEPTH} deep"
    pos, end = 0, len(data)
    members: dict[str, _Rule] = {}
    while pos < end:
        key, pos = _checked_varint(data, pos, end)
        if key < 0:
            return f"{where}: a field key is a truncated or over-long varint"
        number, wire = key >> 3, key & 7
        rule = rules.get(number)
        name = f"{where}.{rule.name}" if rule is not None else f"{where} field {number}"
        if not 1 <= number < 1 << 29:
            return f"{where}: field number {number} is out of range"
        if wire == 0:
            _, pos = _checked_varint(data, pos, end)
            if pos < 0:
                return f"{name}: a truncated or over-long varint"
            start = pos
        elif wire in (1, 5):
            start, pos = pos, pos + (8 if wire == 1 else 4)
            if pos > end:
                return f"{name}: a {_WIRE_NAMES[wire]} value runs past the end of the message"
        elif wire == 2:
            length, start = _checked_varint(data, pos, end)
            if length < 0:
                return f"{name}: its length is a truncated or over-long varint"
            pos = start + length
            if pos > end:
                return (
                    f"{name}: its length {length} runs past the end of the message "
                    f"({end - start} bytes left)"
                )
        else:
            return f"{name}: wire type {wire} ({_WIRE_NAMES[wire]}) is not accepted"
        if rule is None:
            continue  # unknown: kept, as protobuf keeps it
        problem = _check_value(data, start, pos, wire, rule, name, depth)
        if problem is not None:
            return problem
        if rule.oneof is not None:
            other = members.setdefault(rule.oneof, rule)
            if other is not rule:
                return (
                    f"{where}: more than one member of oneof {rule.oneof!r} is set "
                    f"({other.name} and {rule.name})"
                )
    return None


def _check_value(
    data: bytes, start: int, stop: int, wire: int, rule: _Rule, name: str, depth: int
) -> str | None:
    if wire != rule.wire and not (rule.kind == "packed" and wire == 2):
        return (
            f"{name} has wire type {wire} ({_WIRE_NAMES[wire]}), "
            f"expected {rule.wire} ({_WIRE_NAMES[rule.wire]})"
        )
    if wire != 2:
        return None
    if rule.kind == "string":
        try:
            data[start:stop].decode()
        except UnicodeDecodeError as exc:
            return f"{name} is not valid UTF-8 ({exc.reason} at byte {exc.start})"
    elif rule.kind == "message" and rule.nested is not None:
        return _check(data[start:stop], rule.nested, name, depth + 1)
    elif rule.kind == "packed":
        if rule.packed_size:
            if (stop - start) % rule.packed_size:
                size = rule.packed_size
                return f"{name}: {stop - start} bytes of packed values, not a multiple of {size}"
        else:
            pos = start
            while pos < stop:
                _, pos = _checked_varint(data, pos, stop)
                if pos < 0:
                    return f"{name}: a packed value is a truncated or over-long varint"
    return None


def _checked_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at `pos` (ending before `end`, at most 10 bytes) and the position after it;
    (-1, -1) if it is truncated or longer."""
    result = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return result, pos
        shift += 7
    return -1, -1
