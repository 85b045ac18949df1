"""The transport floor: the generated govc service on bare grpclib, with no storage behind it.

Same messages, same HTTP/2 transport, same generated (de)serialisation as govc; the handlers do
the least that yields a well-formed answer. Whatever govc costs above this is govc's own.
"""

from collections.abc import Iterable

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from benchmarks.payloads import blob_payload, git_blob_id
from generated.govc import (
    GetBlobRequest,
    GetBlobResponse,
    GoVcServiceBase,
    StoreBlobRequest,
    StoreBlobResponse,
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
