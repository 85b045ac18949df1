"""Durability: what the server acknowledged survives SIGKILL of `govc serve`.

These servers run with `--durability durable` (the server's default), named explicitly: test
servers are otherwise relaxed (no fsync).

Writes are acknowledged only after the group commit that holds them; the process is killed
with no delay after the last acknowledgement, restarted on the same data dir, and every
acknowledged write must read back identical.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from govc.client import GovcClient
from govc.storage import Storage, StorageConfig
from tests.polling import poll_until
from tests.serverproc import ServerProcess

REPO = "durable"
BLOB_COUNT = 200
CONNECTIONS = 4
CONCURRENCY = 32
CHUNK_SIZE = 1024 * 1024  # the storage chunk size: blobs above it are stored in chunks


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass(frozen=True)
class Blob:
    content: bytes
    with_delta: bool  # StoreBlobWithDelta (compressed, maybe a delta) rather than StoreBlob
    use_compression: bool = True
    is_edit: bool = False  # a small edit of a text stored earlier: a delta candidate


def make_blobs(rng: random.Random) -> list[Blob]:
    """Varied sizes and encodings: empty, tiny, text versions (delta candidates), random data
    that does not compress, medium blobs stored off the loop, and several chunked ones."""
    text = "".join(f"line {i}: {rng.random():.12f}\n" for i in range(2000)).encode()
    large_sizes = [CHUNK_SIZE + 1, CHUNK_SIZE * 3 // 2, 2 * CHUNK_SIZE + 7]
    medium_sizes = [100_000, 257 * 1024, 600_000, CHUNK_SIZE - 1]
    blobs = [Blob(b"", with_delta=False), Blob(b"hello\n", with_delta=False)]
    blobs += [
        Blob(rng.randbytes(size), with_delta=i % 2 == 0) for i, size in enumerate(large_sizes)
    ]
    blobs += [
        Blob(rng.randbytes(size), with_delta=i % 2 == 1) for i, size in enumerate(medium_sizes)
    ]
    i = 0
    while len(blobs) < BLOB_COUNT:
        kind = i % 4
        if kind == 0:  # a small edit of a shared text: a good delta candidate
            at = rng.randrange(len(text))
            content = text[:at] + f"edit {i}\n".encode() + text[at:]
            blobs.append(Blob(content, with_delta=True, is_edit=True))
        elif kind == 1:
            blobs.append(Blob(rng.randbytes(rng.randrange(1, 8192)), with_delta=False))
        elif kind == 2:
            content = f"blob {i}\n".encode() * rng.randrange(1, 2000)
            blobs.append(Blob(content, with_delta=True, use_compression=i % 3 != 0))
        else:
            blobs.append(Blob(rng.randbytes(rng.randrange(8192, 70_000)), with_delta=True))
        i += 1
    assert len({git_blob_id(b.content) for b in blobs}) == len(blobs), "blobs must be distinct"
    assert sum(len(b.content) > CHUNK_SIZE for b in blobs) >= 3
    return blobs


async def store_all(target: str, blobs: list[Blob]) -> tuple[dict[str, bytes], list[float]]:
    """Store concurrently over several connections.

    Returns the acknowledged hash -> content, and the compression ratios StoreBlobWithDelta
    reported for the text edits.
    """
    edit_ratios: list[float] = []
    clients = [GovcClient(target, timeout=60) for _ in range(CONNECTIONS)]
    try:
        await clients[0].create_repository(REPO)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def store(n: int, blob: Blob) -> tuple[str, bytes]:
            client = clients[n % CONNECTIONS]
            async with gate:
                if blob.with_delta:
                    response = await client.store_blob_with_delta(
                        REPO, blob.content, use_compression=blob.use_compression
                    )
                    assert response.size == len(blob.content)
                    if blob.is_edit:
                        edit_ratios.append(response.compression_ratio)
                    acked = response.hash
                else:
                    stored = await client.store_blob(REPO, blob.content)
                    assert stored.size == len(blob.content)
                    acked = stored.hash
            return acked, blob.content

        results = await asyncio.gather(*(store(n, blob) for n, blob in enumerate(blobs)))
        return dict(results), edit_ratios
    finally:
        for client in clients:
            client.close()


async def writes_committed(client: GovcClient) -> int:
    """Write operations the server's storage has committed (durably) since it started."""
    return int((await client.health()).checks["writer_operations"])


async def writes_committed_since(client: GovcClient, before: int) -> bool:
    return await writes_committed(client) > before


async def test_acknowledged_blobs_survive_sigkill(tmp_path: Path) -> None:
    blobs = make_blobs(random.Random(20261128))
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir, durability="durable") as first:
        acknowledged, edit_ratios = await store_all(first.target, blobs)
        first.kill()  # no await between the last acknowledgement and the kill
        assert first.wait(10) == -signal.SIGKILL
    assert len(acknowledged) == BLOB_COUNT
    # Some blobs were stored as deltas against others, so reading them needs their bases.
    # Plain zstd of such a text is far above 5%: these were stored as deltas against others,
    # so reading them back after the restart needs their bases too.
    assert sum(r < 0.05 for r in edit_ratios) >= 10, sorted(edit_ratios)
    for blob_hash, content in acknowledged.items():
        assert blob_hash == git_blob_id(content)

    with ServerProcess(data_dir, durability="durable") as second:
        async with GovcClient(second.target, timeout=30) as client:
            missing, different = [], []
            for blob_hash, content in acknowledged.items():
                try:
                    got = await client.get_blob(REPO, blob_hash)
                except Exception as exc:
                    missing.append((blob_hash, len(content), str(exc)))
                    continue
                if got.content != content or got.hash != blob_hash or got.size != len(content):
                    different.append((blob_hash, len(content), len(got.content)))
            assert not missing, f"acknowledged blobs lost after SIGKILL: {missing[:5]}"
            assert not different, f"blobs read back different after SIGKILL: {different[:5]}"
            # Delta-stored blobs also decode through GetBlobWithDelta.
            sample = [b for b in blobs if b.with_delta][:20]
            for blob in sample:
                got_delta = await client.get_blob_with_delta(REPO, git_blob_id(blob.content))
                assert got_delta.content == blob.content


async def test_acknowledged_repositories_survive_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    wanted = {
        f"repo-{n}": {"name": f"Repository {n}", "description": f"number {n}", "n": str(n)}
        for n in range(20)
    }
    with ServerProcess(data_dir, durability="durable") as first:
        async with GovcClient(first.target, timeout=30) as client:
            created = await asyncio.gather(
                *(
                    client.create_repository(
                        repo_id,
                        name=fields["name"],
                        description=fields["description"],
                        metadata={"n": fields["n"]},
                    )
                    for repo_id, fields in wanted.items()
                )
            )
            first.kill()
        assert first.wait(10) == -signal.SIGKILL
    created_at = {c.id: c.created_at for c in created}
    assert set(created_at) == set(wanted)

    with ServerProcess(data_dir, durability="durable") as second:
        async with GovcClient(second.target, timeout=30) as client:
            for repo_id, fields in wanted.items():
                repo = await client.get_repository(repo_id)
                assert repo.id == repo_id
                assert repo.name == fields["name"]
                assert repo.description == fields["description"]
                assert dict(repo.metadata) == {"n": fields["n"]}
                assert repo.created_at == created_at[repo_id]
            listed = await client.list_repositories()
            assert listed.total == len(wanted)
            assert {r.id for r in listed.repositories} == set(wanted)


async def test_an_upload_cut_by_sigkill_leaves_no_chunks_after_restart(tmp_path: Path) -> None:
    """Chunks an unfinished upload committed are found by their marker and removed at start."""
    data_dir = tmp_path / "data"
    content = random.Random(7).randbytes(20 * CHUNK_SIZE)  # 16 MiB commit while it arrives
    with ServerProcess(data_dir, durability="durable") as first:
        async with GovcClient(first.target, timeout=30) as client:
            await client.create_repository(REPO)
            committed_before = await writes_committed(client)
            sent = asyncio.Event()

            async def stalls() -> AsyncIterator[bytes]:
                for start in range(0, len(content), CHUNK_SIZE):
                    yield content[start : start + CHUNK_SIZE]
                sent.set()
                await asyncio.Event().wait()
                yield b""

            upload = asyncio.create_task(client.upload(REPO, stalls(), chunk_size=CHUNK_SIZE))
            await asyncio.wait_for(sent.wait(), 30)
            # The server commits the first 16 MiB of chunks (one write transaction, under an
            # upload marker) while the rest is held back: GetHealth counts committed writes.
            await poll_until(
                lambda: writes_committed_since(client, committed_before),
                message="the server never committed the upload's first 16 MiB of chunks",
            )
            first.kill()
            assert first.wait(10) == -signal.SIGKILL
            upload.cancel()
    storage = Storage(StorageConfig(path=str(data_dir)))
    try:
        with storage.read() as txn:
            assert txn.objects.unfinished_uploads(), "nothing was committed"
        assert storage.stats()["chunks"] >= 16
    finally:
        storage.close()
    with ServerProcess(data_dir, durability="durable") as second:
        async with GovcClient(second.target, timeout=30) as client:
            listed = await client.list_repositories()
            assert [r.id for r in listed.repositories] == [REPO]
    storage = Storage(StorageConfig(path=str(data_dir)))
    try:
        with storage.read() as txn:
            assert txn.objects.unfinished_uploads() == []
        assert storage.stats()["chunks"] == 0
    finally:
        storage.close()
