"""StoreBlob, GetBlob, StoreBlobWithDelta, GetBlobWithDelta over a real server."""

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from generated.govc import StoreBlobRequest
from govc.client import GovcClient, GovcRpcError
from govc.core.blobs import Blobs
from govc.core.database import Database
from govc.core.gitformat import blob_id
from govc.core.registry import Registry
from govc.server import GovcServer
from tests.conftest import server_config

MiB = 1 << 20


async def _error(coro: object) -> GovcRpcError:
    with pytest.raises(GovcRpcError) as info:
        await coro  # type: ignore[misc]
    return info.value


def _text(size: int, seed: int = 0) -> bytes:
    lines, total, i = [], 0, 0
    while total < size:
        line = f"{i:06d} the quick brown fox {seed} jumps over the lazy dog {i * 31 % 97}\n"
        lines.append(line)
        total += len(line)
        i += 1
    return "".join(lines).encode()[:size]


@pytest.fixture
async def repo(client: GovcClient) -> AsyncIterator[str]:
    await client.create_repository("blobs")
    yield "blobs"


@pytest.mark.parametrize(
    "size", [0, 1, 1024, MiB, 5 * MiB], ids=["0B", "1B", "1KiB", "1MiB", "5MiB-chunked"]
)
async def test_round_trip(client: GovcClient, repo: str, size: int) -> None:
    content = os.urandom(size)
    stored = await client.store_blob(repo, content)
    assert stored.hash == blob_id(content) and stored.size == size
    got = await client.get_blob(repo, stored.hash)
    assert got.content == content and got.hash == stored.hash and got.size == size


async def test_round_trip_compressible_text(client: GovcClient, repo: str) -> None:
    content = _text(3 * MiB)
    stored = await client.store_blob(repo, content)
    assert (await client.get_blob(repo, stored.hash)).content == content


async def test_store_is_idempotent(client: GovcClient, repo: str) -> None:
    first = await client.store_blob(repo, b"same")
    second = await client.store_blob(repo, b"same")
    assert first == second


async def test_empty_blob_id(client: GovcClient, repo: str) -> None:
    stored = await client.store_blob(repo, b"")
    assert stored.hash == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


async def test_delta_reports_honest_sizes(client: GovcClient, repo: str) -> None:
    text = _text(100 * 1024)
    first = await client.store_blob_with_delta(repo, text)
    assert first.hash == blob_id(text) and first.size == len(text)
    assert 0 < first.compressed_size < len(text)
    assert first.compression_ratio < 0.5
    assert first.compression_ratio == pytest.approx(first.compressed_size / len(text), rel=1e-6)

    lines = text.split(b"\n")
    for n in (10, 500, 900):
        lines[n] = b"this line was changed in the second version"
    second_text = b"\n".join(lines)
    second = await client.store_blob_with_delta(repo, second_text)
    assert second.hash == blob_id(second_text)
    assert second.compressed_size < 0.05 * len(second_text), second
    assert second.compression_ratio < 0.05

    got = await client.get_blob_with_delta(repo, second.hash)
    assert got.content == second_text and got.size == len(second_text)
    assert got.compressed_size == second.compressed_size and got.was_compressed
    # The plain RPC reads the same bytes.
    assert (await client.get_blob(repo, second.hash)).content == second_text


async def test_delta_without_compression_stores_raw(client: GovcClient, repo: str) -> None:
    text = _text(50 * 1024, seed=3)
    stored = await client.store_blob_with_delta(repo, text, use_compression=False)
    assert stored.compressed_size == len(text) and stored.compression_ratio == 1.0
    got = await client.get_blob_with_delta(repo, stored.hash)
    assert got.content == text and not got.was_compressed and got.compressed_size == len(text)


async def test_delta_of_empty_and_random(client: GovcClient, repo: str) -> None:
    empty = await client.store_blob_with_delta(repo, b"")
    assert (empty.size, empty.compressed_size, empty.compression_ratio) == (0, 0, 0.0)
    noise = os.urandom(64 * 1024)
    stored = await client.store_blob_with_delta(repo, noise)
    assert stored.compressed_size == len(noise)  # incompressible: stored raw, reported so
    got = await client.get_blob_with_delta(repo, stored.hash)
    assert got.content == noise and not got.was_compressed


async def test_same_id_as_store_blob(client: GovcClient, repo: str) -> None:
    text = _text(20_000, seed=9)
    plain = await client.store_blob(repo, text)
    delta = await client.store_blob_with_delta(repo, text)
    assert plain.hash == delta.hash
    # Already stored: the report describes what is really there.
    got = await client.get_blob_with_delta(repo, plain.hash)
    assert got.compressed_size == delta.compressed_size


@pytest.mark.parametrize(
    ("repository_id", "blob_hash", "status", "field"),
    [
        ("", "0" * 40, Status.INVALID_ARGUMENT, "repository_id"),
        ("bad id", "0" * 40, Status.INVALID_ARGUMENT, "repository_id"),
        ("blobs", "", Status.INVALID_ARGUMENT, "hash"),
        ("blobs", "abc123", Status.INVALID_ARGUMENT, "hash"),
        ("blobs", "Z" * 40, Status.INVALID_ARGUMENT, "hash"),
        ("blobs", "CE013625030BA8DBA906F756967F9E9CA394464A", Status.INVALID_ARGUMENT, "hash"),
        ("blobs", "0" * 40, Status.NOT_FOUND, "0" * 40),
        ("nope", "0" * 40, Status.NOT_FOUND, "nope"),
    ],
)
async def test_get_errors(
    client: GovcClient, repo: str, repository_id: str, blob_hash: str, status: Status, field: str
) -> None:
    for call in (client.get_blob, client.get_blob_with_delta):
        err = await _error(call(repository_id, blob_hash))
        assert err.status == status
        assert field in err.message


async def test_store_errors_name_the_field(client: GovcClient) -> None:
    for call in (client.store_blob, client.store_blob_with_delta):
        err = await _error(call("", b"x"))
        assert err.status == Status.INVALID_ARGUMENT and "repository_id" in err.message
        err = await _error(call("unknown-repo", b"x"))
        assert err.status == Status.NOT_FOUND and "unknown-repo" in err.message


async def test_200_concurrent_stores_from_several_connections(
    server: GovcServer, repo: str
) -> None:
    assert server.storage is not None
    writer = server.storage.writer
    clients = [GovcClient(f"127.0.0.1:{server.port}") for _ in range(4)]
    contents = [f"blob number {i}\n".encode() * (i + 1) for i in range(200)]
    commits_before, ops_before = writer.commits, writer.operations
    try:
        results = await asyncio.gather(
            *(clients[i % 4].store_blob(repo, c) for i, c in enumerate(contents))
        )
        assert [r.hash for r in results] == [blob_id(c) for c in contents]
        commits = writer.commits - commits_before
        assert writer.operations - ops_before == 200
        assert commits < 200, f"group commit did not batch: {commits} commits for 200 writes"
        reads = await asyncio.gather(*(clients[0].get_blob(repo, r.hash) for r in results))
        assert [r.content for r in reads] == contents
    finally:
        for c in clients:
            c.close()


@pytest.fixture
async def small_limit_server(tmp_path: Path) -> AsyncIterator[GovcServer]:
    srv = GovcServer(server_config(tmp_path / "small", max_message_bytes=MiB))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def test_oversized_request_is_resource_exhausted(small_limit_server: GovcServer) -> None:
    target = f"127.0.0.1:{small_limit_server.port}"
    async with GovcClient(target, max_message_bytes=64 * MiB) as c:
        await c.create_repository("lim")
        err = await _error(c.store_blob("lim", os.urandom(2 * MiB)))
        assert err.status == Status.RESOURCE_EXHAUSTED and str(MiB) in err.message
        # Under the limit still works, on the same connection.
        ok = await c.store_blob("lim", os.urandom(MiB - 100))
        assert (await c.get_blob("lim", ok.hash)).size == MiB - 100
    # The client refuses locally too, before sending anything.
    async with GovcClient(target, max_message_bytes=MiB) as c:
        err = await _error(c.store_blob("lim", os.urandom(2 * MiB)))
        assert err.status == Status.RESOURCE_EXHAUSTED and "content" in err.message


async def test_raw_stub_oversized_request(small_limit_server: GovcServer) -> None:
    async with GovcClient(f"127.0.0.1:{small_limit_server.port}") as c:
        await c.create_repository("raw")
        with pytest.raises(Exception) as info:
            await c.stub.store_blob(
                StoreBlobRequest(repository_id="raw", content=os.urandom(3 * MiB))
            )
        assert getattr(info.value, "status", None) == Status.RESOURCE_EXHAUSTED


async def test_blob_over_the_message_limit_is_not_sent_whole(
    small_limit_server: GovcServer,
) -> None:
    storage = small_limit_server.storage
    assert storage is not None
    async with GovcClient(f"127.0.0.1:{small_limit_server.port}") as c:
        await c.create_repository("big")
        # Stored through the core (as a streaming upload would), then asked for in one message.
        blobs = Blobs(Database(storage, Registry()))
        content = os.urandom(2 * MiB)
        await asyncio.wrap_future(blobs.store("big", blobs.prepare(content)))
        err = await _error(c.get_blob("big", blob_id(content)))
        assert err.status == Status.RESOURCE_EXHAUSTED and "StreamBlob" in err.message


class _RawCodec:
    """Sends and receives bytes as they are (to put what no generated client would on the wire)."""

    __content_subtype__ = "proto"

    def encode(self, message: bytes, message_type: object) -> bytes:
        return message

    def decode(self, data: bytes, message_type: object) -> bytes:
        return data


async def test_a_request_that_does_not_decode_is_invalid_argument(server: GovcServer) -> None:
    # Field 1 (repository_id, a string) holding bytes that are not UTF-8.
    bad_utf8 = b"\x0a\x02\xff\xfe" + b"\x12\x01x"
    channel = Channel("127.0.0.1", server.port, codec=_RawCodec())  # type: ignore[arg-type]
    try:
        with pytest.raises(GRPCError) as info:
            async with channel.request(
                "/govc.GoVCService/StoreBlob", Cardinality.UNARY_UNARY, bytes, bytes
            ) as stream:
                await stream.send_message(bad_utf8, end=True)
                await stream.recv_message()
        assert info.value.status == Status.INVALID_ARGUMENT, info.value
        assert "StoreBlobRequest" in (info.value.message or "")
    finally:
        channel.close()
