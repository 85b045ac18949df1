"""The fast codec's layouts are derived from the generated classes, cover every field, and a
message with a field the fast path does not know is refused, never truncated."""

# The synthetic messages below are declared as betterproto2's compiler writes them, with
# `betterproto2.field(...)` calls as dataclass defaults (why ruff leaves generated/ out).
# ruff: noqa: RUF009

import dataclasses
import datetime
from dataclasses import dataclass
from typing import Any, cast

import betterproto2
import pytest
from google.protobuf.descriptor import FieldDescriptor  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from generated.google.protobuf import Empty, Timestamp
from govc.wire import codec
from govc.wire.codec import Field, Unsupported, derive, generate, message_layout

FAST = sorted(codec.LAYOUTS, key=lambda cls: cls.__name__)

# What the layout must say for each kind of generated field: (proto type, repeated) -> kind.
EXPECTED_KIND = {
    (betterproto2.TYPE_STRING, False): "str",
    (betterproto2.TYPE_BYTES, False): "bytes",
    (betterproto2.TYPE_BOOL, False): "bool",
    (betterproto2.TYPE_INT32, False): "int32",
    (betterproto2.TYPE_INT64, False): "int64",
    (betterproto2.TYPE_DOUBLE, False): "double",
    (betterproto2.TYPE_STRING, True): "strs",
    (betterproto2.TYPE_MESSAGE, True): "messages",
}
# The same from the .proto file's own descriptor, an independent source.
DESCRIPTOR_KIND = {
    (FieldDescriptor.TYPE_STRING, False): "str",
    (FieldDescriptor.TYPE_BYTES, False): "bytes",
    (FieldDescriptor.TYPE_BOOL, False): "bool",
    (FieldDescriptor.TYPE_INT32, False): "int32",
    (FieldDescriptor.TYPE_INT64, False): "int64",
    (FieldDescriptor.TYPE_DOUBLE, False): "double",
    (FieldDescriptor.TYPE_STRING, True): "strs",
    (FieldDescriptor.TYPE_MESSAGE, True): "messages",
}


def test_every_root_and_every_nested_message_is_on_the_fast_path() -> None:
    assert codec.REFUSED == {}
    assert set(codec.ROOTS) <= set(codec.LAYOUTS)
    assert set(codec._ROOT_ENCODE) == set(codec._ROOT_DECODE) == set(codec.ROOTS)
    nested = {f.message for layout in codec.LAYOUTS.values() for f in layout if f.message}
    assert nested <= set(codec.LAYOUTS)
    assert set(codec.LAYOUTS) == set(codec.SOURCES) == set(codec._ENCODE) == set(codec._DECODE)


@pytest.mark.parametrize("cls", FAST, ids=lambda cls: cls.__name__)
def test_layout_covers_every_field_of_the_generated_class(cls: type) -> None:
    layout = {f.name: f for f in codec.LAYOUTS[cls]}
    fields = dataclasses.fields(cls)
    assert len(layout) == len(codec.LAYOUTS[cls]) == len(fields)
    assert set(layout) == {f.name for f in fields}
    hints: dict[str, type] = cls._betterproto.cls_by_field  # type: ignore[attr-defined]
    for f in fields:
        meta = f.metadata["betterproto"]
        derived = layout[f.name]
        assert derived.number == meta.number, f.name
        assert derived.oneof == meta.group, f.name
        if meta.proto_type == betterproto2.TYPE_MESSAGE and not meta.repeated:
            if meta.unwrap is not None:
                assert meta.unwrap() is Timestamp and derived.kind == "timestamp", f.name
                assert derived.message is None
            else:
                assert derived.kind == "message" and derived.message is hints[f.name], f.name
        else:
            assert derived.kind == EXPECTED_KIND[meta.proto_type, bool(meta.repeated)], f.name
            expected = hints[f.name] if derived.kind == "messages" else None
            assert derived.message is expected, f.name
    assert [f.number for f in codec.LAYOUTS[cls]] == sorted(layout[f].number for f in layout)


@pytest.mark.parametrize("cls", FAST, ids=lambda cls: cls.__name__)
def test_layout_matches_the_proto_descriptor(cls: Any) -> None:
    by_number = {f.number: f for f in codec.LAYOUTS[cls]}
    descriptor = cls.DESCRIPTOR
    assert set(by_number) == {f.number for f in descriptor.fields}
    for proto in descriptor.fields:
        derived = by_number[proto.number]
        oneof = proto.containing_oneof
        assert derived.oneof == (oneof.name if oneof is not None else None), proto.name
        if proto.type == FieldDescriptor.TYPE_MESSAGE and not proto.is_repeated:
            full_name = proto.message_type.full_name
            if derived.kind == "timestamp":
                assert full_name == "google.protobuf.Timestamp"
            else:
                assert derived.kind == "message"
                assert full_name == cast(Any, derived.message).DESCRIPTOR.full_name
        else:
            assert derived.kind == DESCRIPTOR_KIND[proto.type, proto.is_repeated], proto.name
            if derived.kind == "messages":
                assert derived.message is not None
                nested = cast(Any, derived.message)
                assert proto.message_type.full_name == nested.DESCRIPTOR.full_name


def full(cls: type, depth: int = 0) -> Any:
    """A `cls` with every field set to a value that is not its default (the first member of
    each oneof), so a field the fast path left out would show."""
    values: dict[str, Any] = {}
    groups: set[str] = set()
    for f in codec.LAYOUTS[cls]:
        if f.oneof is not None:
            if f.oneof in groups:
                continue
            groups.add(f.oneof)
        if f.message is not None and depth > 3:
            continue
        values[f.name] = {
            "str": "sé",
            "bytes": b"\x00b",
            "bool": True,
            "int32": -7,
            "int64": -(2**40),
            "double": 2.5,
            "timestamp": datetime.datetime(2024, 2, 29, 1, 2, 3, 4000, tzinfo=datetime.UTC),
            "strs": ["a", ""],
        }.get(f.kind)
        if f.kind == "message":
            values[f.name] = full(f.message, depth + 1)  # type: ignore[arg-type]
        elif f.kind == "messages":
            values[f.name] = [full(f.message, depth + 1), f.message()]  # type: ignore[arg-type, misc]
    return cls(**values)


@pytest.mark.parametrize("cls", FAST, ids=lambda cls: cls.__name__)
def test_every_field_of_every_fast_message_reaches_the_wire_and_back(cls: type) -> None:
    message = full(cls)
    oneofs: set[str] = set()
    for f in codec.LAYOUTS[cls]:  # every field is set (of a oneof, its first member)
        if f.oneof in oneofs:
            continue
        oneofs.add(f.oneof or "")
        assert getattr(message, f.name) not in (None, [], "", b"", 0), f.name
    encoded = codec.encode(message)
    assert encoded == bytes(message)
    assert cls.parse(encoded) == message  # type: ignore[attr-defined]
    assert codec.decode(encoded, cls) == message


# Synthetic betterproto2 messages, as the compiler writes them.


class Colour(betterproto2.Enum):
    RED = 0
    BLUE = 1


@dataclass(eq=False, repr=False)
class Leaf(betterproto2.Message):
    name: "str" = betterproto2.field(1, betterproto2.TYPE_STRING)


@dataclass(eq=False, repr=False)
class AllKinds(betterproto2.Message):
    """A message of every kind the fast path knows, with two oneofs, numbers out of order."""

    text: "str" = betterproto2.field(1, betterproto2.TYPE_STRING)
    data: "bytes" = betterproto2.field(2, betterproto2.TYPE_BYTES)
    flag: "bool" = betterproto2.field(3, betterproto2.TYPE_BOOL)
    small: "int" = betterproto2.field(4, betterproto2.TYPE_INT32)
    big: "int" = betterproto2.field(5, betterproto2.TYPE_INT64)
    ratio: "float" = betterproto2.field(6, betterproto2.TYPE_DOUBLE)
    when: "datetime.datetime | None" = betterproto2.field(
        7, betterproto2.TYPE_MESSAGE, unwrap=lambda: Timestamp, optional=True
    )
    names: "list[str]" = betterproto2.field(8, betterproto2.TYPE_STRING, repeated=True)
    leaves: "list[Leaf]" = betterproto2.field(9, betterproto2.TYPE_MESSAGE, repeated=True)
    leaf: "Leaf | None" = betterproto2.field(10, betterproto2.TYPE_MESSAGE, optional=True)
    first_a: "Leaf | None" = betterproto2.field(
        11, betterproto2.TYPE_MESSAGE, optional=True, group="first"
    )
    first_b: "AllKinds | None" = betterproto2.field(
        12, betterproto2.TYPE_MESSAGE, optional=True, group="first"
    )
    second_a: "Leaf | None" = betterproto2.field(
        14, betterproto2.TYPE_MESSAGE, optional=True, group="second"
    )
    second_b: "Leaf | None" = betterproto2.field(
        13, betterproto2.TYPE_MESSAGE, optional=True, group="second"
    )
    added_later: "int" = betterproto2.field(300, betterproto2.TYPE_INT64)


@dataclass(eq=False, repr=False)
class NoFields(betterproto2.Message):
    pass


def test_a_message_of_every_supported_kind_is_derived_in_full() -> None:
    layouts, refused = derive([AllKinds, NoFields])
    assert refused == {}
    assert set(layouts) == {AllKinds, Leaf, NoFields}
    assert layouts[NoFields] == ()
    assert [(f.number, f.name, f.kind, f.message, f.oneof) for f in layouts[AllKinds]] == [
        (1, "text", "str", None, None),
        (2, "data", "bytes", None, None),
        (3, "flag", "bool", None, None),
        (4, "small", "int32", None, None),
        (5, "big", "int64", None, None),
        (6, "ratio", "double", None, None),
        (7, "when", "timestamp", None, None),
        (8, "names", "strs", None, None),
        (9, "leaves", "messages", Leaf, None),
        (10, "leaf", "message", Leaf, None),
        (11, "first_a", "message", Leaf, "first"),
        (12, "first_b", "message", AllKinds, "first"),  # recursive
        (13, "second_b", "message", Leaf, "second"),
        (14, "second_a", "message", Leaf, "second"),
        (300, "added_later", "int64", None, None),
    ]


_, SYNTHETIC_ENCODE, SYNTHETIC_DECODE = generate(derive([AllKinds, NoFields])[0])
leaves = st.builds(Leaf, name=st.text(max_size=5))
all_kinds = st.builds(
    AllKinds,
    text=st.text(max_size=10),
    data=st.binary(max_size=10),
    flag=st.booleans(),
    small=st.integers(-(2**31), 2**31 - 1),
    big=st.integers(-(2**63), 2**63 - 1),
    ratio=st.floats(allow_nan=False),
    when=st.none()
    | st.datetimes(
        min_value=datetime.datetime(1, 1, 1),
        max_value=datetime.datetime(9999, 12, 31),
        timezones=st.just(datetime.UTC),
    ),
    names=st.lists(st.text(max_size=3), max_size=3),
    leaves=st.lists(leaves, max_size=3),
    leaf=st.none() | leaves,
    first_a=st.none() | leaves,
    second_b=st.none() | leaves,
    added_later=st.integers(-(2**63), 2**63 - 1),
)


@settings(max_examples=200)
@given(message=all_kinds, outer=st.booleans())
def test_synthetic_message_matches_betterproto2(message: AllKinds, outer: bool) -> None:
    if outer:  # the recursive oneof member instead of the plain one
        message = AllKinds(first_b=message, second_a=Leaf("z"))
    reference = bytes(message)
    assert SYNTHETIC_ENCODE[AllKinds](message) == reference
    assert SYNTHETIC_DECODE[AllKinds](reference) == AllKinds.parse(reference)


def test_each_oneof_is_checked_on_its_own() -> None:
    one_of_each = bytes(AllKinds(first_a=Leaf("a"), second_a=Leaf("b")))
    decoded = SYNTHETIC_DECODE[AllKinds](one_of_each)  # fast path: no fallback
    assert decoded.first_a == Leaf("a") and decoded.second_a == Leaf("b")
    two_of_first = bytes(AllKinds(first_a=Leaf("a"))) + bytes(AllKinds(first_b=AllKinds()))
    with pytest.raises(codec._Fallback):
        SYNTHETIC_DECODE[AllKinds](two_of_first)
    unknown = b"\x08\x01\x12\x01x"
    assert SYNTHETIC_DECODE[NoFields](unknown)._unknown_fields == unknown
    assert SYNTHETIC_ENCODE[NoFields](NoFields.parse(unknown)) == unknown


# Fields the fast path does not know: (proto type, python type, options).
UNSUPPORTED: dict[str, tuple[str, Any, dict[str, Any]]] = {
    "uint32": (betterproto2.TYPE_UINT32, int, {}),
    "uint64": (betterproto2.TYPE_UINT64, int, {}),
    "sint32": (betterproto2.TYPE_SINT32, int, {}),
    "sint64": (betterproto2.TYPE_SINT64, int, {}),
    "fixed32": (betterproto2.TYPE_FIXED32, int, {}),
    "sfixed64": (betterproto2.TYPE_SFIXED64, int, {}),
    "float": (betterproto2.TYPE_FLOAT, float, {}),
    "enum": (betterproto2.TYPE_ENUM, Colour, {"default_factory": lambda: Colour.RED}),
    "map": (
        betterproto2.TYPE_MAP,
        dict[str, str],
        {"map_meta": betterproto2.map_meta(betterproto2.TYPE_STRING, betterproto2.TYPE_STRING)},
    ),
    "packed int32": (betterproto2.TYPE_INT32, list[int], {"repeated": True}),
    "repeated bytes": (betterproto2.TYPE_BYTES, list[bytes], {"repeated": True}),
    "repeated timestamp": (
        betterproto2.TYPE_MESSAGE,
        list[datetime.datetime],
        {"repeated": True, "unwrap": lambda: Timestamp},
    ),
    "optional string": (betterproto2.TYPE_STRING, str | None, {"optional": True}),
    "optional int64": (betterproto2.TYPE_INT64, int | None, {"optional": True}),
    "string in a oneof": (betterproto2.TYPE_STRING, str | None, {"group": "choice"}),
    "wrapped Empty": (
        betterproto2.TYPE_MESSAGE,
        Any,
        {"unwrap": lambda: Empty, "optional": True},
    ),
}


def synthetic(extra: tuple[str, Any, dict[str, Any]]) -> type:
    """A message of known fields and one of `extra`'s kind, as the compiler would write it."""
    proto_type, hint, options = extra
    return dataclasses.make_dataclass(
        "Grown",
        [
            ("path", str, betterproto2.field(1, betterproto2.TYPE_STRING)),
            ("size", int, betterproto2.field(2, betterproto2.TYPE_INT64)),
            ("extra", hint, betterproto2.field(3, proto_type, **options)),
        ],
        bases=(betterproto2.Message,),
        eq=False,
        repr=False,
    )


@pytest.mark.parametrize("kind", sorted(UNSUPPORTED))
def test_a_field_the_fast_path_does_not_know_refuses_the_message(kind: str) -> None:
    grown = synthetic(UNSUPPORTED[kind])
    with pytest.raises(Unsupported, match=r"Grown\.extra"):
        message_layout(grown)

    layouts, refused = derive([grown])
    assert layouts == {} and "Grown.extra" in refused[grown]


GrownMap = synthetic(UNSUPPORTED["map"])


@dataclass(eq=False, repr=False)
class Parent(betterproto2.Message):
    ok: "Leaf | None" = betterproto2.field(1, betterproto2.TYPE_MESSAGE, optional=True)
    children: "list[GrownMap]" = betterproto2.field(2, betterproto2.TYPE_MESSAGE, repeated=True)  # type: ignore[valid-type]


@dataclass(eq=False, repr=False)
class Grandparent(betterproto2.Message):
    parent: "Parent | None" = betterproto2.field(1, betterproto2.TYPE_MESSAGE, optional=True)


def test_a_message_nesting_a_refused_one_is_refused_too() -> None:
    layouts, refused = derive([Grandparent])
    assert set(layouts) == {Leaf}  # reachable and fine on its own, but no root uses it
    assert set(refused) == {GrownMap, Parent, Grandparent}
    assert refused[Grandparent].startswith("Grandparent.parent: Parent.children: Grown.extra")


def test_a_new_supported_field_is_encoded_not_dropped() -> None:
    # The layout follows the class: a field added to a message (here a repeated string beside
    # the two known fields) is in its layout and on the wire, with no table to edit.
    grown = synthetic((betterproto2.TYPE_STRING, list[str], {"repeated": True}))
    layout = message_layout(grown)
    assert layout[-1] == Field(3, "extra", "strs")
    _, encode, decode = generate({grown: layout})
    message = grown(path="p", size=3, extra=["x", "y"])
    assert encode[grown](message) == bytes(message)
    assert decode[grown](bytes(message)).extra == ["x", "y"]


def test_a_class_without_betterproto2_metadata_is_refused() -> None:
    @dataclass
    class Plain:
        name: str = ""

    layouts, refused = derive([Plain])
    assert layouts == {} and Plain in refused
