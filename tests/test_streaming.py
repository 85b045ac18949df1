"""StreamBlob and UploadBlobStream against the API: round trips at the chunk edges, ranges,
every field of the download messages, chunk size clamping, and upload failures that must leave
the store (LMDB entries, data size, uploads in progress, repository list) exactly as it was."""

import asyncio
import hashlib
import io
import random
import threading
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import betterproto2
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

import govc.core.blobs
from generated.govc import (
    StreamBlobRequest,
    StreamChunk,
    StreamMetadata,
    StreamProgress,
    UploadBlobStreamRequest,
    UploadMetadata,
)
from govc.client import GovcClient, GovcRpcError
from govc.core.gitformat import blob_id
from govc.server import GovcServer
from govc.storage.objectstore import encode_chunk
from tests.conftest import server_config
from tests.polling import poll_until

REPO = "streaming"
KIB = 1024
MIB = 1024 * KIB
DEFAULT_CHUNK = 64 * KIB
STORAGE_PIECE = MIB  # blobs above this are stored chunked, one LMDB entry per MiB
COUNTED_DBS = ("repos", "objects", "chunks", "checksums", "recent", "refs")
# A failed upload may commit nothing; allow a few pages of unrelated bookkeeping at most.
PAGE_SLACK = 16


def payload(size: int, seed: int = 0) -> bytes:
    """Reproducible random binary content (every byte value, no structure)."""
    return random.Random(f"{seed}:{size}").randbytes(size)


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


@pytest.fixture
async def repo(client: GovcClient) -> GovcClient:
    await client.create_repository(REPO)
    return client


# ---- reading a StreamBlob call and checking every field ----


async def stream_messages(client: GovcClient, **fields: Any) -> list[tuple[str, Any]]:
    fields.setdefault("repository_id", REPO)
    request = StreamBlobRequest(**fields)
    return [
        betterproto2.which_one_of(message, "response")
        async for message in client.stub.stream_blob([request])
    ]


def effective_chunk_size(asked: int) -> int:
    return min(max(asked or DEFAULT_CHUNK, KIB), 4 * MIB)


def check_stream(messages: list[tuple[str, Any]], expected: bytes, chunk_size: int) -> None:
    """Assert the whole message sequence of one StreamBlob call, per the API."""
    kinds = [kind for kind, _ in messages]
    assert "error" not in kinds
    assert kinds[0] == "metadata" and kinds.count("metadata") == 1
    metadata: StreamMetadata = messages[0][1]
    count = max(1, -(-len(expected) // chunk_size))
    assert metadata.stream_id
    assert metadata.total_size == len(expected)
    assert metadata.chunk_count == count
    assert metadata.checksum == hashlib.sha256(expected).hexdigest()
    assert {value.stream_id for _, value in messages} == {metadata.stream_id}

    chunks: list[StreamChunk] = [value for kind, value in messages if kind == "chunk"]
    assert [c.sequence_num for c in chunks] == list(range(count))
    assert b"".join(c.data for c in chunks) == expected
    assert [len(c.data) for c in chunks[:-1]] == [chunk_size] * (count - 1)
    assert 0 < len(chunks[-1].data) <= chunk_size or (not expected and chunks[-1].data == b"")
    assert all(c.checksum == hashlib.sha256(c.data).hexdigest() for c in chunks)
    assert [c.is_last for c in chunks] == [False] * (count - 1) + [True]

    # A progress message right after chunk 0, every 10th chunk and the last; nowhere else.
    want_after = sorted({s for s in range(count) if s % 10 == 0} | {count - 1})
    after: list[int] = []
    sent = 0
    for position, (kind, value) in enumerate(messages[1:], start=1):
        if kind == "chunk":
            sent += len(value.data)
            continue
        assert kind == "progress", kind
        before_kind, before = messages[position - 1]
        assert before_kind == "chunk", "progress must follow a chunk"
        after.append(before.sequence_num)
        progress: StreamProgress = value
        last = before.sequence_num == count - 1
        assert progress.status == ("completed" if last else "streaming")
        assert progress.bytes_streamed == sent
        assert progress.chunks_streamed == before.sequence_num + 1
        assert progress.total_bytes == len(expected)
        assert progress.total_chunks == count
        if sent:
            assert progress.transfer_rate_mbps > 0
        else:
            assert progress.transfer_rate_mbps >= 0
    assert after == want_after
    assert kinds[-1] == "progress" and messages[-1][1].status == "completed"


# ---- round trips ----

EDGE_SIZES = [0, 1, 64 * KIB - 1, 64 * KIB, 64 * KIB + 1, 10 * MIB]


@pytest.mark.parametrize("size", EDGE_SIZES, ids=lambda s: f"{s}B")
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
async def test_upload_then_stream_round_trip(repo: GovcClient, size: int, declared: bool) -> None:
    data = payload(size)
    sent: list[tuple[int, int]] = []
    stored = await repo.upload(
        REPO,
        pieces(data, 100_000),  # re-chunked by the client to 64 KiB
        total_size=size if declared else 0,
        progress=lambda done, total: sent.append((done, total)),
    )
    assert stored.hash == blob_id(data)
    assert stored.size == size
    assert stored.checksum == hashlib.sha256(data).hexdigest()
    assert stored.chunks_received == max(1, -(-size // DEFAULT_CHUNK))
    assert sent[-1] == (size, size if declared else 0)

    out = io.BytesIO()
    metadata = await repo.download(REPO, stored.hash, out)
    assert out.getvalue() == data
    assert metadata.total_size == size
    assert (await repo.get_blob(REPO, stored.hash)).content == data
    check_stream(await stream_messages(repo, hash=stored.hash), data, DEFAULT_CHUNK)


@pytest.mark.parametrize("seed", range(4))
async def test_random_binary_round_trip(repo: GovcClient, seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice([rng.randrange(1, 64 * KIB), rng.randrange(MIB, 3 * MIB)])
    data = rng.randbytes(size)
    upload_chunk = rng.choice([KIB, 7 * KIB + 3, DEFAULT_CHUNK, 300 * KIB])
    stored = await repo.upload(REPO, pieces(data, 4096), chunk_size=upload_chunk)
    assert stored.hash == blob_id(data)
    assert stored.chunks_received == -(-size // upload_chunk)
    asked = rng.choice([0, 1500, 8 * KIB, 200 * KIB])
    check_stream(
        await stream_messages(repo, hash=stored.hash, chunk_size=asked),
        data,
        effective_chunk_size(asked),
    )


async def test_stored_blob_streams_and_stream_ids_are_unique(repo: GovcClient) -> None:
    data = payload(25 * KIB + 7, seed=1)
    stored = await repo.store_blob(REPO, data)  # stored by the unary RPC, read by the stream
    first = await stream_messages(repo, hash=stored.hash, chunk_size=KIB)
    second = await stream_messages(repo, hash=stored.hash, chunk_size=KIB)
    check_stream(first, data, KIB)
    check_stream(second, data, KIB)
    assert first[0][1].stream_id != second[0][1].stream_id
    progress = [value for kind, value in first if kind == "progress"]
    assert [p.chunks_streamed for p in progress] == [1, 11, 21, 26]
    assert [p.bytes_streamed for p in progress] == [KIB, 11 * KIB, 21 * KIB, len(data)]


async def test_delta_stored_blob_streams(repo: GovcClient) -> None:
    base = payload(200 * KIB, seed=11)
    await repo.store_blob_with_delta(REPO, base)
    similar = base[:1000] + b"changed" + base[1000:]
    stored = await repo.store_blob_with_delta(REPO, similar)
    assert stored.compressed_size < len(similar) // 10  # kept as a delta against `base`
    check_stream(await stream_messages(repo, hash=stored.hash, chunk_size=5000), similar, 5000)
    middle = similar[900:150_000]
    check_stream(
        await stream_messages(repo, hash=stored.hash, start_offset=900, end_offset=150_000),
        middle,
        DEFAULT_CHUNK,
    )


async def test_empty_blob_streams_one_empty_last_chunk(repo: GovcClient) -> None:
    stored = await repo.store_blob(REPO, b"")
    messages = await stream_messages(repo, hash=stored.hash)
    assert [kind for kind, _ in messages] == ["metadata", "chunk", "progress"]
    check_stream(messages, b"", DEFAULT_CHUNK)
    chunk = messages[1][1]
    assert chunk.data == b"" and chunk.is_last and chunk.sequence_num == 0
    assert chunk.checksum == hashlib.sha256(b"").hexdigest()


# ---- chunk size ----


@pytest.mark.parametrize(
    ("asked", "used"),
    [
        (0, 64 * KIB),
        (10, KIB),
        (-5, KIB),
        (1023, KIB),
        (KIB, KIB),
        (5000, 5000),
        (4 * MIB, 4 * MIB),
        (4 * MIB + 1, 4 * MIB),
        (10 * MIB, 4 * MIB),
    ],
    ids=str,
)
async def test_chunk_size_default_and_clamp(repo: GovcClient, asked: int, used: int) -> None:
    data = payload(9 * MIB + 11, seed=2) if used >= MIB else payload(70 * KIB + 3, seed=2)
    stored = await repo.upload(REPO, pieces(data, MIB), chunk_size=MIB)
    messages = await stream_messages(repo, hash=stored.hash, chunk_size=asked)
    assert effective_chunk_size(asked) == used
    check_stream(messages, data, used)


# ---- ranges ----


@pytest.fixture(params=[100 * KIB + 1, 3 * MIB + 123], ids=["plain", "chunked"])
async def ranged(repo: GovcClient, request: pytest.FixtureRequest) -> tuple[str, bytes]:
    data = payload(request.param, seed=3)
    stored = await repo.upload(REPO, pieces(data, MIB), total_size=len(data))
    return stored.hash, data


def range_cases(size: int) -> list[tuple[int, int]]:
    return [
        (0, 0),  # end 0 is the end: everything
        (0, size),
        (0, 1),
        (size - 1, 0),
        (size - 1, size),
        (size, 0),  # empty range at the very end
        (size, size),
        (0, size - 1),
        (7, 7),  # start == end: empty
        (1, size - 1),
        (MIB - 3, MIB + 3),  # across a storage piece boundary (when chunked)
        (MIB, min(2 * MIB, size)),
    ]


async def test_ranges(repo: GovcClient, ranged: tuple[str, bytes]) -> None:
    blob_hash, data = ranged
    size = len(data)
    for start, end in range_cases(size):
        if start > size or end > size:
            continue
        expected = data[start : end or size]
        messages = await stream_messages(
            repo, hash=blob_hash, start_offset=start, end_offset=end, chunk_size=16 * KIB
        )
        check_stream(messages, expected, 16 * KIB)
        out = io.BytesIO()
        metadata = await repo.download(REPO, blob_hash, out, start=start, end=end)
        assert out.getvalue() == expected, (start, end)
        assert metadata.checksum == hashlib.sha256(expected).hexdigest()


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("size+1", 0),
        ("size+1", "size"),
        (0, "size+1"),
        (5, 4),
        ("size", 1),
        (-1, 0),
        (0, -1),
        (-5, -1),
    ],
    ids=str,
)
async def test_invalid_ranges_are_out_of_range(
    repo: GovcClient, ranged: tuple[str, bytes], start: int | str, end: int | str
) -> None:
    blob_hash, data = ranged
    size = len(data)
    value = {"size": size, "size+1": size + 1}
    first = value.get(start, start) if isinstance(start, str) else start
    last = value.get(end, end) if isinstance(end, str) else end
    with pytest.raises(GRPCError) as raised:
        await stream_messages(repo, hash=blob_hash, start_offset=first, end_offset=last)
    assert raised.value.status == Status.OUT_OF_RANGE
    assert "start_offset" in (raised.value.message or "")
    with pytest.raises(GovcRpcError) as failed:
        await repo.download(REPO, blob_hash, io.BytesIO(), start=int(first), end=int(last))
    assert failed.value.status == Status.OUT_OF_RANGE


@pytest.mark.parametrize(
    ("repository", "blob", "status"),
    [
        (REPO, "0" * 40, Status.NOT_FOUND),
        ("missing", "0" * 40, Status.NOT_FOUND),
        (REPO, "xyz", Status.INVALID_ARGUMENT),
        ("", "0" * 40, Status.INVALID_ARGUMENT),
    ],
)
async def test_stream_errors(repo: GovcClient, repository: str, blob: str, status: Status) -> None:
    with pytest.raises(GRPCError) as raised:
        await stream_messages(repo, repository_id=repository, hash=blob)
    assert raised.value.status == status


# ---- what the store holds, to show a failed upload changed nothing ----


@dataclass(frozen=True)
class Footprint:
    entries: dict[str, int]
    last_page: int
    uploads_in_progress: int


def footprint(server: GovcServer) -> Footprint:
    storage = server.storage
    assert storage is not None
    stats = storage.stats()
    entries = {name: stats[name] for name in COUNTED_DBS}
    with storage.read() as txn:
        uploads = len(txn.objects.unfinished_uploads())
    return Footprint(
        entries=entries,
        last_page=stats["last_page"],
        uploads_in_progress=uploads,
    )


async def assert_unchanged(
    client: GovcClient,
    server: GovcServer,
    before: Footprint,
    repositories: list[str],
    absent: Iterable[bytes],
) -> None:
    after = footprint(server)
    assert after.uploads_in_progress == 0
    assert after.entries == before.entries
    assert after.last_page - before.last_page <= PAGE_SLACK, (before, after)
    listed = await client.list_repositories()
    assert [r.id for r in listed.repositories] == repositories
    for content in absent:
        with pytest.raises(GovcRpcError) as missing:
            await client.get_blob(REPO, blob_id(content))
        assert missing.value.status == Status.NOT_FOUND
        with pytest.raises(GRPCError) as not_streamed:
            await stream_messages(client, hash=blob_id(content))
        assert not_streamed.value.status == Status.NOT_FOUND


def meta(total: int = 0, repository: str = REPO) -> UploadBlobStreamRequest:
    return UploadBlobStreamRequest(
        repository_id=repository, metadata=UploadMetadata(filename="f.bin", total_size=total)
    )


def chunk(sequence: int, data: bytes, checksum: str | None = None) -> UploadBlobStreamRequest:
    digest = hashlib.sha256(data).hexdigest() if checksum is None else checksum
    return UploadBlobStreamRequest(
        repository_id=REPO,
        chunk=StreamChunk(sequence_num=sequence, data=data, checksum=digest),
    )


BIG = payload(3 * MIB + 5, seed=4)
A, B, C = BIG[:MIB], BIG[MIB : 2 * MIB], BIG[2 * MIB :]
ALL = [chunk(0, A), chunk(1, B), chunk(2, C)]
B_SUM = hashlib.sha256(B).hexdigest()
INVALID = Status.INVALID_ARGUMENT

FAILURES: list[tuple[str, list[UploadBlobStreamRequest], Status]] = [
    ("no messages", [], INVALID),
    ("chunk first", [chunk(0, A), chunk(1, B)], INVALID),
    ("metadata twice", [meta(), chunk(0, A), meta()], INVALID),
    ("gap", [meta(), chunk(0, A), chunk(2, B), chunk(3, C)], INVALID),
    ("starts at 1", [meta(), chunk(1, A)], INVALID),
    ("repeat", [meta(), chunk(0, A), chunk(1, B), chunk(1, B)], INVALID),
    ("repeat 0", [meta(), chunk(0, A), chunk(0, A)], INVALID),
    ("bad checksum", [meta(), chunk(0, A), chunk(1, B, "ab" * 32)], Status.DATA_LOSS),
    ("bad checksum, then a gap", [meta(), chunk(0, A), chunk(1, B, "ab" * 32), chunk(5, C)],
     Status.DATA_LOSS),
    ("more than declared, early", [meta(10), chunk(0, A), chunk(1, B)], INVALID),
    ("checksum of other data", [meta(), chunk(0, A, B_SUM)], Status.DATA_LOSS),
    ("too little data", [meta(len(BIG) + 1), *ALL], INVALID),
    ("too much data", [meta(len(BIG) - 1), *ALL], INVALID),
    ("small, wrong size", [meta(10), chunk(0, b"123456789")], INVALID),
    ("negative size", [meta(-1), chunk(0, A)], INVALID),
    ("unknown repository", [meta(0, "nobody"), chunk(0, A)], Status.NOT_FOUND),
    ("bad repository id", [meta(0, "../x"), chunk(0, A)], INVALID),
]  # fmt: skip


@pytest.mark.parametrize(("name", "messages", "status"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_failed_upload_leaves_the_store_as_it_was(
    repo: GovcClient,
    server: GovcServer,
    name: str,
    messages: list[UploadBlobStreamRequest],
    status: Status,
) -> None:
    before = footprint(server)
    with pytest.raises(GRPCError) as raised:
        await repo.stub.upload_blob_stream(messages)
    assert raised.value.status == status, raised.value.message
    assert raised.value.message
    arrived = [m.chunk.data for m in messages if m.chunk is not None]
    prefixes = [b"".join(arrived[:n]) for n in range(1, len(arrived) + 1)]
    await assert_unchanged(repo, server, before, [REPO], [BIG, *prefixes])


async def test_checksums_in_upper_case_hex_are_accepted(repo: GovcClient) -> None:
    data = payload(MIB + 3, seed=6)
    pieces_ = [data[:MIB], data[MIB:]]
    response = await repo.stub.upload_blob_stream(
        [meta(len(data))]
        + [chunk(n, p, hashlib.sha256(p).hexdigest().upper()) for n, p in enumerate(pieces_)]
    )
    assert response.hash == blob_id(data)


async def test_chunk_without_checksum_is_accepted(repo: GovcClient) -> None:
    data = payload(2 * MIB + 1, seed=5)
    response = await repo.stub.upload_blob_stream(
        [meta(len(data)), chunk(0, data[:MIB], ""), chunk(1, data[MIB:], "")]
    )
    assert response.hash == blob_id(data) and response.size == len(data)
    assert response.chunks_received == 2
    assert response.checksum == hashlib.sha256(data).hexdigest()


# ---- the upload cap ----

CAP = MIB + 512 * KIB


@pytest.fixture
async def capped(tmp_path: Path) -> AsyncIterator[tuple[GovcServer, GovcClient]]:
    server = GovcServer(server_config(tmp_path / "capped", max_upload_bytes=CAP))
    await server.start()
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as client:
            await client.create_repository(REPO)
            yield server, client
    finally:
        await server.stop()


async def test_upload_over_the_cap_declared(capped: tuple[GovcServer, GovcClient]) -> None:
    server, client = capped
    data = payload(CAP + 1, seed=6)
    before = footprint(server)
    with pytest.raises(GRPCError) as raised:
        await client.stub.upload_blob_stream([meta(CAP + 1), chunk(0, data)])
    assert raised.value.status == Status.RESOURCE_EXHAUSTED
    assert str(CAP) in (raised.value.message or "")
    with pytest.raises(GovcRpcError) as via_client:
        await client.upload(REPO, pieces(data, 64 * KIB), total_size=len(data))
    assert via_client.value.status == Status.RESOURCE_EXHAUSTED
    await assert_unchanged(client, server, before, [REPO], [data])


async def test_upload_over_the_cap_discovered(capped: tuple[GovcServer, GovcClient]) -> None:
    server, client = capped
    data = payload(3 * CAP, seed=7)
    before = footprint(server)
    with pytest.raises(GovcRpcError) as raised:
        await client.upload(REPO, pieces(data, 64 * KIB), chunk_size=256 * KIB)
    assert raised.value.status == Status.RESOURCE_EXHAUSTED
    # Exactly one byte over, in the last chunk.
    with pytest.raises(GRPCError) as one_over:
        await client.stub.upload_blob_stream(
            [meta(), chunk(0, data[:MIB]), chunk(1, data[MIB : CAP + 1])]
        )
    assert one_over.value.status == Status.RESOURCE_EXHAUSTED
    await assert_unchanged(client, server, before, [REPO], [data, data[:MIB], data[: CAP + 1]])


async def test_upload_at_the_cap_is_accepted(capped: tuple[GovcServer, GovcClient]) -> None:
    _, client = capped
    for total in (0, CAP):
        data = payload(CAP, seed=8 + total)
        stored = await client.upload(REPO, pieces(data, MIB), total_size=total)
        assert stored.hash == blob_id(data) and stored.size == CAP


# ---- the client gives up mid-upload ----


def _upload_worker_running() -> bool:
    return any(t.name.startswith("govc-upload") for t in threading.enumerate())


async def _cancel_mid_upload(
    repo: GovcClient, data: bytes, server: GovcServer | None = None
) -> None:
    """Upload `data` and then stall; cancel once the server's worker has data (with `server`:
    once chunks are committed to its storage, under an upload marker)."""
    produced = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        async for piece in pieces(data, 256 * KIB):
            yield piece
        produced.set()
        await asyncio.Event().wait()  # still producing when cancelled
        yield b"never"

    task = asyncio.create_task(repo.upload(REPO, stalls(), chunk_size=256 * KIB))
    await asyncio.wait_for(produced.wait(), 10)
    # The server is receiving: its upload worker runs (it starts with the first MiB).
    await poll_until(_upload_worker_running, message="the upload never reached its worker")
    if server is not None:
        await poll_until(
            lambda: footprint(server).uploads_in_progress > 0, message="no chunks were committed"
        )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The server has removed what the upload wrote once its worker is gone.
    await poll_until(
        lambda: not _upload_worker_running(),
        message="the upload's worker never finished after the client cancelled",
    )


async def test_client_cancel_mid_upload_leaves_nothing(
    repo: GovcClient, server: GovcServer
) -> None:
    before = footprint(server)
    data = payload(4 * MIB, seed=9)
    await _cancel_mid_upload(repo, data)
    await assert_unchanged(repo, server, before, [REPO], [data])
    # The server is fine afterwards: the same content uploads in full.
    stored = await repo.upload(REPO, pieces(data, MIB), total_size=len(data))
    assert stored.hash == blob_id(data)


async def test_cancel_after_chunks_were_committed_removes_them(
    repo: GovcClient, server: GovcServer
) -> None:
    before = footprint(server)
    data = payload(20 * MIB, seed=13)  # the first 16 MiB are committed while the rest arrives
    await _cancel_mid_upload(repo, data, server)
    after = footprint(server)
    # Entries as before; the file may keep the freed pages, which LMDB reuses.
    assert after.entries == before.entries and after.uploads_in_progress == 0
    with pytest.raises(GovcRpcError) as missing:
        await repo.get_blob(REPO, blob_id(data))
    assert missing.value.status == Status.NOT_FOUND


# ---- a big upload is stored in chunks over several transactions ----


async def test_multi_chunk_upload_reads_back_everywhere(
    repo: GovcClient, server: GovcServer
) -> None:
    data = payload(17 * MIB + 5, seed=10)  # 18 storage pieces: more than one write transaction
    before = footprint(server)
    stored = await repo.upload(REPO, pieces(data, 300 * KIB), chunk_size=256 * KIB)
    assert stored.hash == blob_id(data)
    assert stored.size == len(data)
    assert stored.chunks_received == -(-len(data) // (256 * KIB))
    after = footprint(server)
    pieces_stored = -(-len(data) // STORAGE_PIECE)
    assert after.entries["objects"] == before.entries["objects"] + 1
    assert after.entries["chunks"] == before.entries["chunks"] + pieces_stored
    assert after.uploads_in_progress == 0

    assert (await repo.get_blob(REPO, stored.hash)).content == data
    check_stream(await stream_messages(repo, hash=stored.hash, chunk_size=MIB), data, MIB)
    odd = 300 * KIB + 1  # chunks that straddle storage pieces
    check_stream(await stream_messages(repo, hash=stored.hash, chunk_size=odd), data, odd)
    middle = data[MIB - 1 : 5 * MIB + 1]
    check_stream(
        await stream_messages(repo, hash=stored.hash, start_offset=MIB - 1, end_offset=5 * MIB + 1),
        middle,
        DEFAULT_CHUNK,
    )

    again = await repo.upload(REPO, pieces(data, MIB), total_size=len(data), chunk_size=MIB)
    assert again.hash == stored.hash
    assert footprint(server).entries == after.entries


async def test_repository_recreated_during_chunked_commit_leaves_no_broken_blob(
    repo: GovcClient, server: GovcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(20 * MIB + 1, seed=12)  # 21 storage pieces: two chunk transactions
    first_batch_committed = threading.Event()
    may_continue = threading.Event()
    encoded = 0

    def encode_after_pause(piece: bytes, compress: bool = True) -> bytes:
        nonlocal encoded
        encoded += 1
        if encoded == govc.core.blobs.CHUNKS_PER_TRANSACTION + 1:  # the first batch is committed
            first_batch_committed.set()
            assert may_continue.wait(10)
        return encode_chunk(piece, compress)

    monkeypatch.setattr(govc.core.blobs, "encode_chunk", encode_after_pause)
    upload = asyncio.create_task(repo.upload(REPO, pieces(data, MIB), total_size=len(data)))
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, first_batch_committed.wait, 10)
    await repo.delete_repository(REPO)
    await repo.create_repository(REPO)
    may_continue.set()
    try:
        stored = await upload
    except GovcRpcError:
        storage = server.storage
        assert storage is not None
        assert storage.stats()["chunks"] == 0
        with pytest.raises(GovcRpcError) as missing:
            await repo.get_blob(REPO, blob_id(data))
        assert missing.value.status == Status.NOT_FOUND
    else:  # if it is reported stored, it must be whole
        assert (await repo.get_blob(REPO, stored.hash)).content == data
