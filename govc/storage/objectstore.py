"""The object store: how git objects of a repository are laid out in LMDB.

Key: repo id + "/" + 20-byte object id. Value: a 10-byte header (object type, encoding,
uncompressed size) and a payload:

* RAW      the content as is
* ZSTD     a zstd frame, used only when it saves at least 10% (big inputs whose first 64 KiB
           do not compress are stored raw without trying the rest)
* DELTA    20-byte base id, 1-byte chain depth, then a zstd frame compressed with the base's
           content as a raw prefix dictionary (bounded chains, depth <= MAX_DELTA_DEPTH)
* CHUNKED  chunk size, chunk count and stored bytes of all chunks, then (for a blob written
           while it was still arriving, when its id was not yet known) the 20-byte id its
           chunks are stored under; the chunks live in the `chunks` database, each RAW or ZSTD
           on its own, so a big blob is never decoded whole

An upload in progress is named in the `meta` database (`upload/` + chunk id -> repository id)
from its first chunk transaction until its header is written or its chunks are removed, so
chunks a crash left unnamed are found and removed at the next start.

Compression happens in `encode_object`; `put_prepared` only copies prepared bytes
into a transaction. Callers choose the thread: big blobs are prepared by a worker thread, small
ones by the writer itself (see `Blobs.store`).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import zstandard

from govc.errors import NotFound
from govc.storage.scan import delete_prefix, scan_prefix
from govc.storage.tables import repo_prefix

KIND_CODES = {"blob": 1, "tree": 2, "commit": 3, "tag": 4}  # git's pack type codes
KIND_NAMES = {code: name for name, code in KIND_CODES.items()}

RAW = 0
ZSTD = 1
DELTA = 2
CHUNKED = 3

HEADER = struct.Struct(">BBQ")  # kind, encoding, size
CHUNK_HEADER = struct.Struct(">IIQ")  # chunk size, chunk count, stored bytes of all chunks
CHUNK_INDEX = struct.Struct(">I")

CHUNK_SIZE = 1 << 20  # blobs above this are stored in chunks
MAX_DELTA_SIZE = 1 << 20  # zstd prefix deltas degrade silently above ~2 MiB
MAX_DELTA_DEPTH = 10
MIN_SAVING = 0.10  # compress only when it saves at least this fraction
SAMPLE_BYTES = 64 * 1024  # inputs over twice this are tried on a sample before in full
ZSTD_LEVEL = 3
DELTA_WINDOW_LOG = 22  # covers base + content for blobs up to MAX_DELTA_SIZE


def object_key(repo_id: str, oid: bytes) -> bytes:
    return repo_id.encode() + b"/" + oid


@dataclass(frozen=True)
class ObjectInfo:
    kind: str
    encoding: int
    size: int
    stored_size: int  # payload bytes actually stored (chunks included)
    base: bytes | None = None
    depth: int = 0

    @property
    def compressed(self) -> bool:
        return self.encoding in (ZSTD, DELTA) or (
            self.encoding == CHUNKED and self.stored_size < self.size
        )


@dataclass
class PreparedObject:
    """An object hashed and encoded, ready to be written by the writer thread."""

    oid: bytes
    kind: str
    size: int
    encoding: int
    payload: bytes
    chunks: list[bytes] = field(default_factory=list)
    base: bytes | None = None
    depth: int = 0

    @property
    def hex(self) -> str:
        return self.oid.hex()

    @property
    def stored_size(self) -> int:
        if self.encoding == CHUNKED:
            return int(CHUNK_HEADER.unpack(self.payload)[2])
        if self.encoding == DELTA:
            return len(self.payload) - 21
        return len(self.payload)


_local = threading.local()


def _zstd(data: bytes | memoryview) -> bytes:
    # A compressor is not thread-safe but is reusable: one per thread saves its set-up.
    compressor = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = _local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return bytes(compressor.compress(data))


def _unzstd(data: bytes | memoryview, size: int = 0) -> bytes:
    # Likewise a decompressor: setting one up costs about half of decompressing a 16 KiB text.
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return bytes(decompressor.decompress(data, max_output_size=size))


def _worth_it(compressed: int, size: int) -> bool:
    return compressed <= size * (1 - MIN_SAVING)


def _compressible(data: bytes | memoryview) -> bool:
    """Whether compressing `data` may save MIN_SAVING. Big inputs are judged by a sample first:
    compressing 1 MiB of incompressible bytes costs ~2 ms for nothing, the sample ~30 us."""
    if len(data) <= 2 * SAMPLE_BYTES:
        return len(data) > 0
    return _worth_it(len(_zstd(data[:SAMPLE_BYTES])), SAMPLE_BYTES)


_RAW_TAG = bytes([RAW])


def encode_chunk(data: bytes | memoryview, compress: bool = True) -> bytes:
    if compress and _compressible(data):
        packed = _zstd(data)
        if _worth_it(len(packed), len(data)):
            return bytes([ZSTD]) + packed
    return b"".join((_RAW_TAG, data))  # one copy, also of a memoryview


def encode_object(oid: bytes, kind: str, content: bytes, compress: bool = True) -> PreparedObject:
    """Encode `content`, the object `oid` (its git id, computed by the caller), as a plain
    (non-delta) object."""
    size = len(content)
    if size > CHUNK_SIZE:
        view = memoryview(content)
        chunks = [
            encode_chunk(view[i : i + CHUNK_SIZE], compress) for i in range(0, size, CHUNK_SIZE)
        ]
        stored = sum(len(c) - 1 for c in chunks)
        payload = CHUNK_HEADER.pack(CHUNK_SIZE, len(chunks), stored)
        return PreparedObject(oid, kind, size, CHUNKED, payload, chunks)
    if compress and _compressible(content):
        packed = _zstd(content)
        if _worth_it(len(packed), size):
            return PreparedObject(oid, kind, size, ZSTD, packed)
    return PreparedObject(oid, kind, size, RAW, content)


def delta_against(
    prepared: PreparedObject, content: bytes, base_oid: bytes, base: bytes, base_depth: int
) -> PreparedObject | None:
    """`prepared` re-encoded as a delta against `base`, or None if that is not smaller."""
    if prepared.size > MAX_DELTA_SIZE or len(base) > MAX_DELTA_SIZE or not content:
        return None
    if base_depth >= MAX_DELTA_DEPTH:
        return None
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    params = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, window_log=DELTA_WINDOW_LOG)
    frame = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params).compress(
        content
    )
    if len(frame) >= prepared.stored_size or not _worth_it(len(frame), prepared.size):
        return None
    payload = base_oid + bytes([base_depth + 1]) + frame
    return PreparedObject(
        prepared.oid,
        prepared.kind,
        prepared.size,
        DELTA,
        payload,
        base=base_oid,
        depth=base_depth + 1,
    )


class ObjectStore:
    """The objects of every repository, read and written inside one transaction."""

    def __init__(self, raw: Any, dbs: dict[str, Any]) -> None:
        self._raw = raw  # the LMDB transaction this store is bound to
        self._objects = dbs["objects"]
        self._chunks = dbs["chunks"]
        self._checksums = dbs["checksums"]
        self._meta = dbs["meta"]

    # ---- writes (writer thread, inside its transaction) ----

    def put_prepared(self, repo_id: str, obj: PreparedObject) -> ObjectInfo:
        """Store `obj` unless the repository already has it; return what is stored."""
        key = object_key(repo_id, obj.oid)
        existing = self._info_from_value(self._raw.get(key, db=self._objects))
        if existing is not None:
            return existing
        header = HEADER.pack(KIND_CODES[obj.kind], obj.encoding, obj.size)
        self._raw.put(key, header + obj.payload, db=self._objects)
        for index, chunk in enumerate(obj.chunks):
            self._raw.put(key + CHUNK_INDEX.pack(index), chunk, db=self._chunks)
        return ObjectInfo(obj.kind, obj.encoding, obj.size, obj.stored_size, obj.base, obj.depth)

    def put_chunk(self, repo_id: str, oid: bytes, index: int, chunk: bytes) -> None:
        """One encoded chunk of a big object that is written in several transactions; it stays
        invisible until `put_chunked_header` names the object."""
        self._raw.put(object_key(repo_id, oid) + CHUNK_INDEX.pack(index), chunk, db=self._chunks)

    def put_chunked_header(
        self,
        repo_id: str,
        oid: bytes,
        kind: str,
        size: int,
        count: int,
        stored: int,
        chunk_id: bytes | None = None,
    ) -> ObjectInfo:
        """Name a chunked object whose chunks were written under `chunk_id` (default: `oid`)."""
        key = object_key(repo_id, oid)
        existing = self._info_from_value(self._raw.get(key, db=self._objects))
        if existing is not None:
            return existing
        payload = CHUNK_HEADER.pack(CHUNK_SIZE, count, stored)
        if chunk_id is not None and chunk_id != oid:
            payload += chunk_id
        header = HEADER.pack(KIND_CODES[kind], CHUNKED, size)
        self._raw.put(key, header + payload, db=self._objects)
        return ObjectInfo(kind, CHUNKED, size, stored)

    def mark_upload(self, repo_id: str, chunk_id: bytes) -> None:
        self._raw.put(_UPLOAD_PREFIX + chunk_id, repo_id.encode(), db=self._meta)

    def unmark_upload(self, chunk_id: bytes) -> None:
        self._raw.delete(_UPLOAD_PREFIX + chunk_id, db=self._meta)

    def unfinished_uploads(self) -> list[tuple[str, bytes]]:
        """(repository id, chunk id) of every upload that was never named or removed."""
        return [
            (bytes(value).decode(), bytes(key[len(_UPLOAD_PREFIX) :]))
            for key, value in scan_prefix(self._raw, self._meta, _UPLOAD_PREFIX)
        ]

    def delete_unnamed_chunks(self, repo_id: str, oid: bytes) -> None:
        """Remove chunks written for an object whose header never followed."""
        key = object_key(repo_id, oid)
        if self._raw.get(key, db=self._objects) is None:
            delete_prefix(self._raw, self._chunks, key)

    def delete_repo(self, repo_id: str) -> int:
        """Delete every object and chunk of a repository; returns the number of objects."""
        prefix = repo_prefix(repo_id)
        count = delete_prefix(self._raw, self._objects, prefix)
        delete_prefix(self._raw, self._chunks, prefix)
        delete_prefix(self._raw, self._checksums, prefix)
        return count

    def sha256(self, repo_id: str, oid: bytes) -> bytes | None:
        """The remembered SHA-256 of an object's content, if any."""
        value = self._raw.get(object_key(repo_id, oid), db=self._checksums)
        return None if value is None else bytes(value)

    def remember_sha256(self, repo_id: str, oid: bytes, digest: bytes) -> None:
        key = object_key(repo_id, oid)
        if self._raw.get(key, db=self._objects) is not None:
            self._raw.put(key, digest, db=self._checksums)

    # ---- reads (any thread, inside a read transaction) ----

    def info(self, repo_id: str, oid: bytes) -> ObjectInfo | None:
        key = object_key(repo_id, oid)
        return self._info_from_value(self._raw.get(key, db=self._objects))

    def read_if_small(
        self, repo_id: str, oid: bytes, max_bytes: int
    ) -> tuple[ObjectInfo | None, bytes | None]:
        """What is stored of an object, and its content when that is plain (raw or zstd) and
        at most `max_bytes`, from one lookup. Every LMDB call lets go of the GIL, and on a
        busy server each costs the event loop a wait to get it back, so the hot read makes one.
        """
        value = self._raw.get(object_key(repo_id, oid), db=self._objects)
        info = self._info_from_value(value)
        if info is None or info.size > max_bytes or info.encoding not in (RAW, ZSTD):
            return info, None
        payload = memoryview(value)[HEADER.size :]
        content = bytes(payload) if info.encoding == RAW else _unzstd(payload, info.size)
        return info, content

    def all_objects(self, repo_id: str) -> Iterator[tuple[bytes, ObjectInfo]]:
        """(id, info) of every object of the repository (reads headers only when the
        transaction returns buffers)."""
        skip = len(repo_prefix(repo_id))
        for key, value in scan_prefix(self._raw, self._objects, repo_prefix(repo_id), copy=False):
            info = self._info_from_value(value)
            if info is not None:
                yield key[skip:], info

    def ids_with_prefix(self, repo_id: str, hex_prefix: str) -> list[bytes]:
        """Ids of the repository's objects whose hex form starts with `hex_prefix`."""
        prefix = repo_prefix(repo_id)
        low = bytes.fromhex(hex_prefix.ljust(40, "0"))
        found = []
        with self._raw.cursor(db=self._objects) as cursor:
            if cursor.set_range(prefix + low):
                for key in cursor.iternext(values=False):
                    key = bytes(key)
                    if not key.startswith(prefix):
                        break
                    oid = key[len(prefix) :]
                    if not oid.hex().startswith(hex_prefix):
                        break
                    found.append(oid)
        return found

    def read(self, repo_id: str, oid: bytes, kind: str | None = None) -> bytes:
        """The whole content of an object (use `iter_chunks` for big blobs); with `kind`,
        NotFound unless the object is one. One lookup: history walks read thousands."""
        value = self._value(repo_id, oid, kind)
        return b"".join(self._pieces(repo_id, oid, value))

    def read_piece(self, repo_id: str, oid: bytes, index: int) -> bytes:
        """Piece `index` of an object's content: pieces are CHUNK_SIZE bytes (the last shorter),
        so a big blob can be read piece by piece, each in a short transaction."""
        value = self._value(repo_id, oid)
        if HEADER.unpack_from(value)[1] != CHUNKED:
            return b"".join(self._pieces(repo_id, oid, value))
        return self.read_chunk(repo_id, _chunk_id(oid, value), index)

    def read_chunk(self, repo_id: str, chunk_id: bytes, index: int) -> bytes:
        """Chunk `index` of the chunks stored under `chunk_id`, decoded."""
        chunk = self._raw.get(
            object_key(repo_id, chunk_id) + CHUNK_INDEX.pack(index), db=self._chunks
        )
        if chunk is None:
            raise NotFound(f"chunk {index} of object {chunk_id.hex()} is missing")
        return _decode_chunk(chunk)

    def iter_chunks(self, repo_id: str, oid: bytes) -> Iterator[bytes]:
        """The content in storage-sized pieces, decoded one at a time."""
        return self._pieces(repo_id, oid, self._value(repo_id, oid))

    def _value(self, repo_id: str, oid: bytes, kind: str | None = None) -> Any:
        """The stored value of an object (of `kind`, if given), else NotFound."""
        value = self._raw.get(object_key(repo_id, oid), db=self._objects)
        if value is None or (kind is not None and KIND_NAMES[value[0]] != kind):
            raise NotFound(f"{kind or 'object'} {oid.hex()} not found in repository {repo_id!r}")
        return value

    def _pieces(self, repo_id: str, oid: bytes, value: Any) -> Iterator[bytes]:
        _, encoding, size = HEADER.unpack_from(value)
        payload = memoryview(value)[HEADER.size :]
        if encoding == RAW:
            yield bytes(payload)
        elif encoding == ZSTD:
            yield _unzstd(payload, size)
        elif encoding == DELTA:
            yield self._undelta(repo_id, payload, size)
        elif encoding == CHUNKED:
            _, count, _ = CHUNK_HEADER.unpack_from(payload)
            chunk_id = _chunk_id(oid, value)
            for index in range(count):
                yield self.read_chunk(repo_id, chunk_id, index)
        else:
            raise ValueError(f"unknown object encoding {encoding} for {oid.hex()}")

    def _undelta(self, repo_id: str, payload: memoryview, size: int) -> bytes:
        base = self.read(repo_id, bytes(payload[:20]))
        dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        return zstandard.ZstdDecompressor(dict_data=dictionary).decompress(
            payload[21:], max_output_size=size
        )

    @staticmethod
    def _info_from_value(value: Any) -> ObjectInfo | None:
        if value is None:
            return None
        kind, encoding, size = HEADER.unpack_from(value)
        payload_len = len(value) - HEADER.size
        if encoding == CHUNKED:
            _, _, stored = CHUNK_HEADER.unpack_from(value, HEADER.size)
            return ObjectInfo(KIND_NAMES[kind], encoding, size, stored)
        if encoding == DELTA:
            base = bytes(value[HEADER.size : HEADER.size + 20])
            depth = value[HEADER.size + 20]
            return ObjectInfo(KIND_NAMES[kind], encoding, size, payload_len - 21, base, depth)
        return ObjectInfo(KIND_NAMES[kind], encoding, size, payload_len)


_UPLOAD_PREFIX = b"upload/"


def _chunk_id(oid: bytes, value: Any) -> bytes:
    """The id a chunked object's chunks are stored under (its own, unless written while it was
    still arriving)."""
    start = HEADER.size + CHUNK_HEADER.size
    return bytes(value[start : start + 20]) if len(value) > start else oid


def _decode_chunk(chunk: bytes | memoryview) -> bytes:
    if chunk[0] == ZSTD:
        return _unzstd(chunk[1:])
    return bytes(chunk[1:])
