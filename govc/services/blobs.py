"""Blob RPCs: StoreBlob, GetBlob, StoreBlobWithDelta, GetBlobWithDelta."""

from generated.govc import (
    GetBlobRequest,
    GetBlobResponse,
    GetBlobWithDeltaRequest,
    GetBlobWithDeltaResponse,
    StoreBlobRequest,
    StoreBlobResponse,
    StoreBlobWithDeltaRequest,
    StoreBlobWithDeltaResponse,
)
from govc.core.blobs import Blobs
from govc.core.gitformat import validate_object_id
from govc.core.objects import ObjectInfo, PreparedObject
from govc.core.validation import validate_repo_id
from govc.errors import ResourceExhausted
from govc.services.access import Access

# Above this size, hashing, compressing and decoding run in the work pool, not on the loop.
OFFLOAD_BYTES = 256 * 1024


async def prepare_blob(access: Access, content: bytes) -> PreparedObject:
    """`content` hashed and encoded: on the loop when small, in the work pool when big."""
    if len(content) > OFFLOAD_BYTES:
        return await access.run(Blobs.prepare, content)
    return Blobs.prepare(content)


class BlobService:
    def __init__(self, access: Access, blobs: Blobs, max_message_bytes: int) -> None:
        self._access = access
        self._blobs = blobs
        self._max_message_bytes = max_message_bytes

    async def store_blob(self, message: StoreBlobRequest) -> StoreBlobResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        content = message.content
        blob: bytes | PreparedObject = content
        if len(content) > OFFLOAD_BYTES:  # small ones are prepared by the writer thread
            blob = await prepare_blob(self._access, content)
        blob_hash, info = await self._access.durable(self._blobs.store(repo_id, blob))
        return StoreBlobResponse(hash=blob_hash, size=info.size)

    async def get_blob(self, message: GetBlobRequest) -> GetBlobResponse:
        content, info, hex_id = await self._read(message.repository_id, message.hash)
        return GetBlobResponse(content=content, hash=hex_id, size=info.size)

    async def store_blob_with_delta(
        self, message: StoreBlobWithDeltaRequest
    ) -> StoreBlobWithDeltaResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        content = message.content
        compress = message.use_compression
        # Reads a few delta bases and compresses against them: the work pool.
        prepared = await self._access.run(
            self._blobs.prepare_with_delta, repo_id, content, compress
        )
        info = await self._access.durable(self._blobs.store_delta_candidate(repo_id, prepared))
        return StoreBlobWithDeltaResponse(
            hash=prepared.hex,
            size=info.size,
            compressed_size=info.stored_size,
            compression_ratio=info.stored_size / info.size if info.size else 0.0,
        )

    async def get_blob_with_delta(
        self, message: GetBlobWithDeltaRequest
    ) -> GetBlobWithDeltaResponse:
        content, info, hex_id = await self._read(message.repository_id, message.hash)
        return GetBlobWithDeltaResponse(
            content=content,
            hash=hex_id,
            size=info.size,
            compressed_size=info.stored_size,
            was_compressed=info.compressed,
        )

    async def _read(self, repository_id: str, hash_: str) -> tuple[bytes, ObjectInfo, str]:
        repo_id = validate_repo_id(repository_id, "repository_id")
        oid = validate_object_id(hash_, "hash")
        info, inline = self._blobs.read_if_small(repo_id, oid, OFFLOAD_BYTES)
        if info.size > self._max_message_bytes:
            raise ResourceExhausted(
                f"blob {hash_} is {info.size} bytes, over the {self._max_message_bytes}-byte "
                "message limit; read it with StreamBlob"
            )
        if inline is not None:
            return inline, info, hash_
        content, info = await self._access.run(self._blobs.read, repo_id, oid)
        return content, info, hash_
