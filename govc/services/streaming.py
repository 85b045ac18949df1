"""StreamBlob and UploadBlobStream: big blobs in chunks, each with its SHA-256.

Downloads read the blob piece by piece (one storage chunk at a time, each in a short read
transaction) and yield one message at a time, so HTTP/2 flow control paces the server to the
reader. Uploads are checked on the loop (order, size) and handed on, a MiB at a time, to one
worker thread that verifies checksums, hashes and writes chunks into storage while the rest is
still arriving (`govc.core.blobs.UploadSink`); the blob becomes visible only when it is whole and
checked, and a failed upload removes what it wrote.
"""

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import betterproto2

from generated.govc import (
    StreamBlobRequest,
    StreamBlobResponse,
    StreamChunk,
    StreamMetadata,
    StreamProgress,
    UploadBlobStreamRequest,
    UploadBlobStreamResponse,
)
from govc.core.blobs import Blobs, UploadSink
from govc.core.gitformat import validate_object_id
from govc.core.objects import CHUNK_SIZE, ObjectInfo
from govc.core.validation import validate_repo_id
from govc.errors import DataLoss, InvalidArgument, OutOfRange, ResourceExhausted
from govc.services.access import Access
from govc.services.oneof import set_one_of

DEFAULT_CHUNK = 64 * 1024
MIN_CHUNK = 1024
MAX_CHUNK = 4 * 1024 * 1024
PROGRESS_EVERY = 10
CONTENT_TYPE = "application/octet-stream"
HANDOFF_BYTES = 1024 * 1024  # an upload's chunks go to its worker thread this many at a time
MAX_HANDOFFS_IN_FLIGHT = 2  # then the loop waits: a slow disk slows the client down
# While streaming a big blob, unmap what was read every this many storage pieces (MiB), so the
# process does not keep the whole blob resident through LMDB's mmap.
RELEASE_EVERY_PIECES = 32


def _response(field: str, value: object) -> StreamBlobResponse:
    return set_one_of(StreamBlobResponse(), field, value)


class StreamingService:
    def __init__(self, access: Access, blobs: Blobs, max_upload_bytes: int) -> None:
        self._access = access
        self._blobs = blobs
        self._max_upload_bytes = max_upload_bytes
        # Chunks of uploads a crash interrupted are garbage: no blob names them.
        blobs.discard_unfinished_uploads()

    # ---- download ----

    async def stream_blob(
        self, messages: AsyncIterator[StreamBlobRequest]
    ) -> AsyncIterator[StreamBlobResponse]:
        request = await anext(messages, None)
        if request is None:
            raise InvalidArgument("StreamBlob expects one StreamBlobRequest")
        repo_id = validate_repo_id(request.repository_id, "repository_id")
        oid = validate_object_id(request.hash, "hash")
        chunk_size = request.chunk_size or DEFAULT_CHUNK
        chunk_size = min(max(chunk_size, MIN_CHUNK), MAX_CHUNK)
        info = self._blobs.info(repo_id, oid)
        start, end = request.start_offset, request.end_offset or info.size
        if start < 0 or end < 0 or start > end or end > info.size:
            raise OutOfRange(
                f"range [start_offset={request.start_offset}, end_offset={request.end_offset}) "
                f"is outside the blob of {info.size} bytes"
            )
        total = end - start
        count = max(1, -(-total // chunk_size))
        stream_id = uuid.uuid4().hex
        checksum = await self._range_sha256(repo_id, oid, info, start, end)

        yield _response(
            "metadata",
            StreamMetadata(
                stream_id=stream_id,
                total_size=total,
                chunk_count=count,
                content_type=CONTENT_TYPE,
                checksum=checksum,
            ),
        )
        began = time.perf_counter()
        sent = 0
        sequence = 0
        async for data in self._chunks(repo_id, oid, info, start, end, chunk_size):
            last = sequence == count - 1
            yield _response(
                "chunk",
                StreamChunk(
                    stream_id=stream_id,
                    sequence_num=sequence,
                    data=data,
                    checksum=hashlib.sha256(data).hexdigest(),
                    is_last=last,
                ),
            )
            sent += len(data)
            if sequence % PROGRESS_EVERY == 0 or last:
                elapsed = max(time.perf_counter() - began, 1e-9)
                yield _response(
                    "progress",
                    StreamProgress(
                        stream_id=stream_id,
                        bytes_streamed=sent,
                        total_bytes=total,
                        chunks_streamed=sequence + 1,
                        total_chunks=count,
                        transfer_rate_mbps=sent / elapsed / 1e6,
                        status="completed" if last else "streaming",
                    ),
                )
            sequence += 1

    async def _pieces(
        self, repo_id: str, oid: bytes, info: ObjectInfo, start: int, end: int
    ) -> AsyncIterator[bytes]:
        """The bytes of [start, end) in storage pieces, each read off the loop when big."""
        if self._blobs.piece_count(info) == 1:
            content = (
                await self._access.run(self._blobs.read_piece, repo_id, oid, 0)
                if info.size > 256 * 1024
                else self._blobs.read_piece(repo_id, oid, 0)
            )
            yield content[start:end]
            return
        for index in range(start // CHUNK_SIZE, -(-end // CHUNK_SIZE)):
            piece = await self._access.run(self._blobs.read_piece, repo_id, oid, index)
            if index % RELEASE_EVERY_PIECES == RELEASE_EVERY_PIECES - 1:
                await self._access.run(self._blobs.release_read_pages)
            base = index * CHUNK_SIZE
            yield piece[max(start - base, 0) : end - base]

    async def _chunks(
        self, repo_id: str, oid: bytes, info: ObjectInfo, start: int, end: int, size: int
    ) -> AsyncIterator[bytes]:
        if start == end:
            yield b""  # an empty range is one empty last chunk
            return
        carry = b""
        async for piece in self._pieces(repo_id, oid, info, start, end):
            view = memoryview(carry + piece) if carry else memoryview(piece)
            offset = 0
            while len(view) - offset >= size:
                yield bytes(view[offset : offset + size])
                offset += size
            carry = bytes(view[offset:])
        if carry:
            yield carry

    async def _range_sha256(
        self, repo_id: str, oid: bytes, info: ObjectInfo, start: int, end: int
    ) -> str:
        """SHA-256 of the range; the whole blob's is remembered, so a blob is read twice (once
        to hash, once to send) only on its first full download."""
        whole = start == 0 and end == info.size
        if whole and (known := self._blobs.sha256(repo_id, oid)) is not None:
            return known.hex()
        digest = hashlib.sha256()
        async for piece in self._pieces(repo_id, oid, info, start, end):
            digest.update(piece)
        if whole and info.size > CHUNK_SIZE:
            self._blobs.remember_sha256(repo_id, oid, digest.digest())  # no need to wait
        return digest.hexdigest()

    # ---- upload ----

    async def upload_blob_stream(
        self, messages: AsyncIterator[UploadBlobStreamRequest]
    ) -> UploadBlobStreamResponse:
        first = await anext(messages, None)
        if first is None:
            raise InvalidArgument("UploadBlobStream received no messages")
        repo_id = validate_repo_id(first.repository_id, "repository_id")
        kind, metadata = betterproto2.which_one_of(first, "request")
        if kind != "metadata" or metadata is None:
            raise InvalidArgument("the first UploadBlobStream message must carry metadata")
        declared = metadata.total_size
        if declared < 0:
            raise InvalidArgument(f"metadata.total_size must not be negative, got {declared}")
        if declared > self._max_upload_bytes:
            raise ResourceExhausted(
                f"metadata.total_size {declared} is over the upload limit of "
                f"{self._max_upload_bytes} bytes"
            )
        sink = await self._access.run(self._blobs.upload, repo_id, declared)
        worker = ThreadPoolExecutor(1, thread_name_prefix="govc-upload")
        try:
            chunks = await self._receive(messages, sink, worker, declared)
            if declared > 0 and sink.size != declared:
                raise InvalidArgument(
                    f"received {sink.size} bytes but metadata.total_size is {declared}"
                )
            loop = asyncio.get_running_loop()
            blob_hash, info, checksum = await loop.run_in_executor(worker, sink.finish)
            return UploadBlobStreamResponse(
                hash=blob_hash, size=info.size, chunks_received=chunks, checksum=checksum
            )
        except BaseException:
            # Also when the call is cancelled (the client went away): the removal runs to the
            # end in the worker even if this wait is interrupted.
            abort = asyncio.get_running_loop().run_in_executor(worker, sink.abort)
            with contextlib.suppress(BaseException):
                await asyncio.shield(abort)
            raise
        finally:
            worker.shutdown(wait=False)

    async def _receive(
        self,
        messages: AsyncIterator[UploadBlobStreamRequest],
        sink: UploadSink,
        worker: ThreadPoolExecutor,
        declared: int,
    ) -> int:
        """Check every chunk's order, the declared size and the cap here; hand the data to
        `worker`, which checks checksums and writes it to `sink`. Returns the number of
        chunks."""
        loop = asyncio.get_running_loop()
        handoffs: deque[asyncio.Future[None]] = deque()
        batch: list[tuple[int, bytes, str]] = []
        batched = received = chunks = 0

        async def settle(keep: int) -> None:
            while len(handoffs) > keep:
                await handoffs.popleft()

        def hand_off() -> None:
            nonlocal batch, batched
            handoffs.append(loop.run_in_executor(worker, _write_checked, sink, batch))
            batch, batched = [], 0

        try:
            async for message in messages:
                kind, chunk = betterproto2.which_one_of(message, "request")
                if kind != "chunk" or chunk is None:
                    raise InvalidArgument("after metadata, every message must carry a chunk")
                if chunk.sequence_num != chunks:
                    problem = "repeated" if chunk.sequence_num < chunks else "a gap before it"
                    raise InvalidArgument(
                        f"chunk sequence_num {chunk.sequence_num} is {problem}: expected {chunks}"
                    )
                received += len(chunk.data)
                if 0 < declared < received:
                    raise InvalidArgument(
                        f"received more than metadata.total_size ({declared} bytes)"
                    )
                if received > self._max_upload_bytes:
                    raise ResourceExhausted(
                        f"upload is over the limit of {self._max_upload_bytes} bytes"
                    )
                batch.append((chunks, chunk.data, chunk.checksum))
                batched += len(chunk.data)
                chunks += 1
                if batched >= HANDOFF_BYTES:
                    hand_off()
                    await settle(MAX_HANDOFFS_IN_FLIGHT)
            if batch:
                hand_off()
        except BaseException:
            # A problem found in an earlier chunk (a bad checksum) is reported first, whether
            # it is with the worker or still here.
            await settle(0)
            _check_sums(batch)
            raise
        await settle(0)
        return chunks


def _write_checked(sink: UploadSink, batch: list[tuple[int, bytes, str]]) -> None:
    """In the upload's worker thread: verify each chunk's SHA-256, then write it."""
    for chunk in batch:
        _check_sums([chunk])
        sink.write(chunk[1])


def _check_sums(batch: list[tuple[int, bytes, str]]) -> None:
    for sequence, data, checksum in batch:
        if checksum and hashlib.sha256(data).hexdigest() != checksum.lower():
            raise DataLoss(f"chunk {sequence}: checksum does not match its data")
