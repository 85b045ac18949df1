"""Streaming a 64 MiB blob down and up in 64 KiB chunks, and 64 StoreBlob calls in flight on
one connection, govc against the floor.

Both servers are driven through the raw generated stub with identical requests, so the client
does the same work for each; the floor sends the same messages without reading storage or
computing checksums, and keeps nothing of an upload.
"""

import hashlib
from collections.abc import AsyncIterator
from os import urandom

from benchmarks.blobs import distinct_content
from benchmarks.harness import Call, Case, Clients
from benchmarks.payloads import KIB, MIB, blob_payload, git_blob_id
from generated.govc import (
    StoreBlobRequest,
    StreamBlobRequest,
    StreamChunk,
    UploadBlobStreamRequest,
    UploadMetadata,
)

REPOSITORY = "bench-streams"
BLOB = 64 * MIB
CHUNK = 64 * KIB


def floor_payload_sizes() -> list[int]:
    return [BLOB]


def _download_calls(clients: Clients, blob_id: str) -> dict[str, Call]:
    request = StreamBlobRequest(repository_id=REPOSITORY, hash=blob_id, chunk_size=CHUNK)

    def make(stub_call: object) -> Call:
        async def call(_: int) -> int:
            moved = 0
            async for message in stub_call([request], timeout=clients.call_timeout):  # type: ignore[operator]
                if message.chunk is not None:
                    moved += len(message.chunk.data)
            if moved != BLOB:
                raise RuntimeError(f"streamed {moved} bytes, expected {BLOB}")
            return moved

        return call

    return {
        "floor": make(clients.floor.stream_blob),
        "govc": make(clients.govc.stub.stream_blob),
    }


def _upload_requests(n: int, tag: bytes) -> AsyncIterator[UploadBlobStreamRequest]:
    """A distinct 64 MiB blob per call (so govc never deduplicates), in 64 KiB chunks."""
    payload = memoryview(blob_payload(BLOB))
    head = tag + n.to_bytes(8, "big")

    async def requests() -> AsyncIterator[UploadBlobStreamRequest]:
        yield UploadBlobStreamRequest(
            repository_id=REPOSITORY,
            metadata=UploadMetadata(filename="bench.bin", total_size=BLOB, chunk_size=CHUNK),
        )
        for sequence in range(BLOB // CHUNK):
            data = bytes(payload[sequence * CHUNK : (sequence + 1) * CHUNK])
            if sequence == 0:
                data = head + data[len(head) :]
            yield UploadBlobStreamRequest(
                repository_id=REPOSITORY,
                chunk=StreamChunk(
                    sequence_num=sequence,
                    data=data,
                    checksum=hashlib.sha256(data).hexdigest(),
                    is_last=sequence == BLOB // CHUNK - 1,
                ),
            )

    return requests()


def _upload_calls(clients: Clients) -> dict[str, Call]:
    tag = urandom(8)

    def make(stub_call: object) -> Call:
        async def call(n: int) -> int:
            reply = await stub_call(_upload_requests(n, tag), timeout=clients.call_timeout)  # type: ignore[operator]
            if reply.size != BLOB:
                raise RuntimeError(f"uploaded {reply.size} bytes, expected {BLOB}")
            return BLOB

        return call

    return {
        "floor": make(clients.floor.upload_blob_stream),
        "govc": make(clients.govc.stub.upload_blob_stream),
    }


def _store_calls(clients: Clients) -> dict[str, Call]:
    content = distinct_content(KIB)

    def make(stub_call: object, repository: str) -> Call:
        async def call(n: int) -> int:
            data = content(n)
            request = StoreBlobRequest(repository_id=repository, content=data)
            await stub_call(request, timeout=clients.call_timeout)  # type: ignore[operator]
            return len(data)

        return call

    return {
        "floor": make(clients.floor.store_blob, REPOSITORY),
        "govc": make(clients.govc.stub.store_blob, REPOSITORY),
    }


async def cases(clients: Clients) -> list[Case]:
    await clients.govc.create_repository(REPOSITORY)
    content = blob_payload(BLOB)
    blob_id = git_blob_id(content)
    uploaded = await clients.govc.upload(
        REPOSITORY, _chunks(content), total_size=BLOB, chunk_size=MIB
    )
    if uploaded.hash != blob_id:
        raise RuntimeError(f"govc stored {uploaded.hash}, expected {blob_id}")
    return [
        Case(
            "StreamBlob 64 MiB (64 KiB chunks)",
            "MB/s",
            1,
            2,
            _download_calls(clients, blob_id),
            0.8,
        ),
        Case("UploadBlobStream 64 MiB (64 KiB chunks)", "MB/s", 1, 2, _upload_calls(clients), 0.8),
        Case("StoreBlob 1 KiB, 64 in flight", "calls/s", 64, 50, _store_calls(clients), None),
    ]


async def _chunks(content: bytes) -> AsyncIterator[bytes]:
    view = memoryview(content)
    for offset in range(0, len(content), MIB):
        yield bytes(view[offset : offset + MIB])
