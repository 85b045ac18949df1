"""Blob operations of a repository: store (plain or delta-compressed) and read back.

Preparing a blob (hashing, compressing, searching for a delta base) is CPU work done by the
caller's thread; only the prepared bytes travel to the writer thread.
"""

import contextlib
import functools
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import Future

from govc.core.database import Database
from govc.core.gitformat import BLOB, object_header
from govc.core.objects import prepare_blob
from govc.errors import NotFound
from govc.storage import Txn
from govc.storage.objectstore import (
    CHUNK_SIZE,
    CHUNKED,
    MAX_DELTA_DEPTH,
    MAX_DELTA_SIZE,
    ObjectInfo,
    PreparedObject,
    delta_against,
    encode_chunk,
)

# Delta base candidates: the most recent delta-eligible blobs of each repository.
RECENT_BLOBS = 8
DELTA_TRIES = 4
CHUNKS_PER_TRANSACTION = 16  # bounds a write transaction's dirty pages to ~16 MiB


class Blobs:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- preparing (caller's thread) ----

    @staticmethod
    def prepare(content: bytes, compress: bool = True) -> PreparedObject:
        return prepare_blob(content, compress)

    def prepare_with_delta(self, repo_id: str, content: bytes, compress: bool) -> PreparedObject:
        """Encode `content`, as a delta against a similar recent blob when that is smaller."""
        prepared = prepare_blob(content, compress)
        if not compress or not content or len(content) > MAX_DELTA_SIZE:
            return prepared

        def best_encoding(txn: Txn) -> PreparedObject:
            objects = txn.objects
            if objects.info(repo_id, prepared.oid) is not None:
                return prepared  # already stored; storing again is a no-op
            candidates = [
                (oid, size)
                for oid, size in txn.recent.get(repo_id)
                if oid != prepared.oid and size // 2 <= len(content) <= size * 2
            ]
            candidates.sort(key=lambda entry: abs(entry[1] - len(content)))
            best = prepared
            for oid, _ in candidates[:DELTA_TRIES]:
                info = objects.info(repo_id, oid)
                if info is None or info.depth >= MAX_DELTA_DEPTH:
                    continue
                base = objects.read(repo_id, oid)
                delta = delta_against(prepared, content, oid, base, info.depth)
                if delta is not None and delta.stored_size < best.stored_size:
                    best = delta
            return best

        return self._db.read(repo_id, best_encoding)

    # ---- writing (resolved by the writer once durable) ----

    def store(self, repo_id: str, blob: bytes | PreparedObject) -> Future[tuple[str, ObjectInfo]]:
        """Store a blob; resolves to its id and what is stored.

        Raw `bytes` are hashed and compressed on the writer thread: for small blobs that keeps
        the event loop free, and compression releases the GIL, so it overlaps the loop's work.
        Large blobs should arrive prepared (by a worker thread) to keep the writer moving.
        """

        def op(txn: Txn) -> tuple[str, ObjectInfo]:
            prepared = prepare_blob(blob) if isinstance(blob, bytes) else blob
            return prepared.hex, txn.objects.put_prepared(repo_id, prepared)

        return self._db.write(repo_id, op)

    def store_delta_candidate(self, repo_id: str, prepared: PreparedObject) -> Future[ObjectInfo]:
        """Store, and remember the blob as a delta base for later versions."""

        def op(txn: Txn) -> ObjectInfo:
            if prepared.base is not None and txn.objects.info(repo_id, prepared.base) is None:
                # Its base was read from a repository deleted since (and maybe created again
                # under its id): stored, the delta could never be read.
                raise NotFound(f"repository {repo_id!r} was deleted while the blob was stored")
            info = txn.objects.put_prepared(repo_id, prepared)
            if 0 < prepared.size <= MAX_DELTA_SIZE:
                recent = [e for e in txn.recent.get(repo_id) if e[0] != prepared.oid]
                txn.recent.put(repo_id, [*recent, (prepared.oid, prepared.size)][-RECENT_BLOBS:])
            return info

        return self._db.write(repo_id, op)

    # ---- reading (blocking: the caller chooses the thread) ----

    def info(self, repo_id: str, oid: bytes) -> ObjectInfo:
        return self._db.read(repo_id, lambda txn: _blob_info(txn, repo_id, oid), buffers=True)

    def read_if_small(
        self, repo_id: str, oid: bytes, max_bytes: int
    ) -> tuple[ObjectInfo, bytes | None]:
        """The content when it is plain and at most `max_bytes` (one transaction, one lookup of
        the object), else None."""

        def read(txn: Txn) -> tuple[ObjectInfo, bytes | None]:
            info, content = txn.objects.read_if_small(repo_id, oid, max_bytes)
            if info is None or info.kind != BLOB:
                raise NotFound(f"blob {oid.hex()} not found in repository {repo_id!r}")
            return info, content

        return self._db.read(repo_id, read, buffers=True)

    def read(self, repo_id: str, oid: bytes) -> tuple[bytes, ObjectInfo]:
        def read(txn: Txn) -> tuple[bytes, ObjectInfo]:
            info = _blob_info(txn, repo_id, oid)
            return txn.objects.read(repo_id, oid), info

        return self._db.read(repo_id, read, buffers=True)

    def read_piece(self, repo_id: str, oid: bytes, index: int) -> bytes:
        """Piece `index` (CHUNK_SIZE bytes each) of a blob, in its own short transaction."""
        return self._db.read(None, lambda txn: txn.objects.read_piece(repo_id, oid, index), True)

    def release_read_pages(self) -> None:
        """After reading a lot (a long stream), let go of the mapped pages it touched."""
        self._db.storage.drop_mapped_pages()

    @staticmethod
    def piece_count(info: ObjectInfo) -> int:
        """How many pieces `read_piece` serves."""
        return -(-info.size // CHUNK_SIZE) if info.encoding == CHUNKED else 1

    def sha256(self, repo_id: str, oid: bytes) -> bytes | None:
        return self._db.read(None, lambda txn: txn.objects.sha256(repo_id, oid))

    def remember_sha256(self, repo_id: str, oid: bytes, digest: bytes) -> Future[None]:
        return self._db.write(None, lambda txn: txn.objects.remember_sha256(repo_id, oid, digest))

    def upload(self, repo_id: str, declared_size: int) -> "UploadSink":
        """A sink for a blob that arrives in pieces (blocking: reads the repository)."""
        return UploadSink(self._db, self.store, repo_id, declared_size)

    def discard_unfinished_uploads(self) -> int:
        """Remove the chunks of uploads a crash interrupted (blocking); returns how many."""

        def op(txn: Txn) -> int:
            objects = txn.objects
            unfinished = objects.unfinished_uploads()
            for repo_id, chunk_id in unfinished:
                objects.delete_unnamed_chunks(repo_id, chunk_id)
                objects.unmark_upload(chunk_id)
            return len(unfinished)

        return self._db.write(None, op).result()


def _read_chunk(repo_id: str, chunk_id: bytes, index: int, txn: Txn) -> bytes:
    return txn.objects.read_chunk(repo_id, chunk_id, index)


def _blob_info(txn: Txn, repo_id: str, oid: bytes) -> ObjectInfo:
    info = txn.objects.info(repo_id, oid)
    if info is None or info.kind != BLOB:
        raise NotFound(f"blob {oid.hex()} not found in repository {repo_id!r}")
    return info


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
        db: Database,
        store_whole: Callable[[str, bytes], Future[tuple[str, ObjectInfo]]],
        repo_id: str,
        declared_size: int,
    ) -> None:
        self._db = db
        self._store_whole = store_whole  # Blobs.store, for a blob of at most one chunk
        self._repo_id = repo_id
        # Every transaction checks it is still the same repository (not one re-created).
        self._incarnation = db.read(None, lambda txn: db.registry.get(txn, repo_id).created_at_us)
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
        repo_id, chunk_id = self._repo_id, self._chunk_id
        size, count, stored = self._size, self._written, self._stored

        def name(txn: Txn) -> ObjectInfo:
            self._db.registry.require(txn, repo_id, self._incarnation)
            objects = txn.objects
            objects.unmark_upload(chunk_id)
            existing = objects.info(repo_id, oid)
            if existing is not None:  # already stored: these chunks are not needed
                objects.delete_unnamed_chunks(repo_id, chunk_id)
                return existing
            info = objects.put_chunked_header(repo_id, oid, BLOB, size, count, stored, chunk_id)
            objects.remember_sha256(repo_id, oid, sha256)
            return info

        info = self._db.write(None, name).result()
        self._marked = False
        return oid.hex(), info, sha256.hex()

    def abort(self) -> None:
        """Remove whatever was written (blocking), and let go of what was not."""
        self._encoded = []
        self._buffer = bytearray()
        with contextlib.suppress(Exception):  # a failed transaction wrote nothing
            self._settle()
        if self._marked:
            repo_id, chunk_id = self._repo_id, self._chunk_id

            def remove(txn: Txn) -> None:
                txn.objects.delete_unnamed_chunks(repo_id, chunk_id)
                txn.objects.unmark_upload(chunk_id)

            self._db.write(None, remove).result()
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
        repo_id, chunk_id = self._repo_id, self._chunk_id
        registry, incarnation = self._db.registry, self._incarnation

        def put(txn: Txn) -> None:
            registry.require(txn, repo_id, incarnation)
            if mark:
                txn.objects.mark_upload(repo_id, chunk_id)
            for offset, chunk in enumerate(chunks):
                txn.objects.put_chunk(repo_id, chunk_id, first + offset, chunk)

        self._settle()  # at most one transaction in flight
        self._in_flight = self._db.write(None, put)

    def _settle(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def _hash_written(self) -> bytes:
        """The git id when the size was not declared: one more pass, over the stored chunks."""
        sha = hashlib.sha1(object_header(BLOB, self._size))
        repo_id, chunk_id = self._repo_id, self._chunk_id
        for index in range(self._written):
            sha.update(
                self._db.read(None, functools.partial(_read_chunk, repo_id, chunk_id, index))
            )
        return sha.digest()
