"""StoreBlob and GetBlob at 1 KiB and 1 MiB, govc against the floor.

StoreBlob sends distinct content on every call (a random tag of the run plus the call's sequence
number over the reference payload), so govc's deduplication never short-circuits a write; the
floor receives the same bytes. GetBlob reads the reference payload, stored in govc beforehand and
preallocated by the floor.
"""

from collections.abc import Callable
from dataclasses import dataclass
from os import urandom

from benchmarks.harness import Call, Case, Clients, Unit
from benchmarks.payloads import KIB, MIB, blob_payload, git_blob_id, human_size
from generated.govc import GetBlobRequest, StoreBlobRequest

REPOSITORY = "bench-blobs"
_TAG_BYTES = 8
_SEQ_BYTES = 8


@dataclass(frozen=True)
class Shape:
    size: int
    unit: Unit
    concurrency: int  # calls in flight in the throughput phase
    latency_calls: int  # sequential calls in the latency phase
    store_bar: float | None  # minimum govc/floor StoreBlob throughput ratio
    get_bar: float | None = None


SHAPES = (
    Shape(KIB, "calls/s", concurrency=32, latency_calls=300, store_bar=0.8),
    Shape(MIB, "MB/s", concurrency=4, latency_calls=40, store_bar=0.7),
)


def floor_payload_sizes() -> list[int]:
    return [shape.size for shape in SHAPES]


def distinct_content(size: int) -> Callable[[int], bytes]:
    """Content number n of `size` bytes: tag of this run + n + the reference payload's tail."""
    tail = memoryview(blob_payload(size))[_TAG_BYTES + _SEQ_BYTES :]
    tag = urandom(_TAG_BYTES)

    def content(n: int) -> bytes:
        return b"".join((tag, n.to_bytes(_SEQ_BYTES, "big"), tail))

    return content


def _store_calls(clients: Clients, size: int) -> dict[str, Call]:
    content = distinct_content(size)
    stub, govc, timeout = clients.floor, clients.govc, clients.call_timeout

    async def floor(n: int) -> int:
        data = content(n)
        request = StoreBlobRequest(repository_id=REPOSITORY, content=data)
        await stub.store_blob(request, timeout=timeout)
        return len(data)

    async def govc_(n: int) -> int:
        data = content(n)
        await govc.store_blob(REPOSITORY, data)
        return len(data)

    return {"floor": floor, "govc": govc_}


def _get_calls(clients: Clients, blob_id: str) -> dict[str, Call]:
    stub, govc, timeout = clients.floor, clients.govc, clients.call_timeout
    request = GetBlobRequest(repository_id=REPOSITORY, hash=blob_id)

    async def floor(_: int) -> int:
        response = await stub.get_blob(request, timeout=timeout)
        return len(response.content)

    async def govc_(_: int) -> int:
        response = await govc.get_blob(REPOSITORY, blob_id)
        return len(response.content)

    return {"floor": floor, "govc": govc_}


async def _check(clients: Clients, size: int) -> str:
    """Store the reference payload in govc; check both servers return it intact."""
    content = blob_payload(size)
    blob_id = git_blob_id(content)
    stored = await clients.govc.store_blob(REPOSITORY, content)
    if stored.hash != blob_id or stored.size != size:
        raise RuntimeError(f"govc stored {stored.hash}/{stored.size}, expected {blob_id}/{size}")
    request = GetBlobRequest(repository_id=REPOSITORY, hash=blob_id)
    from_floor = await clients.floor.get_blob(request, timeout=clients.call_timeout)
    from_govc = await clients.govc.get_blob(REPOSITORY, blob_id)
    for name, response in (("floor", from_floor), ("govc", from_govc)):
        if response.content != content:
            raise RuntimeError(f"{name} returned different content for blob {blob_id}")
    return blob_id


async def cases(clients: Clients) -> list[Case]:
    await clients.govc.create_repository(REPOSITORY)
    store: list[Case] = []
    get: list[Case] = []
    for shape in SHAPES:
        label = human_size(shape.size)
        blob_id = await _check(clients, shape.size)
        store.append(
            Case(
                f"StoreBlob {label}",
                shape.unit,
                shape.concurrency,
                shape.latency_calls,
                _store_calls(clients, shape.size),
                shape.store_bar,
            )
        )
        get.append(
            Case(
                f"GetBlob {label}",
                shape.unit,
                shape.concurrency,
                shape.latency_calls,
                _get_calls(clients, blob_id),
                shape.get_bar,
            )
        )
    return store + get
