"""Stalled and cancelled streams cost little memory, and not for long; uploads are capped.

The server runs in the test process, so its memory is this process's resident set (VmRSS),
read after a garbage collection. The server is built with a short stall timeout and a small
upload cap (`stream_stall_seconds`, `max_concurrent_uploads`: `govc serve` flags).

Clients open calls with grpclib's raw streams (`Channel.request`), so they can stop reading or
sending whenever the test wants.
"""

import asyncio
import gc
import io
import os
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.client import Stream as ClientStream
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from generated.govc import (
    StreamBlobRequest,
    StreamBlobResponse,
    StreamChunk,
    UploadBlobStreamRequest,
    UploadBlobStreamResponse,
    UploadMetadata,
)
from govc.client import GovcClient
from govc.server import GovcServer
from govc.transport.codec import GovcCodec
from tests.conftest import server_config
from tests.polling import poll_until
from tests.test_streaming import footprint

MIB = 1024 * 1024
REPO = "hardening"
STALL = 0.5  # seconds; the server's default is 30
BLOB_SIZE = 16 * MIB
STREAMS = 20
STREAM_PATH = "/govc.GoVCService/StreamBlob"
UPLOAD_PATH = "/govc.GoVCService/UploadBlobStream"
DOWNLOAD_CALL = "__rpc_stream_blob"  # the generated server method a call's task runs
UPLOAD_CALL = "__rpc_upload_blob_stream"

# A stalled download holds the message being sent (three copies of one chunk: ours, the encoded
# message, the framed message) and at most one storage piece (1 MiB) read ahead. With 1 MiB
# chunks that is ~4 MiB a stream: 20 stalled streams measured +76 MiB (before the change +75;
# with 4 MiB chunks 299 MiB, before 460). Ended, they measured +2 MiB (before: +75 MiB, kept
# until the client disconnected and then still resident).
STALLED_BOUND = 100 * MIB
RELEASED_BOUND = 32 * MIB
# 20 downloads of 4 MiB chunks, each cancelled after its first chunk: measured +0-3 MiB (before
# the change +176 to +214 MiB: grpclib keeps a finished call's task, its exception and through
# that the frames holding the chunks, until later calls sweep them).
CANCELLED_BOUND = 48 * MIB

needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")


def rss() -> int:
    """This process's resident set (VmRSS), in bytes, after collecting garbage."""
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def calls_in(function: str) -> int:
    """How many of the server's call tasks are inside `function` (by name) right now."""
    count = 0
    for task in asyncio.all_tasks():
        awaited: Any = task.get_coro()
        while awaited is not None:
            code = getattr(awaited, "cr_code", None) or getattr(awaited, "ag_code", None)
            if code is not None and code.co_name == function:
                count += 1
                break
            awaited = getattr(awaited, "cr_await", None)
    return count


def upload_workers() -> int:
    return sum(t.name.startswith("govc-upload") for t in threading.enumerate())


@asynccontextmanager
async def hardened_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **streaming: Any
) -> AsyncIterator[tuple[GovcServer, GovcClient, Channel]]:
    """A server with `streaming` settings (stall_seconds, max_uploads), a client with REPO
    created, and a raw channel to it."""
    options = {
        "stream_stall_seconds": streaming.get("stall_seconds", 30.0),
        "max_concurrent_uploads": streaming.get("max_uploads", 64),
    }
    server = GovcServer(server_config(tmp_path / "data", **options))
    await server.start()
    channel = Channel("127.0.0.1", server.port, codec=GovcCodec())
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as client:
            await client.create_repository(REPO)
            yield server, client, channel
    finally:
        channel.close()
        await server.stop()


async def upload_blob(client: GovcClient, size: int, seed: int) -> str:
    block = os.urandom(MIB)

    async def pieces() -> AsyncIterator[bytes]:
        for n in range(size // MIB):
            yield seed.to_bytes(4, "big") + n.to_bytes(4, "big") + block[8:]

    stored = await client.upload(REPO, pieces(), total_size=size, chunk_size=MIB)
    return stored.hash


async def open_download(
    stack: AsyncExitStack, channel: Channel, blob_hash: str, chunk_size: int
) -> ClientStream[StreamBlobRequest, StreamBlobResponse]:
    stream = await stack.enter_async_context(
        channel.request(
            STREAM_PATH, Cardinality.STREAM_STREAM, StreamBlobRequest, StreamBlobResponse
        )
    )
    request = StreamBlobRequest(repository_id=REPO, hash=blob_hash, chunk_size=chunk_size)
    await stream.send_message(request, end=True)
    return stream


async def open_upload(
    stack: AsyncExitStack, channel: Channel, total_size: int
) -> ClientStream[UploadBlobStreamRequest, UploadBlobStreamResponse]:
    stream = await stack.enter_async_context(
        channel.request(
            UPLOAD_PATH,
            Cardinality.STREAM_UNARY,
            UploadBlobStreamRequest,
            UploadBlobStreamResponse,
        )
    )
    metadata = UploadMetadata(filename="stall.bin", total_size=total_size, chunk_size=MIB)
    await stream.send_message(UploadBlobStreamRequest(repository_id=REPO, metadata=metadata))
    return stream


async def ended_status(stream: ClientStream[Any, Any]) -> Status | None:
    """How the server ended the call (None: with a reset and no status), without reading the
    messages it sent: a stalled download may have been ended in the middle of one."""
    try:
        await stream.recv_initial_metadata()  # a trailers-only response raises here
        await stream.recv_trailing_metadata()
    except GRPCError as exc:
        return exc.status
    except StreamTerminatedError:
        return None
    return Status.OK


@needs_proc
async def test_stalled_downloads_cost_a_few_chunks_and_end_after_the_stall_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hardened_server(tmp_path, monkeypatch, stall_seconds=STALL) as (_, client, ch):
        blob_hash = await upload_blob(client, BLOB_SIZE, seed=1)
        baseline = rss()
        async with AsyncExitStack() as stack:
            streams = [await open_download(stack, ch, blob_hash, MIB) for _ in range(STREAMS)]
            # Every call is sending (its send waits on the closed window) or already ended.
            await poll_until(lambda: calls_in(DOWNLOAD_CALL) == STREAMS, timeout=10)
            stalled = rss() - baseline
            assert stalled < STALLED_BOUND, (
                f"{STREAMS} stalled downloads took {stalled / MIB:.0f} MiB"
            )
            # After the stall timeout the server ends them all and lets go of their chunks.
            await poll_until(lambda: calls_in(DOWNLOAD_CALL) == 0, message="stalls never ended")
            released = await poll_until(
                lambda: (growth := rss() - baseline) < RELEASED_BOUND and growth + 1,
                message=lambda: f"still {(rss() - baseline) / MIB:.0f} MiB after the stalls ended",
            )
            assert released - 1 < RELEASED_BOUND
            # The clients, reading at last, see why.
            statuses = {await ended_status(stream) for stream in streams}
            assert statuses <= {Status.DEADLINE_EXCEEDED, Status.CANCELLED, None}, statuses
            assert Status.DEADLINE_EXCEEDED in statuses
        # The server still serves downloads in full.
        metadata = await client.download(REPO, blob_hash, io.BytesIO(), chunk_size=MIB)
        assert metadata.total_size == BLOB_SIZE


@needs_proc
async def test_cancelled_downloads_release_their_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hardened_server(tmp_path, monkeypatch, stall_seconds=STALL) as (srv, client, _):
        blob_hash = await upload_blob(client, BLOB_SIZE, seed=2)
        baseline = rss()
        for _ in range(STREAMS):
            async with AsyncExitStack() as stack:
                # A client each, as when separate clients give up on their downloads.
                own = Channel("127.0.0.1", srv.port, codec=GovcCodec())
                stack.callback(own.close)
                stream = await open_download(stack, own, blob_hash, 4 * MIB)
                assert (await stream.recv_message()) is not None  # metadata
                assert (await stream.recv_message()) is not None  # the first chunk
                await stream.cancel()
        await poll_until(lambda: calls_in(DOWNLOAD_CALL) == 0, message="cancelled calls linger")
        grown = rss() - baseline
        assert grown < CANCELLED_BOUND, f"{STREAMS} cancelled downloads kept {grown / MIB:.0f} MiB"


async def test_stalled_uploads_are_aborted_leaving_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = 5
    async with hardened_server(tmp_path, monkeypatch, stall_seconds=STALL) as (srv, client, ch):
        # Warm up: the storage threads these uploads use exist from here on.
        await asyncio.gather(*(upload_blob(client, 2 * MIB, seed=10 + n) for n in range(uploads)))
        threads = threading.active_count()
        before = footprint(srv)
        block = os.urandom(MIB)
        staged = 0
        with pytest.raises(GRPCError) as ended:
            async with AsyncExitStack() as stack:
                streams = []
                for n in range(uploads):
                    stream = await open_upload(stack, ch, total_size=64 * MIB)
                    # 17 MiB: a transaction of 16 chunks is committed under an upload marker.
                    for sequence in range(17):
                        data = n.to_bytes(4, "big") + sequence.to_bytes(4, "big") + block[8:]
                        chunk = StreamChunk(sequence_num=sequence, data=data)
                        await stream.send_message(UploadBlobStreamRequest(chunk=chunk))
                    streams.append(stream)
                    if n == 0:  # staged in storage (well within the stall timeout)
                        staged = await poll_until(lambda: footprint(srv).uploads_in_progress)
                # Then nothing: the server aborts each after the stall timeout, answering
                # DEADLINE_EXCEEDED and resetting the stream the client still sends on.
                await poll_until(lambda: calls_in(UPLOAD_CALL) == 0, message="stalls never ended")
                statuses = {await ended_status(stream) for stream in streams}
                assert statuses <= {Status.DEADLINE_EXCEEDED, None}, statuses
        # (grpclib's client reports the reset on reading, the status on leaving the call.)
        assert ended.value.status == Status.DEADLINE_EXCEEDED
        assert staged >= 1
        await poll_until(lambda: upload_workers() == 0, message="upload workers linger")
        await poll_until(
            lambda: threading.active_count() <= threads,
            message=lambda: f"{threading.active_count()} threads, {threads} before",
        )
        after = footprint(srv)
        assert after.uploads_in_progress == 0
        assert after.entries == before.entries, (before, after)


async def test_uploads_beyond_the_cap_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = 3
    options = {"stall_seconds": 30.0, "max_uploads": cap}
    async with hardened_server(tmp_path, monkeypatch, **options) as (srv, client, ch):
        async with AsyncExitStack() as stack:
            holding = [await open_upload(stack, ch, total_size=MIB) for _ in range(cap)]
            await poll_until(lambda: calls_in(UPLOAD_CALL) == cap, timeout=10)
            with pytest.raises(GRPCError) as refused:
                async with AsyncExitStack() as own:
                    await ended_status(await open_upload(own, ch, total_size=MIB))
            assert refused.value.status == Status.RESOURCE_EXHAUSTED
            with pytest.raises(Exception, match=r"uploads are in progress"):
                await upload_blob(client, MIB, seed=3)
            for stream in holding:
                await stream.cancel()
        # The client cancelled those: the server takes uploads again.
        await poll_until(lambda: calls_in(UPLOAD_CALL) == 0, message="cancelled uploads linger")
        assert await upload_blob(client, 2 * MIB, seed=4)
        assert footprint(srv).uploads_in_progress == 0
