"""Blob operations of a repository: store (plain or delta-compressed) and read back.

Preparing a blob (hashing, compressing, searching for a delta base) is CPU work done by the
caller's thread; only the prepared bytes travel to the writer thread.
"""

import struct
from concurrent.futures import Future
from typing import Any

from govc.errors import NotFound
from govc.repositories import Repositories
from govc.storage import Storage
from govc.storage.objects import (
    CHUNKED,
    DELTA,
    MAX_DELTA_DEPTH,
    MAX_DELTA_SIZE,
    ObjectInfo,
    ObjectStore,
    PreparedObject,
    delta_against,
    prepare_blob,
)

# Delta base candidates: the most recent delta-eligible blobs of each repository.
RECENT_BLOBS = 8
DELTA_TRIES = 4
_RECENT_ENTRY = struct.Struct(">20sQ")  # object id, size


def _recent_entries(raw: bytes | memoryview | None) -> list[tuple[bytes, int]]:
    if raw is None:
        return []
    data = bytes(raw)
    return [
        _RECENT_ENTRY.unpack_from(data, offset)
        for offset in range(0, len(data), _RECENT_ENTRY.size)
    ]


class Blobs:
    def __init__(self, storage: Storage, repositories: Repositories) -> None:
        self._storage = storage
        self._repositories = repositories
        self._objects = ObjectStore(storage.dbs)
        self._recent = storage.dbs["recent"]

    # ---- preparing (caller's thread) ----

    @staticmethod
    def prepare(content: bytes, compress: bool = True) -> PreparedObject:
        return prepare_blob(content, compress)

    def prepare_with_delta(self, repo_id: str, content: bytes, compress: bool) -> PreparedObject:
        """Encode `content`, as a delta against a similar recent blob when that is smaller."""
        prepared = prepare_blob(content, compress)
        if not compress or not content or len(content) > MAX_DELTA_SIZE:
            return prepared
        best = prepared
        with self._storage.read() as txn:
            self._repositories.require(txn, repo_id)
            if self._objects.info(txn, repo_id, prepared.oid) is not None:
                return prepared  # already stored; storing again is a no-op
            candidates = [
                (oid, size)
                for oid, size in _recent_entries(txn.get(repo_id.encode(), db=self._recent))
                if oid != prepared.oid and size // 2 <= len(content) <= size * 2
            ]
            candidates.sort(key=lambda entry: abs(entry[1] - len(content)))
            for oid, _ in candidates[:DELTA_TRIES]:
                info = self._objects.info(txn, repo_id, oid)
                if info is None or info.depth >= MAX_DELTA_DEPTH:
                    continue
                base = self._objects.read(txn, repo_id, oid)
                delta = delta_against(prepared, content, oid, base, info.depth)
                if delta is not None and delta.stored_size < best.stored_size:
                    best = delta
        return best

    # ---- writing (resolved by the writer once durable) ----

    def store(self, repo_id: str, blob: bytes | PreparedObject) -> Future[tuple[str, ObjectInfo]]:
        """Store a blob; resolves to its id and what is stored.

        Raw `bytes` are hashed and compressed on the writer thread: for small blobs that keeps
        the event loop free, and compression releases the GIL, so it overlaps the loop's work.
        Large blobs should arrive prepared (by a worker thread) to keep the writer moving.
        """

        def op(txn: Any) -> tuple[str, ObjectInfo]:
            self._repositories.require(txn, repo_id)
            prepared = prepare_blob(blob) if isinstance(blob, bytes) else blob
            return prepared.hex, self._objects.put_prepared(txn, repo_id, prepared)

        return self._storage.writer.submit(op)

    def store_delta_candidate(self, repo_id: str, prepared: PreparedObject) -> Future[ObjectInfo]:
        """Store, and remember the blob as a delta base for later versions."""

        def op(txn: Any) -> ObjectInfo:
            self._repositories.require(txn, repo_id)
            info = self._objects.put_prepared(txn, repo_id, prepared)
            if 0 < prepared.size <= MAX_DELTA_SIZE:
                key = repo_id.encode()
                recent = [
                    entry
                    for entry in _recent_entries(txn.get(key, db=self._recent))
                    if entry[0] != prepared.oid
                ]
                recent = [*recent, (prepared.oid, prepared.size)][-RECENT_BLOBS:]
                txn.put(key, b"".join(_RECENT_ENTRY.pack(*e) for e in recent), db=self._recent)
            return info

        return self._storage.writer.submit(op)

    # ---- reading (any thread) ----

    def info(self, repo_id: str, oid: bytes) -> ObjectInfo:
        with self._storage.read(buffers=True) as txn:
            return self._info(txn, repo_id, oid)

    def _info(self, txn: Any, repo_id: str, oid: bytes) -> ObjectInfo:
        self._repositories.require(txn, repo_id)
        info = self._objects.info(txn, repo_id, oid)
        if info is None or info.kind != "blob":
            raise NotFound(f"blob {oid.hex()} not found in repository {repo_id!r}")
        return info

    def read_if_small(
        self, repo_id: str, oid: bytes, max_bytes: int
    ) -> tuple[ObjectInfo, bytes | None]:
        """The content when it is plain and at most `max_bytes` (one transaction), else None."""
        with self._storage.read(buffers=True) as txn:
            info = self._info(txn, repo_id, oid)
            if info.size > max_bytes or info.encoding in (DELTA, CHUNKED):
                return info, None
            return info, self._objects.read(txn, repo_id, oid)

    def read(self, repo_id: str, oid: bytes) -> tuple[bytes, ObjectInfo]:
        with self._storage.read(buffers=True) as txn:
            info = self._info(txn, repo_id, oid)
            return self._objects.read(txn, repo_id, oid), info
