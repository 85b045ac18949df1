"""Blob operations of a repository: store (plain or delta-compressed) and read back.

Preparing a blob (hashing, compressing, searching for a delta base) is CPU work done by the
caller's thread; only the prepared bytes travel to the writer thread.
"""

import hashlib
import struct
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from govc.errors import NotFound
from govc.objects import BLOB, object_header
from govc.repositories import Repositories
from govc.storage import Storage
from govc.storage.objects import (
    CHUNK_SIZE,
    CHUNKED,
    DELTA,
    MAX_DELTA_DEPTH,
    MAX_DELTA_SIZE,
    ObjectInfo,
    ObjectStore,
    PreparedObject,
    delta_against,
    encode_chunk,
    prepare_blob,
)

# Delta base candidates: the most recent delta-eligible blobs of each repository.
RECENT_BLOBS = 8
DELTA_TRIES = 4
CHUNKS_PER_TRANSACTION = 16  # bounds a write transaction's dirty pages to ~16 MiB
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

    def read_piece(self, repo_id: str, oid: bytes, index: int) -> bytes:
        """Piece `index` (CHUNK_SIZE bytes each) of a blob, in its own short transaction."""
        with self._storage.read(buffers=True) as txn:
            return self._objects.read_piece(txn, repo_id, oid, index)

    def release_read_pages(self) -> None:
        """After reading a lot (a long stream), let go of the mapped pages it touched."""
        self._storage.drop_mapped_pages()

    def piece_count(self, info: ObjectInfo) -> int:
        return self._objects.piece_count(info)

    def sha256(self, repo_id: str, oid: bytes) -> bytes | None:
        with self._storage.read() as txn:
            return self._objects.sha256(txn, repo_id, oid)

    def remember_sha256(self, repo_id: str, oid: bytes, digest: bytes) -> Future[None]:
        return self._storage.writer.submit(
            lambda txn: self._objects.remember_sha256(txn, repo_id, oid, digest)
        )

    def store_file(
        self,
        repo_id: str,
        path: Path,
        size: int,
        oid: bytes | None = None,
        sha256: bytes | None = None,
    ) -> tuple[str, ObjectInfo]:
        """Store the blob spooled in `path` (blocking: call from a worker thread).

        Big blobs go in chunk by chunk over several transactions, so neither this process nor
        a write transaction ever holds the whole blob; the object becomes visible only when its
        header is written, last. If that never happens the chunks are removed again.
        """
        if oid is None:  # not hashed while receiving: one more pass over the spool
            sha = hashlib.sha1(object_header(BLOB, size))
            with path.open("rb") as spool:
                for piece in iter(lambda: spool.read(CHUNK_SIZE), b""):
                    sha.update(piece)
            oid = sha.digest()
        if size <= CHUNK_SIZE:
            blob_hash, info = self.store(repo_id, path.read_bytes()).result()
            return blob_hash, info
        count = -(-size // CHUNK_SIZE)
        stored = 0
        objects = self._objects
        # The chunks span several transactions: each checks it is still the same repository.
        incarnation = self._repositories.get(repo_id).created_at_us
        writer = self._storage.writer
        try:
            with path.open("rb") as spool:
                for first in range(0, count, CHUNKS_PER_TRANSACTION):
                    encoded = [
                        encode_chunk(spool.read(CHUNK_SIZE))
                        for _ in range(first, min(count, first + CHUNKS_PER_TRANSACTION))
                    ]
                    stored += sum(len(c) - 1 for c in encoded)

                    def put(txn: Any, first: int = first, encoded: list[bytes] = encoded) -> None:
                        self._repositories.require(txn, repo_id, incarnation)
                        for offset, chunk in enumerate(encoded):
                            objects.put_chunk(txn, repo_id, oid, first + offset, chunk)

                    writer.submit(put).result()

            def finish(txn: Any) -> ObjectInfo:
                self._repositories.require(txn, repo_id, incarnation)
                info = objects.put_chunked_header(txn, repo_id, oid, BLOB, size, count, stored)
                if sha256 is not None:
                    objects.remember_sha256(txn, repo_id, oid, sha256)
                return info

            return oid.hex(), writer.submit(finish).result()
        except BaseException:
            writer.submit(lambda txn: objects.delete_unnamed_chunks(txn, repo_id, oid)).result()
            raise

    def read(self, repo_id: str, oid: bytes) -> tuple[bytes, ObjectInfo]:
        with self._storage.read(buffers=True) as txn:
            info = self._info(txn, repo_id, oid)
            return self._objects.read(txn, repo_id, oid), info
