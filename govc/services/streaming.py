"""StreamBlob and UploadBlobStream: big blobs in chunks, each with its SHA-256.

Downloads read the blob piece by piece (one storage chunk at a time, each in a short read
transaction) and yield one message at a time, so HTTP/2 flow control paces the server to the
reader. Uploads are checked on the loop (order, size) and handed on, a MiB at a time, to one
worker thread that verifies checksums, hashes and writes chunks into storage while the rest is
still arriving (`govc.core.blobs.UploadSink`); the blob becomes visible only when it is whole and
checked, and a failed upload removes what it wrote.

A stalled peer costs little and not for long. A download sends its messages itself (through the
grpclib stream, when it has one) one at a time, reading at most one storage piece ahead, so a
reader that stops holds about three copies of one chunk (ours, the encoded message, the framed
message); a send that makes no progress for `stall_seconds` (the HTTP/2 window stays shut) ends
the call with DEADLINE_EXCEEDED. An upload that receives nothing for `stall_seconds` is aborted
(its staged chunks removed, its worker thread gone). However a call ends, the frames of its
exception's traceback are cleared: grpclib keeps a finished call's task (and so its exception)
until later calls on the connection sweep it, and those frames would keep the chunks alive. At
most `max_uploads` uploads run at once; more get RESOURCE_EXHAUSTED.
"""

import asyncio
import contextlib
import ctypes
import ctypes.util
import hashlib
import time
import traceback
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar, cast

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
from govc.errors import (
    DataLoss,
    DeadlineExceeded,
    InvalidArgument,
    OutOfRange,
    ResourceExhausted,
)
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
# A stream whose peer neither reads nor sends for this long is ended (ServerConfig may override).
DEFAULT_STALL_SECONDS = 30.0
DEFAULT_MAX_UPLOADS = 64  # uploads in progress at once, server-wide

T = TypeVar("T")
TRIM_DELAY = 0.25  # after a stream ends early, give the C heap back this much later (once)


def _response(field: str, value: object) -> StreamBlobResponse:
    return set_one_of(StreamBlobResponse(), field, value)


class _SendingStream(Protocol):
    """What a door's server stream offers: sending one message (grpclib's `Stream`; its
    HTTP/2 stream's `data_sent` counter, when present, is how a stalled send is noticed)."""

    async def send_message(self, message: StreamBlobResponse) -> None: ...


class StreamingService:
    def __init__(
        self,
        access: Access,
        blobs: Blobs,
        max_upload_bytes: int,
        *,
        stall_seconds: float | None = DEFAULT_STALL_SECONDS,
        max_uploads: int = DEFAULT_MAX_UPLOADS,
    ) -> None:
        """`stall_seconds`: how long a stream may make no progress (None or 0: forever);
        `max_uploads`: how many UploadBlobStream calls may run at once."""
        self._access = access
        self._blobs = blobs
        self._max_upload_bytes = max_upload_bytes
        self.stall_seconds = stall_seconds or None
        self.max_uploads = max_uploads
        self._uploads = 0  # in progress
        # Chunks of uploads a crash interrupted are garbage: no blob names them.
        blobs.discard_unfinished_uploads()

    # ---- download ----

    async def stream_blob(
        self, messages: AsyncIterator[StreamBlobRequest]
    ) -> AsyncIterator[StreamBlobResponse]:
        """Through grpclib (`messages` is the call's stream) the responses are sent here, each
        send watched for progress, and nothing is yielded; otherwise they are yielded."""
        # Duck-typed, so this layer imports no transport: a door's stream that can send.
        stream = cast(_SendingStream, messages) if hasattr(messages, "send_message") else None
        try:
            async for response in self._stream_blob(messages):
                if stream is None:
                    yield response
                else:
                    await self._send(stream, response)
                response = None  # type: ignore[assignment]  # not kept while reading on
        except BaseException as exc:
            # What the call's frames held goes now, not when grpclib sweeps the task.
            response = None
            _clear_frames(exc)
            _trim_heap_soon()
            raise

    async def _send(self, stream: "_SendingStream", message: StreamBlobResponse) -> None:
        """Send one message; DeadlineExceeded if it makes no progress for `stall_seconds`."""
        if self.stall_seconds is None:
            await stream.send_message(message)
            return
        task = asyncio.current_task()
        assert task is not None
        h2_stream = getattr(stream, "_stream", None)
        watch = _StallWatch(
            self.stall_seconds, lambda: getattr(h2_stream, "data_sent", None), task.cancel
        )
        try:
            await stream.send_message(message)
        except asyncio.CancelledError:
            if watch.fired and task.uncancel() == 0:
                raise DeadlineExceeded(
                    f"StreamBlob: the client read nothing for {self.stall_seconds:g} s"
                ) from None
            raise
        finally:
            watch.stop()

    async def _stream_blob(
        self, messages: AsyncIterator[StreamBlobRequest]
    ) -> AsyncIterator[StreamBlobResponse]:
        request = await self._next(messages, "StreamBlob")
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
            size = len(data)
            chunk = StreamChunk(
                stream_id=stream_id,
                sequence_num=sequence,
                data=data,
                checksum=hashlib.sha256(data).hexdigest(),
                is_last=last,
            )
            data = b""  # the message holds the only reference
            yield _response("chunk", chunk)
            chunk = None  # type: ignore[assignment]
            sent += size
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

    async def _next(self, messages: AsyncIterator[T], rpc: str) -> T | None:
        """The next message, or None at the end; DeadlineExceeded when none comes for
        `stall_seconds`."""
        try:
            async with asyncio.timeout(self.stall_seconds):
                return await anext(messages, None)
        except TimeoutError:
            raise DeadlineExceeded(
                f"{rpc}: the client sent nothing for {self.stall_seconds:g} s"
            ) from None

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
        """Chunks of `size` bytes, read at most one storage piece ahead."""
        if start == end:
            yield b""  # an empty range is one empty last chunk
            return
        pending: deque[memoryview] = deque()  # the unsent rest of the pieces read
        held = 0
        async for piece in self._pieces(repo_id, oid, info, start, end):
            pending.append(memoryview(piece))
            held += len(piece)
            piece = b""
            while held >= size:
                held -= size
                yield _take(pending, size)
        if held:
            yield _take(pending, held)

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
        if self._uploads >= self.max_uploads:
            raise ResourceExhausted(
                f"{self._uploads} uploads are in progress, the most this server takes at once; "
                "retry later"
            )
        self._uploads += 1
        try:
            return await self._upload(messages)
        except BaseException as exc:
            _clear_frames(exc)
            _trim_heap_soon()
            raise
        finally:
            self._uploads -= 1

    async def _upload(
        self, messages: AsyncIterator[UploadBlobStreamRequest]
    ) -> UploadBlobStreamResponse:
        first = await self._next(messages, "UploadBlobStream")
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
            while (message := await self._next(messages, "UploadBlobStream")) is not None:
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
            unsent, batch = batch, []
            _check_sums(unsent)
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


class _StallWatch:
    """Calls `on_stall` once `progress()` has not changed for `seconds` (checked every
    `seconds`), unless stopped first."""

    def __init__(
        self, seconds: float, progress: Callable[[], object], on_stall: Callable[[], object]
    ) -> None:
        self.fired = False
        self._seconds = seconds
        self._progress = progress
        self._on_stall = on_stall
        self._mark = progress()
        self._handle = asyncio.get_running_loop().call_later(seconds, self._check)

    def _check(self) -> None:
        now = self._progress()
        if now is not None and now != self._mark:
            self._mark = now
            self._handle = asyncio.get_running_loop().call_later(self._seconds, self._check)
            return
        self.fired = True
        self._on_stall()

    def stop(self) -> None:
        self._handle.cancel()


def _take(pending: deque[memoryview], size: int) -> bytes:
    """The first `size` bytes of `pending`, removed from it (one copy)."""
    head = pending[0]
    if len(head) >= size:
        out = bytes(head[:size])
        if len(head) == size:
            pending.popleft()
        else:
            pending[0] = head[size:]
        return out
    parts = []
    while size:
        head = pending[0]
        if len(head) <= size:
            parts.append(pending.popleft())
            size -= len(head)
        else:
            parts.append(head[:size])
            pending[0] = head[size:]
            size = 0
    return b"".join(parts)


def _clear_frames(exc: BaseException) -> None:
    """Drop the locals of the finished frames in `exc`'s tracebacks (and its causes' and
    contexts'), so an exception kept by grpclib does not keep a call's data alive."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)
        todo += [current.__cause__, current.__context__]


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


_malloc_trim = _load_malloc_trim()
_trim_pending = False


def _trim_heap_soon() -> None:
    """Ask the C heap to return its free pages to the system, once, shortly (coalescing the
    ends of many streams): chunks freed by ended streams otherwise stay in the process's
    resident set (glibc keeps freed multi-MiB blocks in its heaps)."""
    global _trim_pending
    if _malloc_trim is None or _trim_pending:
        return
    _trim_pending = True

    def trim() -> None:
        global _trim_pending
        _trim_pending = False
        assert _malloc_trim is not None
        _malloc_trim(0)

    asyncio.get_running_loop().call_later(TRIM_DELAY, trim)
