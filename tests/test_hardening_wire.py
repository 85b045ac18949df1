"""Malformed requests at the gRPC door: sent raw over HTTP/2 (the `h2` library, one blocking
client in a worker thread while the server runs on the test's loop), so the bytes arrive exactly
as written. Every malformed message is INVALID_ARGUMENT naming the problem, a compressed
message is answered as gRPC's compression spec says, nothing is INTERNAL, the server log has
one line per refusal and no traceback, and the server still answers afterwards."""

import asyncio
import dataclasses
import logging
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

import betterproto2
import h2.config
import h2.connection
import h2.events
import pytest
from grpclib.const import Cardinality, Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generated.govc import (
    CreateRepositoryRequest,
    StreamChunk,
    UploadBlobStreamRequest,
    UploadMetadata,
)
from govc.server import GovcServer
from govc.services.handlers import Handlers

SERVICE = "/govc.GoVCService/"
MAPPING = Handlers.__new__(Handlers).__mapping__()  # the handler table, without services
UNARY = sorted(
    (path, handler.request_type)
    for path, handler in MAPPING.items()
    if handler.cardinality in (Cardinality.UNARY_UNARY, Cardinality.UNARY_STREAM)
)


def frame(body: bytes, flag: int = 0) -> bytes:
    """One gRPC message: compressed flag, 4-byte big-endian length, the body."""
    return struct.pack(">BI", flag, len(body)) + body


class RawGrpc:
    """A blocking HTTP/2 gRPC client that sends DATA exactly as given; one connection, reused
    (and reopened if the server closed it)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._sock: socket.socket | None = None
        self._conn: h2.connection.H2Connection | None = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connection(self) -> tuple[socket.socket, h2.connection.H2Connection]:
        if self._sock is None or self._conn is None:
            self._sock = socket.create_connection(("127.0.0.1", self._port), timeout=20)
            config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
            self._conn = h2.connection.H2Connection(config)
            self._conn.initiate_connection()
            self._sock.sendall(self._conn.data_to_send())
        return self._sock, self._conn

    def call(
        self, method: str, data: bytes, headers: Iterable[tuple[str, str]] = ()
    ) -> tuple[int | None, str]:
        """(grpc-status, grpc-message) of one call whose request stream is `data`; status None
        if the stream was reset or the connection closed."""
        try:
            return self._call(method, data, headers)
        except (OSError, h2.exceptions.ProtocolError):
            self.close()
            return None, "connection failed"

    def _call(
        self, method: str, data: bytes, headers: Iterable[tuple[str, str]]
    ) -> tuple[int | None, str]:
        sock, conn = self._connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(
            sid,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", method if method.startswith("/") else SERVICE + method),
                (":authority", f"127.0.0.1:{self._port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                *headers,
            ],
        )
        step = conn.max_outbound_frame_size
        for start in range(0, len(data), step):
            conn.send_data(sid, data[start : start + step])
        conn.end_stream(sid)
        sock.sendall(conn.data_to_send())
        fields: dict[str, str] = {}
        while True:
            received = sock.recv(65536)
            if not received:
                self.close()
                return None, "connection closed"
            for event in conn.receive_data(received):
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    if event.stream_id == sid:
                        fields.update(dict(event.headers))  # type: ignore[arg-type]
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                    return None, f"stream reset ({event.error_code!r})"
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                    sock.sendall(conn.data_to_send())
                    status = fields.get("grpc-status")
                    message = unquote(fields.get("grpc-message", ""))
                    return (int(status) if status is not None else None), message
            sock.sendall(conn.data_to_send())


@pytest.fixture
async def raw(server: GovcServer) -> Any:
    rpc = RawGrpc(server.port)
    try:
        yield rpc
    finally:
        rpc.close()


async def call(
    raw: RawGrpc, method: str, data: bytes, headers: Iterable[tuple[str, str]] = ()
) -> tuple[int | None, str]:
    return await asyncio.to_thread(raw.call, method, data, headers)


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text


async def still_serving(raw: RawGrpc, name: str) -> None:
    """A normal call is answered: a repository is created and then read."""
    created = frame(bytes(CreateRepositoryRequest(id=name)))
    assert await call(raw, "CreateRepository", created) == (Status.OK.value, "")
    status, message = await call(
        raw, "GetRepository", frame(b"\x0a" + bytes([len(name)]) + name.encode())
    )
    assert status == Status.OK.value, message


# ---- the findings, one by one ----

WRONG_BODIES = [
    # (RPC, body, words the status message must contain)
    ("GetRepository", b"\x08\x01", ["GetRepositoryRequest", "id", "wire type 0"]),
    ("ListRepositories", b"\x0a\x00", ["ListRepositoriesRequest", "wire type 2"]),
    ("GetRepository", b"\x0a\x05ab", ["id", "runs past the end"]),  # length past the body
    ("GetRepository", b"\x0a", ["id", "truncated"]),  # length missing
    ("GetRepository", b"\x0a\x80", ["id", "truncated"]),  # length a truncated varint
    ("GetRepository", b"\x80", ["truncated"]),  # key a truncated varint
    ("ListRepositories", b"\x08\xff", ["truncated"]),  # value a truncated varint
    ("ListRepositories", b"\x08" + b"\xff" * 11, ["over-long"]),
    ("StoreBlob", b"\x0a\x01r\x12\x05abc", ["StoreBlobRequest", "runs past the end"]),
    ("GetRepository", b"\x0a\x02\xff\xfe", ["id", "UTF-8"]),
    ("GetRepository", b"\x0b", ["wire type 3"]),  # a group
    ("GetRepository", b"\x00\x00", ["field number 0"]),
    ("GetHealth", b"\x0a\x05ab", ["runs past the end"]),  # unknown field, past the end
]


@pytest.mark.parametrize(("method", "body", "words"), WRONG_BODIES)
async def test_malformed_bodies_are_invalid_argument(
    raw: RawGrpc,
    caplog: pytest.LogCaptureFixture,
    method: str,
    body: bytes,
    words: list[str],
) -> None:
    caplog.set_level(logging.INFO)
    status, message = await call(raw, method, frame(body))
    assert status == Status.INVALID_ARGUMENT.value, message
    for word in words:
        assert word in message, message
    refusals = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(refusals) == 1 and "\n" not in refusals[0].getMessage(), caplog.text
    no_traceback(caplog)
    await still_serving(raw, "after-malformed")


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def first_field_wrong_wire(message_type: type) -> tuple[bytes, str] | None:
    """A body whose lowest-numbered field has a wire type other than its own, and the field."""
    fields = [
        (f.metadata["betterproto"], f.name)
        for f in dataclasses.fields(message_type)
        if "betterproto" in f.metadata
    ]
    if not fields:
        return None
    meta, name = min(fields, key=lambda item: item[0].number)
    if meta.proto_type in betterproto2.WIRE_LEN_DELIM_TYPES:
        return varint(meta.number << 3 | 0) + b"\x01", name  # a varint instead
    return varint(meta.number << 3 | 2) + b"\x01\x01", name  # a length-delimited value instead


async def test_a_wrong_wire_type_in_every_request_types_first_field(
    raw: RawGrpc, caplog: pytest.LogCaptureFixture
) -> None:
    checked = 0
    for path, request_type in sorted((p, h.request_type) for p, h in MAPPING.items()):
        case = first_field_wrong_wire(request_type)
        if case is None:
            continue
        body, name = case
        status, message = await call(raw, path, frame(body))
        assert status == Status.INVALID_ARGUMENT.value, (path, message)
        assert request_type.__name__ in message and name in message, message
        assert "wire type" in message, message
        checked += 1
    assert checked >= len(MAPPING) - 2  # all but the requests without fields (Empty)
    no_traceback(caplog)


async def test_upload_with_metadata_and_chunk_in_one_message_is_invalid_argument(
    raw: RawGrpc, caplog: pytest.LogCaptureFixture
) -> None:
    await call(raw, "CreateRepository", frame(bytes(CreateRepositoryRequest(id="up"))))
    metadata = bytes(
        UploadBlobStreamRequest(repository_id="up", metadata=UploadMetadata(total_size=1))
    )
    chunk = bytes(UploadBlobStreamRequest(chunk=StreamChunk(data=b"x", sequence_num=0)))
    both = metadata + chunk  # two members of oneof `request` on the wire
    status, message = await call(raw, "UploadBlobStream", frame(both))
    assert status == Status.INVALID_ARGUMENT.value, message
    assert "oneof" in message and "metadata" in message and "chunk" in message, message
    # ... and in a later message of the stream, too
    status, message = await call(raw, "UploadBlobStream", frame(metadata) + frame(both))
    assert status == Status.INVALID_ARGUMENT.value, message
    assert "oneof" in message, message
    no_traceback(caplog)
    await still_serving(raw, "after-oneof")


async def test_framing_errors(raw: RawGrpc, caplog: pytest.LogCaptureFixture) -> None:
    valid = bytes(CreateRepositoryRequest(id="framed"))
    cases: list[tuple[str, bytes, list[tuple[str, str]], Status, str]] = [
        # gRPC compression spec: a set Compressed-Flag without a grpc-encoding (other than
        # identity) MUST fail with INTERNAL, naming the invalid Compressed-Flag ...
        ("GetRepository", frame(valid, flag=1), [], Status.INTERNAL, "Compressed-Flag"),
        (
            "GetRepository",
            frame(valid, flag=1),
            [("grpc-encoding", "identity")],
            Status.INTERNAL,
            "Compressed-Flag",
        ),
        # ... and one compressed with an encoding the server does not support, UNIMPLEMENTED.
        (
            "GetRepository",
            frame(valid, flag=1),
            [("grpc-encoding", "gzip")],
            Status.UNIMPLEMENTED,
            "gzip",
        ),
        ("GetRepository", frame(valid, flag=7), [], Status.INVALID_ARGUMENT, "Compressed-Flag"),
        # a message shorter than its length prefix, a cut prefix, no message at all
        ("GetRepository", frame(valid)[:-2], [], Status.INVALID_ARGUMENT, "truncated"),
        ("GetRepository", frame(valid)[:3], [], Status.INVALID_ARGUMENT, "truncated"),
        ("GetRepository", b"", [], Status.INVALID_ARGUMENT, "without a message"),
        ("GetHealth", frame(b"")[:4], [], Status.INVALID_ARGUMENT, "truncated"),
        # in a stream's later message
        (
            "UploadBlobStream",
            frame(bytes(UploadBlobStreamRequest(repository_id="framed", metadata=UploadMetadata())))
            + frame(b"\x12\x00", flag=1),
            [],
            Status.INTERNAL,
            "Compressed-Flag",
        ),
        (
            "UploadBlobStream",
            frame(bytes(UploadBlobStreamRequest(repository_id="framed", metadata=UploadMetadata())))
            + frame(b"\x12\x05\x0a\x03abc")[:-2],
            [],
            Status.INVALID_ARGUMENT,
            "truncated",
        ),
    ]
    await call(raw, "CreateRepository", frame(valid))
    for method, data, headers, expected, word in cases:
        status, message = await call(raw, method, data, headers)
        assert status == expected.value, (method, data, headers, status, message)
        assert word in message, message
    no_traceback(caplog)
    await still_serving(raw, "after-framing")


# ---- fuzz: random and mutated bodies to every unary RPC ----


def sample_request(message_type: type, depth: int = 0) -> Any:
    """A request with every field set to a plausible value (first member of each oneof)."""
    values: dict[str, Any] = {}
    groups: set[str] = set()
    for f in dataclasses.fields(message_type):
        meta = f.metadata.get("betterproto")
        if meta is None or meta.map_meta is not None:
            continue
        if meta.group is not None:
            if meta.group in groups:
                continue
            groups.add(meta.group)
        value = _sample_value(message_type, f.name, meta, depth)
        if value is not None:
            values[f.name] = [value] if meta.repeated else value
    return message_type(**values)


def _sample_value(message_type: type, name: str, meta: Any, depth: int) -> Any:
    proto_type = meta.proto_type
    if meta.unwrap is not None or proto_type == betterproto2.TYPE_ENUM:
        return None
    if proto_type == betterproto2.TYPE_MESSAGE:
        if depth > 2:
            return None
        nested = message_type._betterproto.cls_by_field[name]  # type: ignore[attr-defined]
        return sample_request(nested, depth + 1)
    samples: dict[str, Any] = {
        betterproto2.TYPE_STRING: "fuzz",
        betterproto2.TYPE_BYTES: b"bytes",
        betterproto2.TYPE_BOOL: True,
        betterproto2.TYPE_DOUBLE: 1.5,
        betterproto2.TYPE_FLOAT: 1.5,
    }
    return samples.get(proto_type, 3)


SEEDS = {path: bytes(sample_request(request_type)) for path, request_type in UNARY}


def mutate(data: bytes, kind: str, where: int, byte: int) -> bytes:
    if not data:
        return bytes([byte])
    at = where % len(data)
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ (1 << (byte % 8))]) + data[at + 1 :]
    if kind == "truncate":
        return data[:at]
    if kind == "insert":
        return data[:at] + bytes([byte]) + data[at:]
    return data[:at] + bytes([byte]) + data[at + 1 :]  # replace


bodies = st.one_of(
    st.binary(max_size=64),
    st.builds(
        mutate,
        st.sampled_from(sorted(SEEDS.values())),
        st.sampled_from(["flip", "truncate", "insert", "replace"]),
        st.integers(0, 1 << 16),
        st.integers(0, 255),
    ),
)


def fuzz(raw: RawGrpc, outcome: Callable[[str, bytes, int | None, str], None]) -> None:
    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(path=st.sampled_from([path for path, _ in UNARY]), body=bodies, seeded=st.booleans())
    def one(path: str, body: bytes, seeded: bool) -> None:
        if seeded:  # a mutation of this RPC's own request, the likeliest to get deep
            body = mutate(SEEDS[path], "flip", len(body), body[0] if body else 0)
        status, message = raw.call(path, frame(body))
        outcome(path, body, status, message)
        assert status is not None and status != Status.INTERNAL.value, (path, body, message)
        assert status != Status.UNKNOWN.value, (path, body, message)

    one()


async def test_fuzzed_bodies_never_answer_internal(
    raw: RawGrpc, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(UNARY) >= 25
    calls: list[tuple[str, int | None]] = []

    def outcome(path: str, body: bytes, status: int | None, message: str) -> None:
        calls.append((path, status))

    await asyncio.to_thread(fuzz, raw, outcome)
    assert len(calls) >= 300
    assert {path for path, _ in calls} == set(SEEDS)  # every unary RPC was called
    no_traceback(caplog)
    await still_serving(raw, "after-fuzz")
