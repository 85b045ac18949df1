"""StreamBlob and UploadBlobStream over a real server: round trips, ranges, message fields,
and failures that leave the store as it was."""

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import betterproto2
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from generated.govc import (
    StreamBlobRequest,
    StreamChunk,
    UploadBlobStreamRequest,
    UploadMetadata,
)
from govc.client import GovcClient, GovcRpcError
from govc.objects import blob_id
from govc.server import GovcServer, ServerConfig

R = "streams"
KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
async def c(client: GovcClient) -> GovcClient:
    await client.create_repository(R)
    return client


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


@pytest.mark.parametrize("size", [0, 1, 64 * KIB - 1, 64 * KIB, 64 * KIB + 1, 10 * MIB], ids=str)
async def test_upload_and_stream_round_trip(c: GovcClient, size: int) -> None:
    data = os.urandom(size)
    stored = await c.upload(R, _chunks(data, 64 * KIB), total_size=size)
    assert stored.hash == blob_id(data) and stored.size == size
    assert stored.checksum == hashlib.sha256(data).hexdigest()
    assert stored.chunks_received == max(1, -(-size // (64 * KIB)))
    out = io.BytesIO()
    metadata = await c.download(R, stored.hash, out)
    assert out.getvalue() == data and metadata.total_size == size
    if size <= 10 * MIB:
        assert (await c.get_blob(R, stored.hash)).content == data


async def _raw_stream(c: GovcClient, **request: Any) -> list[tuple[str, Any]]:
    messages = []
    async for message in c.stub.stream_blob([StreamBlobRequest(repository_id=R, **request)]):
        messages.append(betterproto2.which_one_of(message, "response"))
    return messages


async def test_stream_messages_are_exact(c: GovcClient) -> None:
    data = os.urandom(25 * KIB + 7)
    stored = await c.store_blob(R, data)
    messages = await _raw_stream(c, hash=stored.hash, chunk_size=1024)
    kind, metadata = messages[0]
    assert kind == "metadata"
    assert metadata.total_size == len(data) and metadata.chunk_count == 26
    assert metadata.checksum == hashlib.sha256(data).hexdigest() and metadata.stream_id
    chunks = [m for k, m in messages if k == "chunk"]
    progress = [m for k, m in messages if k == "progress"]
    assert [ch.sequence_num for ch in chunks] == list(range(26))
    assert all(ch.checksum == hashlib.sha256(ch.data).hexdigest() for ch in chunks)
    assert [ch.is_last for ch in chunks] == [False] * 25 + [True]
    assert b"".join(ch.data for ch in chunks) == data
    assert {m.stream_id for _, m in messages[1:]} == {metadata.stream_id}
    # Progress after chunk 0, 10, 20 and the last, each right after its chunk.
    assert [p.chunks_streamed for p in progress] == [1, 11, 21, 26]
    assert [p.status for p in progress] == ["streaming"] * 3 + ["completed"]
    assert [p.bytes_streamed for p in progress] == [1024, 11 * 1024, 21 * 1024, len(data)]
    assert all(p.total_bytes == len(data) and p.total_chunks == 26 for p in progress)
    assert all(p.transfer_rate_mbps > 0 for p in progress)
    order = [k for k, _ in messages]
    assert order[:3] == ["metadata", "chunk", "progress"]


async def test_chunk_size_default_and_clamps(c: GovcClient) -> None:
    data = os.urandom(300 * KIB)
    stored = await c.store_blob(R, data)
    for asked, expected in ((0, 65536), (10, 1024), (10 * MIB, 4 * MIB), (5000, 5000)):
        messages = await _raw_stream(c, hash=stored.hash, chunk_size=asked)
        sizes = [len(m.data) for k, m in messages if k == "chunk"]
        assert sizes[0] == min(expected, len(data)), asked
        assert messages[0][1].chunk_count == -(-len(data) // expected)


async def test_empty_blob_streams_one_empty_last_chunk(c: GovcClient) -> None:
    stored = await c.store_blob(R, b"")
    messages = await _raw_stream(c, hash=stored.hash)
    chunks = [m for k, m in messages if k == "chunk"]
    assert len(chunks) == 1 and chunks[0].data == b"" and chunks[0].is_last
    assert messages[0][1].chunk_count == 1 and messages[0][1].total_size == 0
    assert messages[-1][1].status == "completed"


async def test_ranges(c: GovcClient) -> None:
    data = os.urandom(3 * MIB + 123)  # chunked in storage: ranges cross piece boundaries
    stored = await c.upload(R, _chunks(data, MIB))
    size = len(data)
    for start, end in [
        (0, 0),
        (0, size),
        (1, 2),
        (size - 1, 0),
        (MIB - 5, MIB + 5),
        (MIB, 2 * MIB),
        (100, size - 100),
        (size, 0),
        (7, 7),
    ]:
        out = io.BytesIO()
        metadata = await c.download(R, stored.hash, out, start=start, end=end, chunk_size=4096)
        expected = data[start : end or size]
        assert out.getvalue() == expected, (start, end)
        assert metadata.total_size == len(expected)
        assert metadata.checksum == hashlib.sha256(expected).hexdigest()


@pytest.mark.parametrize(("start", "end"), [(-1, 0), (0, -1), (11, 0), (0, 11), (5, 4)], ids=str)
async def test_invalid_ranges_are_out_of_range(c: GovcClient, start: int, end: int) -> None:
    stored = await c.store_blob(R, b"0123456789")
    with pytest.raises(GovcRpcError) as info:
        await c.download(R, stored.hash, io.BytesIO(), start=start, end=end)
    assert info.value.status == Status.OUT_OF_RANGE and "range" in info.value.message


async def test_stream_errors(c: GovcClient) -> None:
    for repo, blob, status in [
        (R, "0" * 40, Status.NOT_FOUND),
        (R, "bad", Status.INVALID_ARGUMENT),
        ("nope", "0" * 40, Status.NOT_FOUND),
        ("", "0" * 40, Status.INVALID_ARGUMENT),
    ]:
        with pytest.raises(GovcRpcError) as info:
            await c.download(repo, blob, io.BytesIO())
        assert info.value.status == status


# ---- upload failures leave nothing behind ----


def _footprint(server: GovcServer) -> tuple[int, int, int]:
    storage = server.storage
    assert storage is not None
    with storage.read() as txn:
        objects = txn.stat(storage.dbs["objects"])["entries"]
        chunks = txn.stat(storage.dbs["chunks"])["entries"]
    spooled = len(list((Path(storage.config.path) / "uploads").iterdir()))
    return objects, chunks, spooled


def _meta(total: int = 0) -> UploadBlobStreamRequest:
    return UploadBlobStreamRequest(
        repository_id=R, metadata=UploadMetadata(filename="f", total_size=total)
    )


def _chunk(seq: int, data: bytes, checksum: str | None = None) -> UploadBlobStreamRequest:
    digest = hashlib.sha256(data).hexdigest() if checksum is None else checksum
    return UploadBlobStreamRequest(
        repository_id=R, chunk=StreamChunk(sequence_num=seq, data=data, checksum=digest)
    )


async def _upload_raw(c: GovcClient, messages: list[UploadBlobStreamRequest]) -> GRPCError:
    with pytest.raises(GRPCError) as info:
        await c.stub.upload_blob_stream(messages)
    return info.value


BIG = os.urandom(2 * MIB + 5)


@pytest.mark.parametrize(
    ("name", "messages", "status"),
    [
        ("no metadata", [_chunk(0, b"abc")], Status.INVALID_ARGUMENT),
        ("gap", [_meta(), _chunk(0, BIG[:MIB]), _chunk(2, BIG[MIB:])], Status.INVALID_ARGUMENT),
        ("repeat", [_meta(), _chunk(0, BIG[:MIB]), _chunk(0, BIG[MIB:])], Status.INVALID_ARGUMENT),
        (
            "checksum",
            [_meta(), _chunk(0, BIG[:MIB]), _chunk(1, BIG[MIB:], "00" * 32)],
            Status.DATA_LOSS,
        ),
        ("total size", [_meta(len(BIG) + 1), _chunk(0, BIG)], Status.INVALID_ARGUMENT),
        ("metadata twice", [_meta(), _chunk(0, b"a"), _meta()], Status.INVALID_ARGUMENT),
        ("nothing", [], Status.INVALID_ARGUMENT),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_upload_failures_leave_the_store_as_it_was(
    c: GovcClient, server: GovcServer, name: str, messages: list[Any], status: Status
) -> None:
    before = _footprint(server)
    err = await _upload_raw(c, messages)
    assert err.status == status, err.message
    assert _footprint(server) == before
    with pytest.raises(GovcRpcError):
        await c.get_blob(R, blob_id(BIG))


async def test_upload_cap(tmp_path: Path) -> None:
    server = GovcServer(
        ServerConfig(data_dir=str(tmp_path / "d"), grpc_port=0, max_upload_bytes=MIB)
    )
    await server.start()
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as c:
            await c.create_repository(R)
            before = _footprint(server)
            declared = await _upload_raw(c, [_meta(MIB + 1), _chunk(0, b"x")])
            assert declared.status == Status.RESOURCE_EXHAUSTED
            discovered = await _upload_raw(
                c, [_meta(), _chunk(0, BIG[:MIB]), _chunk(1, BIG[MIB : MIB + 10])]
            )
            assert discovered.status == Status.RESOURCE_EXHAUSTED
            assert _footprint(server) == before
            ok = await c.upload(R, _chunks(BIG[:MIB], 64 * KIB))
            assert ok.size == MIB
    finally:
        await server.stop()


async def test_client_cancel_mid_upload_leaves_nothing(c: GovcClient, server: GovcServer) -> None:
    before = _footprint(server)
    sent = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield os.urandom(MIB)
        sent.set()
        await asyncio.sleep(3600)  # never finishes: the client gives up
        yield b""

    task = asyncio.create_task(c.upload(R, endless(), chunk_size=MIB))
    await asyncio.wait_for(sent.wait(), 10)
    await asyncio.sleep(0.2)
    assert _footprint(server)[2] == 1  # the spool exists while the upload is open
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if _footprint(server) == before:
            break
        await asyncio.sleep(0.05)
    assert _footprint(server) == before


async def test_upload_of_a_chunked_blob_reads_back_everywhere(c: GovcClient) -> None:
    data = os.urandom(5 * MIB + 3)
    stored = await c.upload(R, _chunks(data, 256 * KIB))  # total size not declared
    assert stored.hash == blob_id(data)
    assert (await c.get_blob(R, stored.hash)).content == data
    again = await c.upload(R, _chunks(data, MIB), total_size=len(data))  # already there
    assert again.hash == stored.hash
    out = io.BytesIO()
    await c.download(R, stored.hash, out)
    assert out.getvalue() == data
