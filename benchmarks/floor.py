"""The transport floor: the generated govc service on bare grpclib, with no storage behind it.

Same messages, same HTTP/2 transport, same generated (de)serialisation as govc; the handlers do
the least that yields a well-formed answer. Whatever govc costs above this is govc's own.
"""

from collections.abc import AsyncIterator, Iterable

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from benchmarks.payloads import blob_payload, git_blob_id
from generated.govc import (
    GetBlobRequest,
    GetBlobResponse,
    GoVcServiceBase,
    StoreBlobRequest,
    StoreBlobResponse,
    StreamBlobRequest,
    StreamBlobResponse,
    StreamChunk,
    StreamMetadata,
    UploadBlobStreamRequest,
    UploadBlobStreamResponse,
)

# A constant, well-formed blob id: StoreBlob answers with it instead of hashing anything.
FLOOR_BLOB_ID = "0123456789abcdef0123456789abcdef01234567"


class FloorService(GoVcServiceBase):
    """StoreBlob echoes a constant id; GetBlob returns a payload preallocated at start-up."""

    def __init__(self, payload_sizes: Iterable[int]) -> None:
        self._blobs: dict[str, bytes] = {}
        for size in payload_sizes:
            content = blob_payload(size)
            self._blobs[git_blob_id(content)] = content

    async def store_blob(self, message: StoreBlobRequest) -> StoreBlobResponse:
        return StoreBlobResponse(hash=FLOOR_BLOB_ID, size=len(message.content))

    async def get_blob(self, message: GetBlobRequest) -> GetBlobResponse:
        content = self._blobs.get(message.hash)
        if content is None:
            raise GRPCError(Status.NOT_FOUND, f"the floor has no payload {message.hash}")
        return GetBlobResponse(content=content, hash=message.hash, size=len(content))

    async def stream_blob(
        self, messages: AsyncIterator[StreamBlobRequest]
    ) -> AsyncIterator[StreamBlobResponse]:
        """The blob's bytes as metadata then chunks, in the same messages govc sends."""
        request = await anext(messages)
        content = self._blobs.get(request.hash)
        if content is None:
            raise GRPCError(Status.NOT_FOUND, f"the floor has no payload {request.hash}")
        size = request.chunk_size or 65536
        count = max(1, -(-len(content) // size))
        yield StreamBlobResponse(
            metadata=StreamMetadata(stream_id="floor", total_size=len(content), chunk_count=count)
        )
        view = memoryview(content)
        for n in range(count):
            data = bytes(view[n * size : (n + 1) * size])
            yield StreamBlobResponse(
                chunk=StreamChunk(
                    stream_id="floor", sequence_num=n, data=data, is_last=n == count - 1
                )
            )

    async def upload_blob_stream(
        self, messages: AsyncIterator[UploadBlobStreamRequest]
    ) -> UploadBlobStreamResponse:
        """Receives every message and keeps nothing."""
        size = chunks = 0
        async for message in messages:
            if message.chunk is not None:
                size += len(message.chunk.data)
                chunks += 1
        return UploadBlobStreamResponse(hash=FLOOR_BLOB_ID, size=size, chunks_received=chunks)
