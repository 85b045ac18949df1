"""Storage on a real LMDB: group commit, failure isolation, map growth, the object store."""

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import pytest

from govc.core.blobs import Blobs
from govc.core.database import Database
from govc.core.gitformat import blob_id
from govc.core.registry import Registry
from govc.errors import AlreadyExists, NotFound
from govc.storage import Storage, StorageConfig, Txn
from govc.storage.objectstore import (
    CHUNK_SIZE,
    CHUNKED,
    DELTA,
    MAX_DELTA_DEPTH,
    RAW,
    ZSTD,
    encode_object,
)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(StorageConfig(path=str(tmp_path / "db")))
    try:
        yield store
    finally:
        store.close()


def _oid(key: bytes) -> bytes:
    return hashlib.sha1(key).digest()


def _put(key: bytes, value: bytes) -> Any:
    """A write of `value` under `key` (stored as an object of repository "t")."""

    def op(txn: Txn) -> bytes:
        txn.objects.put_prepared("t", encode_object(_oid(key), "blob", value, compress=False))
        return key

    return op


def _get(txn: Txn, key: bytes) -> bytes | None:
    if txn.objects.info("t", _oid(key)) is None:
        return None
    return txn.objects.read("t", _oid(key))


def test_group_commit_batches_concurrent_writes(storage: Storage) -> None:
    futures: list[Any] = []
    lock = threading.Lock()

    def submit_many(worker: int) -> None:
        for i in range(100):
            fut = storage.writer.submit(_put(f"k{worker}-{i}".encode(), b"v"))
            with lock:
                futures.append(fut)

    threads = [threading.Thread(target=submit_many, args=(w,)) for w in range(4)]
    before = storage.writer.commits
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait(futures)
    assert all(f.exception() is None for f in futures)
    commits = storage.writer.commits - before
    assert commits < len(futures), f"{commits} commits for {len(futures)} writes"
    with storage.read() as txn:
        keys = [f"k{w}-{i}".encode() for w in range(4) for i in range(100)]
        assert all(_get(txn, key) == b"v" for key in keys)


def test_a_failing_operation_leaves_no_trace_and_spares_its_batch(storage: Storage) -> None:
    release = threading.Event()

    def blocker(txn: Any) -> None:
        release.wait(5)

    def failing(txn: Txn) -> None:
        _put(b"half-written", b"x")(txn)
        raise AlreadyExists("boom")

    first = storage.writer.submit(blocker)
    # Queued while the writer is busy: these three run in one transaction.
    ok1 = storage.writer.submit(_put(b"a", b"1"))
    bad = storage.writer.submit(failing)
    ok2 = storage.writer.submit(_put(b"b", b"2"))
    release.set()
    wait([first, ok1, bad, ok2])
    assert isinstance(bad.exception(), AlreadyExists)
    assert ok1.result() == b"a" and ok2.result() == b"b"
    with storage.read() as txn:
        assert _get(txn, b"half-written") is None
        assert _get(txn, b"a") == b"1" and _get(txn, b"b") == b"2"


def test_map_grows_on_demand(tmp_path: Path) -> None:
    store = Storage(StorageConfig(path=str(tmp_path / "small"), initial_map_size=1 << 20))
    try:
        values = {f"k{i}".encode(): os.urandom(256 * 1024) for i in range(24)}  # 6 MiB
        futures = [store.writer.submit(_put(k, v)) for k, v in values.items()]
        wait(futures)
        assert all(f.exception() is None for f in futures)
        assert store.map_size > 1 << 20
        with store.read() as txn:
            assert all(_get(txn, k) == v for k, v in values.items())
    finally:
        store.close()
    # Reopening with the small initial size keeps the data (LMDB keeps the larger map).
    again = Storage(StorageConfig(path=str(tmp_path / "small"), initial_map_size=1 << 20))
    try:
        with again.read() as txn:
            assert all(_get(txn, k) == v for k, v in values.items())
    finally:
        again.close()


_GROW_FROM_ANOTHER_PROCESS = """
import os, sys, lmdb
env = lmdb.open(sys.argv[1], map_size=1 << 20, max_dbs=64)
env.set_mapsize(64 << 20)
refs = env.open_db(b"refs")
with env.begin(write=True, db=refs) as txn:
    for i in range(40):
        txn.put(b"t/other%d" % i, os.urandom(128 * 1024).hex().encode())
"""


def test_a_map_grown_by_another_process_is_followed(tmp_path: Path) -> None:
    """Reads that find the map grown by another process (say `govc import` beside the server)
    have the writer thread adopt the new size between its transactions, once for all of them
    (LMDB's resize must not run beside a write or another resize)."""
    path = tmp_path / "shared"
    store = Storage(StorageConfig(path=str(path), initial_map_size=1 << 20))
    try:
        store.writer.submit(_put(b"mine", b"1")).result()
        grown = subprocess.run(
            [sys.executable, "-c", _GROW_FROM_ANOTHER_PROCESS, str(path)], capture_output=True
        )
        assert grown.returncode == 0, grown.stderr
        found: list[tuple[Any, Any]] = []

        def read() -> None:
            with store.read() as txn:
                found.append((_get(txn, b"mine"), txn.refs.get("t", "other39")))

        readers = [threading.Thread(target=read) for _ in range(8)]
        writes = [store.writer.submit(_put(b"w%d" % i, b"x")) for i in range(8)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(30)
        for write in writes:
            write.result(30)  # raises if a write failed
        assert len(found) == 8
        assert all(mine == b"1" and other and len(other) == 256 * 1024 for mine, other in found)
        assert store.map_size >= 64 << 20
    finally:
        store.close()


def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    store = Storage(StorageConfig(path=str(tmp_path / "db")))
    store.close()
    with pytest.raises(Exception, match="closing"):
        store.writer.submit(lambda txn: None)


class _Repos:
    """The registry over a storage, as the tests below use it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, repo_id: str) -> None:
        info = self._db.registry.new_info(repo_id, "", "", {})
        self._db.write(None, lambda txn: self._db.registry.create(txn, info)).result()

    def delete(self, repo_id: str) -> None:
        self._db.write(None, lambda txn: self._db.registry.delete(txn, repo_id)).result()


def _repo(storage: Storage, repo_id: str = "r") -> tuple[_Repos, Blobs]:
    db = Database(storage, Registry())
    repos = _Repos(db)
    repos.create(repo_id)
    return repos, Blobs(db)


def _text(lines: int, seed: int = 0) -> bytes:
    return "".join(
        f"line {i} of a file with some words {i * 7919 % 1000} seed {seed}\n" for i in range(lines)
    ).encode()


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        (b"", RAW),
        (b"x", RAW),
        (os.urandom(4096), RAW),  # incompressible: stored as is
        (b"a" * 4096, ZSTD),
        (os.urandom(CHUNK_SIZE + 1), CHUNKED),
        (b"z" * (3 * CHUNK_SIZE), CHUNKED),
    ],
    ids=["empty", "1B", "random", "compressible", "chunked-random", "chunked-compressible"],
)
def test_object_store_round_trip(storage: Storage, content: bytes, encoding: int) -> None:
    _, blobs = _repo(storage)
    prepared = blobs.prepare(content)
    assert prepared.hex == blob_id(content)
    _, info = blobs.store("r", prepared).result()
    assert info.encoding == encoding and info.size == len(content)
    data, read_info = blobs.read("r", prepared.oid)
    assert data == content and read_info == info
    if encoding == ZSTD:
        assert info.stored_size <= 0.9 * len(content)


def test_chunked_blob_reads_piece_by_piece(storage: Storage) -> None:
    _, blobs = _repo(storage)
    content = os.urandom(2 * CHUNK_SIZE + 10)
    prepared = blobs.prepare(content)
    blobs.store("r", prepared).result()
    with storage.read(buffers=True) as txn:
        pieces = list(txn.objects.iter_chunks("r", prepared.oid))
    assert [len(p) for p in pieces] == [CHUNK_SIZE, CHUNK_SIZE, 10]
    assert b"".join(pieces) == content


def test_delta_chains_are_bounded(storage: Storage) -> None:
    _, blobs = _repo(storage)
    base = _text(2000)
    depths = []
    versions = [base]
    for v in range(1, MAX_DELTA_DEPTH + 5):
        lines = versions[-1].split(b"\n")
        lines[v * 10] = f"edited in version {v}".encode()
        versions.append(b"\n".join(lines))
    for content in versions:
        prepared = blobs.prepare_with_delta("r", content, True)
        info = blobs.store_delta_candidate("r", prepared).result()
        depths.append(info.depth)
    assert max(depths) <= MAX_DELTA_DEPTH
    assert depths[1] == 1 and sum(d > 0 for d in depths) > len(versions) // 2
    for content in versions:
        data, info = blobs.read("r", bytes.fromhex(blob_id(content)))
        assert data == content
        if info.encoding == DELTA:
            assert info.stored_size < len(content) * 0.05


def test_a_delta_whose_base_went_with_its_repository_is_not_stored(storage: Storage) -> None:
    """Prepared against a repository that was then deleted and created again under its id: the
    delta's base is not there, so storing it would leave a blob nobody can read."""
    repos, blobs = _repo(storage, "d")
    base = _text(2000)
    blobs.store_delta_candidate("d", blobs.prepare_with_delta("d", base, True)).result()
    edited = base.replace(b"line 5 ", b"LINE 5 ", 1)
    prepared = blobs.prepare_with_delta("d", edited, True)
    assert prepared.encoding == DELTA
    repos.delete("d")
    repos.create("d")
    with pytest.raises(NotFound, match="deleted while the blob was stored"):
        blobs.store_delta_candidate("d", prepared).result()
    with pytest.raises(NotFound):
        blobs.read("d", prepared.oid)
    # Prepared again against the new repository, it is stored whole and reads back.
    blobs.store_delta_candidate("d", blobs.prepare_with_delta("d", edited, True)).result()
    assert blobs.read("d", prepared.oid)[0] == edited


def test_delete_repository_removes_objects_and_chunks(storage: Storage) -> None:
    repos, blobs = _repo(storage, "gone")
    _, other = _repo(storage, "kept")
    big = os.urandom(CHUNK_SIZE * 2)
    for target in ("gone", "kept"):
        (blobs if target == "gone" else other).store(target, blobs.prepare(big)).result()
        blobs.store(target, blobs.prepare(b"small")).result()
    repos.delete("gone")
    big_id = bytes.fromhex(blob_id(big))
    with storage.read() as txn:
        assert list(txn.objects.all_objects("gone")) == []
        assert txn.refs.list("gone", "") == []
        with pytest.raises(NotFound):  # the chunks went too, not just the object's header
            txn.objects.read_chunk("gone", big_id, 0)
        assert len(list(txn.objects.all_objects("kept"))) == 2
        assert txn.objects.read_chunk("kept", big_id, 0) == big[:CHUNK_SIZE]
    with pytest.raises(NotFound):
        blobs.read("gone", bytes.fromhex(blob_id(b"small")))
    assert other.read("kept", bytes.fromhex(blob_id(big)))[0] == big
