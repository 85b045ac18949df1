"""Blob operations of a repository: store (plain or delta-compressed) and read back.

Preparing a blob (hashing, compressing, searching for a delta base) is CPU work done by the
caller's thread; only the prepared bytes travel to the writer thread.
"""

import contextlib
import hashlib
import os
import struct
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from govc.core.gitformat import BLOB, object_header
from govc.core.registry import Registry
from govc.errors import NotFound
from govc.storage import Storage
from govc.storage.objectstore import (
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
    def __init__(self, storage: Storage, repositories: Registry) -> None:
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
            if (
                prepared.base is not None
                and self._objects.info(txn, repo_id, prepared.base) is None
            ):
                # Its base was read from a repository deleted since (and maybe created again
                # under its id): stored, the delta could never be read.
                raise NotFound(f"repository {repo_id!r} was deleted while the blob was stored")
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

    def upload(self, repo_id: str, declared_size: int) -> "UploadSink":
        """A sink for a blob that arrives in pieces (blocking: reads the repository)."""
        return UploadSink(
            self._storage, self._repositories, self._objects, self.store, repo_id, declared_size
        )

    def discard_unfinished_uploads(self) -> int:
        """Remove the chunks of uploads a crash interrupted (blocking); returns how many."""
        objects = self._objects

        def op(txn: Any) -> int:
            unfinished = objects.unfinished_uploads(txn)
            for repo_id, chunk_id in unfinished:
                objects.delete_unnamed_chunks(txn, repo_id, chunk_id)
                objects.unmark_upload(txn, chunk_id)
            return len(unfinished)

        return self._storage.writer.submit(op).result()

    def read(self, repo_id: str, oid: bytes) -> tuple[bytes, ObjectInfo]:
        with self._storage.read(buffers=True) as txn:
            info = self._info(txn, repo_id, oid)
            return self._objects.read(txn, repo_id, oid), info


class UploadSink:
    """A blob arriving in order (UploadBlobStream), written into storage while it arrives.

    Blocking: one worker thread at a time. The bytes are hashed (SHA-256, and the git id when
    the size was declared up front) and cut into 1 MiB chunks, stored under a fresh random id
    CHUNKS_PER_TRANSACTION at a time, one transaction in flight while the next fills, so
    storage writes overlap the transfer and no transaction holds more than ~16 MiB. An upload
    marker names the id from the first transaction, so chunks a crash leaves unnamed are
    removed at the next start. Nothing is visible until `finish` writes the blob's header,
    pointing at those chunks (or, if the repository has the blob already, drops them); `abort`
    removes them. A blob of at most 1 MiB is stored whole, like StoreBlob.
    """

    def __init__(
        self,
        storage: Storage,
        repositories: Registry,
        objects: ObjectStore,
        store_whole: Callable[[str, bytes], Future[tuple[str, ObjectInfo]]],
        repo_id: str,
        declared_size: int,
    ) -> None:
        self._storage = storage
        self._repositories = repositories
        self._objects = objects
        self._store_whole = store_whole  # Blobs.store, for a blob of at most one chunk
        self._repo_id = repo_id
        # Every transaction checks it is still the same repository (not one re-created).
        self._incarnation = repositories.get(repo_id).created_at_us
        self._chunk_id = os.urandom(20)
        self._sha256 = hashlib.sha256()
        self._git = hashlib.sha1(object_header(BLOB, declared_size)) if declared_size else None
        self._buffer = bytearray()
        self._encoded: list[bytes] = []  # chunks not yet handed to the writer
        self._written = 0  # chunks handed to the writer
        self._stored = 0  # their stored bytes
        self._size = 0
        self._marked = False
        self._in_flight: Future[None] | None = None

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        self._size += len(data)
        self._buffer += data
        # Keep more than a chunk back: a blob of exactly 1 MiB is stored whole, not chunked.
        while len(self._buffer) > CHUNK_SIZE:
            # One copy of the chunk, not two; both views released before the buffer shrinks.
            with memoryview(self._buffer) as view, view[:CHUNK_SIZE] as chunk:
                self._hash(chunk)
                self._encoded.append(encode_chunk(chunk))
            del self._buffer[:CHUNK_SIZE]
            if len(self._encoded) >= CHUNKS_PER_TRANSACTION:
                self._flush()

    def _hash(self, data: bytes | bytearray | memoryview) -> None:
        # Whole chunks, not each message: hashing releases the GIL, and every release lets the
        # event loop take it, after which this thread waits to get it back.
        self._sha256.update(data)
        if self._git is not None:
            self._git.update(data)

    def finish(self) -> tuple[str, ObjectInfo, str]:
        """Name the blob; (git id, what is stored, SHA-256 hex of the content)."""
        self._hash(self._buffer)
        sha256 = self._sha256.digest()
        if not self._marked and not self._encoded:
            blob_hash, info = self._store_whole(self._repo_id, bytes(self._buffer)).result()
            return blob_hash, info, sha256.hex()
        if self._buffer:
            self._encoded.append(encode_chunk(bytes(self._buffer)))
            self._buffer.clear()
        self._flush()
        self._settle()
        oid = self._git.digest() if self._git is not None else self._hash_written()
        objects, repo_id, chunk_id = self._objects, self._repo_id, self._chunk_id
        size, count, stored = self._size, self._written, self._stored

        def name(txn: Any) -> ObjectInfo:
            self._repositories.require(txn, repo_id, self._incarnation)
            objects.unmark_upload(txn, chunk_id)
            existing = objects.info(txn, repo_id, oid)
            if existing is not None:  # already stored: these chunks are not needed
                objects.delete_unnamed_chunks(txn, repo_id, chunk_id)
                return existing
            info = objects.put_chunked_header(
                txn, repo_id, oid, BLOB, size, count, stored, chunk_id
            )
            objects.remember_sha256(txn, repo_id, oid, sha256)
            return info

        info = self._storage.writer.submit(name).result()
        self._marked = False
        return oid.hex(), info, sha256.hex()

    def abort(self) -> None:
        """Remove whatever was written (blocking)."""
        with contextlib.suppress(Exception):  # a failed transaction wrote nothing
            self._settle()
        if self._marked:
            objects, repo_id, chunk_id = self._objects, self._repo_id, self._chunk_id

            def remove(txn: Any) -> None:
                objects.delete_unnamed_chunks(txn, repo_id, chunk_id)
                objects.unmark_upload(txn, chunk_id)

            self._storage.writer.submit(remove).result()
            self._marked = False

    def _flush(self) -> None:
        if not self._encoded:
            return
        chunks, first = self._encoded, self._written
        self._encoded = []
        self._written += len(chunks)
        self._stored += sum(len(c) - 1 for c in chunks)
        mark = not self._marked
        self._marked = True
        objects, repo_id, chunk_id = self._objects, self._repo_id, self._chunk_id
        repositories, incarnation = self._repositories, self._incarnation

        def put(txn: Any) -> None:
            repositories.require(txn, repo_id, incarnation)
            if mark:
                objects.mark_upload(txn, repo_id, chunk_id)
            for offset, chunk in enumerate(chunks):
                objects.put_chunk(txn, repo_id, chunk_id, first + offset, chunk)

        self._settle()  # at most one transaction in flight
        self._in_flight = self._storage.writer.submit(put)

    def _settle(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def _hash_written(self) -> bytes:
        """The git id when the size was not declared: one more pass, over the stored chunks."""
        sha = hashlib.sha1(object_header(BLOB, self._size))
        storage, objects = self._storage, self._objects
        for index in range(self._written):
            with storage.read(buffers=True) as txn:
                sha.update(objects.read_chunk(txn, self._repo_id, self._chunk_id, index))
        return sha.digest()
