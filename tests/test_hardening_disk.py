"""A full disk: writes fail with RESOURCE_EXHAUSTED "no space left on device", storage health
says `degraded` with the reason, reads and searches keep working, writes resume once space is
freed, and nothing acknowledged before the fault is lost.

Two ways to fill the disk: a real small ext4 filesystem loop-mounted into the test's tmp dir
(root on Linux; skipped with the reason where mounting is not permitted), and an injected
ENOSPC at the storage boundary (the writer's commit of the group's transaction), which runs
everywhere.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import lmdb
import pytest
from grpclib.const import Status

from govc.client import GovcClient, GovcRpcError
from govc.errors import ResourceExhausted, StorageFull, Unavailable
from govc.server import GovcServer
from govc.storage import Storage, StorageConfig, Txn
from govc.storage import writer as writer_module
from govc.storage.objectstore import encode_object
from tests.conftest import server_config

REPO = "disk"
FS_BYTES = 24 << 20
LEAVE_FREE = 3 << 20  # what the filler file leaves for the storage to fill
ENOSPC_TEXT = "mdb_txn_commit: No space left on device"  # what py-lmdb raises (DiskError)


# ---- helpers ----


def _oid(key: bytes) -> bytes:
    return hashlib.sha1(key).digest()


def _put(key: bytes, value: bytes) -> Callable[[Txn], bytes]:
    def op(txn: Txn) -> bytes:
        txn.objects.put_prepared("t", encode_object(_oid(key), "blob", value, compress=False))
        return key

    return op


def _get(storage: Storage, key: bytes) -> bytes | None:
    with storage.read() as txn:
        if txn.objects.info("t", _oid(key)) is None:
            return None
        return txn.objects.read("t", _oid(key))


def _write(storage: Storage, key: bytes, value: bytes) -> None:
    storage.writer.submit(_put(key, value)).result(timeout=30)


def _fail_commits(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> list[int]:
    """Make every group commit fail with `exc` (as LMDB's would: nothing of it is stored)."""
    calls: list[int] = []

    def failing(txn: Any) -> None:
        calls.append(1)
        raise exc

    monkeypatch.setattr(writer_module, "_commit_transaction", failing)
    return calls


def _one_group(storage: Storage, ops: list[Callable[[Txn], Any]]) -> list[Future[Any]]:
    """Submit `ops` so that the writer takes them as one group: it is held busy meanwhile."""
    release = threading.Event()
    held = storage.writer.between(release.wait)
    futures = [storage.writer.submit(op) for op in ops]
    release.set()
    held.result(timeout=10)
    for fut in futures:
        fut.exception(timeout=30)
    return futures


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(StorageConfig(path=str(tmp_path / "db")))
    try:
        yield store
    finally:
        store.close()


# ---- a real small filesystem ----


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB ext4 filesystem mounted at tmp_path/mnt (skipped where that is not allowed)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a loop filesystem needs root on Linux")
    if shutil.which("mkfs.ext4") is None or shutil.which("mount") is None:
        pytest.skip("mkfs.ext4 or mount is not installed")
    image, mount_point = tmp_path / "fs.img", tmp_path / "mnt"
    with open(image, "wb") as f:
        f.truncate(FS_BYTES)
    mount_point.mkdir()
    made = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
    mounted = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"loop mount not permitted here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _filler(mount_point: Path, leave: int = LEAVE_FREE) -> Path:
    """A file taking all the filesystem's space but `leave` bytes."""
    path = mount_point / "filler"
    size = max(0, shutil.disk_usage(mount_point).free - leave)
    with open(path, "wb") as f:
        block = b"\0" * (1 << 20)
        while size > 0:
            size -= f.write(block[: min(size, len(block))])
        f.flush()
        os.fsync(f.fileno())
    return path


def test_real_full_disk_through_storage(small_fs: Path) -> None:
    path = str(small_fs / "db")
    storage = Storage(StorageConfig(path=path, durable=True))
    acknowledged: dict[bytes, bytes] = {}
    try:
        filler = _filler(small_fs)
        error: BaseException | None = None
        for i in range(1000):
            key, value = b"k%04d" % i, os.urandom(64 * 1024)
            try:
                _write(storage, key, value)
            except Exception as exc:
                error = exc
                break
            acknowledged[key] = value
        assert isinstance(error, StorageFull), repr(error)
        assert isinstance(error, ResourceExhausted)
        assert "no space left on device" in error.message
        assert len(acknowledged) > 5

        # Reads still answer; health says degraded, with the reason.
        for key, value in acknowledged.items():
            assert _get(storage, key) == value
        checks = storage.health()
        assert checks["storage_read"] == "ok"
        assert checks["storage_write"].startswith("degraded: "), checks
        assert "no space left on device" in checks["storage_write"]
        assert storage.writer.alive

        # A group that does not fit fails as a whole, and stores nothing.
        big = [_put(b"big%d" % n, os.urandom(256 * 1024)) for n in range(8)]
        for fut in _one_group(storage, big):
            assert isinstance(fut.exception(), StorageFull)
        assert all(_get(storage, b"big%d" % n) is None for n in range(8))

        # Space returns: writes succeed again, health is ok.
        filler.unlink()
        _write(storage, b"after", b"space is back")
        acknowledged[b"after"] = b"space is back"
        assert storage.health()["storage_write"] == "ok"
    finally:
        storage.close()

    reopened = Storage(StorageConfig(path=path, durable=True))
    try:
        for key, value in acknowledged.items():
            assert _get(reopened, key) == value, key
    finally:
        reopened.close()


async def test_real_full_disk_through_server(small_fs: Path) -> None:
    data_dir = small_fs / "data"
    config = server_config(data_dir, durability="durable")
    acknowledged: dict[str, bytes] = {}
    server = GovcServer(config)
    await server.start()
    try:
        async with GovcClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            await client.create_repository(REPO)
            await client.add_file(REPO, "README.md", b"the zebra notes\n")
            await client.commit(REPO, "first", author="t <t@example.com>")
            assert (await client.search(REPO, "zebra")).results
            filler = _filler(small_fs)
            failure: GovcRpcError | None = None
            for i in range(1000):
                content = os.urandom(64 * 1024) + b"%d" % i
                try:
                    stored = await client.store_blob(REPO, content)
                except GovcRpcError as exc:
                    failure = exc
                    break
                acknowledged[stored.hash] = content
            assert failure is not None
            assert failure.status == Status.RESOURCE_EXHAUSTED, failure
            assert "no space left on device" in failure.message

            blob_hash, content = next(iter(acknowledged.items()))
            assert (await client.get_blob(REPO, blob_hash)).content == content
            assert (await client.read_file(REPO, "README.md")).content == b"the zebra notes\n"
            assert (await client.search(REPO, "zebra")).results
            health = await client.health()
            assert health.checks["storage_write"].startswith("degraded: "), health.checks
            assert "no space left on device" in health.checks["storage_write"]

            filler.unlink()
            stored = await client.store_blob(REPO, b"space is back\n")
            acknowledged[stored.hash] = b"space is back\n"
            assert (await client.health()).checks["storage_write"] == "ok"
    finally:
        await server.stop()

    again = GovcServer(config)
    await again.start()
    try:
        async with GovcClient(f"127.0.0.1:{again.port}", timeout=30) as client:
            for blob_hash, content in acknowledged.items():
                assert (await client.get_blob(REPO, blob_hash)).content == content
    finally:
        await again.stop()


# ---- an injected ENOSPC at the storage boundary ----


def test_enospc_fails_the_group_and_writes_resume(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(20):
        _write(storage, b"ok%d" % i, b"value %d" % i)
    calls = _fail_commits(monkeypatch, lmdb.DiskError(ENOSPC_TEXT))

    futures = _one_group(storage, [_put(b"lost%d" % n, b"x") for n in range(10)])
    assert len(calls) == 1, "the ten writes were one group"
    for fut in futures:
        error = fut.exception()
        assert isinstance(error, StorageFull), repr(error)
        assert "no space left on device" in error.message
    checks = storage.health()
    assert checks["storage_write"].startswith("degraded: storage write failed: no space left")
    assert checks["storage_read"] == "ok"
    assert _get(storage, b"ok3") == b"value 3"
    assert storage.writer.alive

    monkeypatch.undo()
    _write(storage, b"after", b"resumed")
    assert storage.health()["storage_write"] == "ok"
    assert all(_get(storage, b"lost%d" % n) is None for n in range(10))


def test_acknowledged_writes_survive_a_restart_after_enospc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = StorageConfig(path=str(tmp_path / "db"), durable=True)
    storage = Storage(config)
    try:
        for i in range(50):
            _write(storage, b"ok%d" % i, b"value %d" % i)
        _fail_commits(monkeypatch, lmdb.DiskError(ENOSPC_TEXT))
        with pytest.raises(StorageFull):
            _write(storage, b"lost", b"x")
    finally:
        monkeypatch.undo()
        storage.close()
    reopened = Storage(config)
    try:
        assert all(_get(reopened, b"ok%d" % i) == b"value %d" % i for i in range(50))
        assert _get(reopened, b"lost") is None
    finally:
        reopened.close()


def test_short_write_eio_on_a_full_disk_is_no_space(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LMDB reports a write cut short by the disk filling up as EIO."""
    _fail_commits(monkeypatch, lmdb.Error("mdb_txn_commit: Input/output error"))
    monkeypatch.setattr(writer_module, "free_bytes", lambda path: 4096)
    with pytest.raises(StorageFull, match="no space left on device"):
        _write(storage, b"k", b"v")
    assert storage.health()["storage_write"].startswith("degraded: ")


def test_eio_with_space_free_stays_an_io_error(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_commits(monkeypatch, lmdb.Error("mdb_txn_commit: Input/output error"))
    monkeypatch.setattr(writer_module, "free_bytes", lambda path: 1 << 40)
    with pytest.raises(Unavailable, match="Input/output error") as raised:
        _write(storage, b"k", b"v")
    assert not isinstance(raised.value, ResourceExhausted)
    assert storage.health()["storage_write"].startswith("failed: ")
    monkeypatch.undo()
    _write(storage, b"k", b"v")
    assert storage.health()["storage_write"] == "ok"


def test_disk_error_while_spilling_fails_the_whole_group(storage: Storage) -> None:
    def spill_fails(txn: Txn) -> None:
        raise lmdb.DiskError("mdb_put: No space left on device")

    futures = _one_group(storage, [_put(b"a", b"1"), spill_fails, _put(b"b", b"2")])
    assert all(isinstance(fut.exception(), StorageFull) for fut in futures)
    assert _get(storage, b"a") is None and _get(storage, b"b") is None
    _write(storage, b"c", b"3")
    assert _get(storage, b"c") == b"3"


def test_map_that_cannot_grow_is_not_a_full_disk(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LMDB map size limit is a different thing: the map grows; if it cannot, the group
    fails with RESOURCE_EXHAUSTED naming the map, and the writer goes on."""

    def map_full(txn: Txn) -> None:
        raise lmdb.MapFullError("mdb_put: MDB_MAP_FULL: Environment mapsize limit reached")

    def cannot_grow() -> None:
        raise lmdb.MemoryError("mdb_env_set_mapsize: Cannot allocate memory")

    monkeypatch.setattr(storage, "grow_map", cannot_grow)
    with pytest.raises(ResourceExhausted, match="storage map is full") as raised:
        storage.writer.submit(map_full).result(timeout=30)
    assert not isinstance(raised.value, StorageFull)
    assert "no space left on device" not in raised.value.message
    _write(storage, b"k", b"v")
    assert storage.writer.alive and storage.health()["storage_write"] == "ok"


def test_writer_survives_an_unexpected_failure(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(batch: Any) -> None:
        raise RuntimeError("bug in the group commit")

    monkeypatch.setattr(storage.writer, "_commit_batch", broken)
    with pytest.raises(Unavailable, match="bug in the group commit"):
        _write(storage, b"k", b"v")
    monkeypatch.undo()
    _write(storage, b"k", b"v")
    assert _get(storage, b"k") == b"v"


async def test_enospc_through_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = server_config(tmp_path / "data", durability="durable")
    acknowledged: dict[str, bytes] = {}
    server = GovcServer(config)
    await server.start()
    try:
        async with GovcClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            await client.create_repository(REPO)
            await client.add_file(REPO, "notes.txt", b"the zebra notes\n")
            await client.commit(REPO, "first", author="t <t@example.com>")
            for i in range(10):
                stored = await client.store_blob(REPO, b"blob %d\n" % i)
                acknowledged[stored.hash] = b"blob %d\n" % i
            assert (await client.search(REPO, "zebra")).results

            _fail_commits(monkeypatch, lmdb.DiskError(ENOSPC_TEXT))
            with pytest.raises(GovcRpcError) as raised:
                await client.store_blob(REPO, b"not stored\n")
            assert raised.value.status == Status.RESOURCE_EXHAUSTED
            assert "no space left on device" in raised.value.message
            with pytest.raises(GovcRpcError) as raised:
                await client.write_file(REPO, "more.txt", b"not stored\n")
            assert raised.value.status == Status.RESOURCE_EXHAUSTED

            for blob_hash, content in acknowledged.items():
                assert (await client.get_blob(REPO, blob_hash)).content == content
            assert (await client.read_file(REPO, "notes.txt")).content == b"the zebra notes\n"
            assert (await client.search(REPO, "zebra")).results
            health = await client.health()
            assert health.checks["storage_read"] == "ok"
            assert health.checks["storage_write"].startswith("degraded: "), health.checks
            assert "no space left on device" in health.checks["storage_write"]

            monkeypatch.undo()
            stored = await client.store_blob(REPO, b"space is back\n")
            acknowledged[stored.hash] = b"space is back\n"
            assert (await client.health()).checks["storage_write"] == "ok"
    finally:
        monkeypatch.undo()
        await server.stop()

    again = GovcServer(config)
    await again.start()
    try:
        async with GovcClient(f"127.0.0.1:{again.port}", timeout=30) as client:
            for blob_hash, content in acknowledged.items():
                assert (await client.get_blob(REPO, blob_hash)).content == content
    finally:
        await again.stop()


async def test_health_status_is_degraded_while_the_disk_is_full(
    server: GovcServer, client: GovcClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.create_repository(REPO)
    _fail_commits(monkeypatch, lmdb.DiskError(ENOSPC_TEXT))
    with pytest.raises(GovcRpcError):
        await client.store_blob(REPO, b"x")
    assert (await client.health()).status == "degraded"
