"""One LMDB environment per data dir, its named databases, and safe map growth.

LMDB's map is virtual address space. We start modestly and double it when a write transaction
hits MapFullError. Growing (`set_mapsize`) is only legal while no transaction is open in this
process, so every read transaction registers with a gate that growth closes and drains first.
"""

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lmdb

from govc.errors import StorageFull, Unavailable
from govc.storage.txn import FORMAT_KEY, Txn

log = logging.getLogger(__name__)

# Named databases, opened once at start-up (LMDB wants them opened before concurrent use).
DATABASES = (
    "meta",  # storage-level facts (format version, unfinished uploads)
    "repos",  # repo id -> JSON metadata
    "repos_by_time",  # created_at (8 bytes BE ns) + repo id -> b""; ListRepositories order
    "refs",  # repo id + "/" + ref name -> value
    "objects",  # repo id + "/" + 20-byte object id -> header + payload
    "chunks",  # object key + 4-byte chunk index -> encoded chunk (blobs above 1 MiB)
    "recent",  # repo id -> recent delta-eligible blobs (delta base candidates)
    "index",  # repo id + "/" + path -> staged entry
    "worktree",  # repo id + "/" + path -> work tree entry
    "checksums",  # object key -> SHA-256 of the content (streamed blobs; derived, cached)
)

FORMAT_VERSION = b"1"

_MADV_DONTNEED = 4
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
if _LIBC is not None:
    _LIBC.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


@dataclass(frozen=True)
class StorageConfig:
    path: str
    durable: bool = True
    initial_map_size: int = 1 << 30
    max_readers: int = 1024


class _ReadGate:
    """Counts open read transactions; map growth waits for zero and holds new readers off.

    Every read passes through here, so the common path is one uncontended lock round trip.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._growing = False
        self._idle = threading.Event()
        self._resumed = threading.Event()
        self._resumed.set()

    def enter(self) -> None:
        while True:
            with self._lock:
                if not self._growing:
                    self._active += 1
                    return
            self._resumed.wait()

    def leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._growing and self._active == 0:
                self._idle.set()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._lock:
            self._growing = True
            self._resumed.clear()
            self._idle.clear()
            drained = self._active == 0
        if not drained:
            self._idle.wait()
        try:
            yield
        finally:
            with self._lock:
                self._growing = False
                self._resumed.set()


class Storage:
    """The LMDB environment of one data dir. Reads: `read()`, a `Txn`. Writes go through
    `self.writer` only: functions of a write `Txn`, applied by the writer thread."""

    def __init__(self, config: StorageConfig) -> None:
        from govc.storage.writer import Writer  # writer needs a constructed Storage

        self.config = config
        os.makedirs(config.path, exist_ok=True)
        self.env = lmdb.open(
            config.path,
            map_size=config.initial_map_size,
            max_dbs=len(DATABASES) + 4,
            max_readers=config.max_readers,
            sync=config.durable,
            metasync=config.durable,
            readahead=False,
            lock=True,
        )
        self.dbs: dict[str, Any] = {name: self.env.open_db(name.encode()) for name in DATABASES}
        self._gate = _ReadGate()
        self._closed = False
        with self.env.begin(write=True) as txn:
            version = txn.get(FORMAT_KEY, db=self.dbs["meta"])
            if version is None:
                txn.put(FORMAT_KEY, FORMAT_VERSION, db=self.dbs["meta"])
            elif version != FORMAT_VERSION:
                raise RuntimeError(
                    f"data dir {config.path} has storage format {version!r}, "
                    f"this govc reads {FORMAT_VERSION!r}"
                )
        self.writer = Writer(self)

    def health(self) -> dict[str, str]:
        """Checks of this storage for GetHealth: a real read, the writer's state, its counts.

        `storage_read` and `storage_write` are "ok", or "failed: <why>" when the check failed,
        or (`storage_write` only) "degraded: <why>" while writes fail for want of disk space:
        reads and searches still work, and writes resume by themselves once space is freed
        (the first write that commits clears it)."""
        checks: dict[str, str] = {}
        try:
            with self.read() as txn:
                txn.format_version()
            checks["storage_read"] = "ok"
        except Exception as exc:
            checks["storage_read"] = f"failed: {exc or type(exc).__name__}"
        writer = self.writer
        if not writer.alive:
            checks["storage_write"] = "failed: the writer is not running"
        elif isinstance(writer.last_error, StorageFull):
            checks["storage_write"] = f"degraded: {writer.last_failure}"
        elif writer.last_failure is not None:
            checks["storage_write"] = f"failed: {writer.last_failure}"
        else:
            checks["storage_write"] = "ok"
        checks["writer_commits"] = str(writer.commits)
        checks["writer_operations"] = str(writer.operations)
        return checks

    def stats(self) -> dict[str, int]:
        """Entries in each database (by name), and `last_page`: the highest page in use, which
        grows only when the data file does (for operators, and for tests that check nothing
        was left behind)."""
        with self.read() as txn:
            counts = txn.entry_counts()
        counts["last_page"] = int(self.env.info()["last_pgno"])
        return counts

    @property
    def map_size(self) -> int:
        return int(self.env.info()["map_size"])

    @contextmanager
    def read(self, buffers: bool = False) -> Iterator["Txn"]:
        """A read transaction. With `buffers=True` values are views valid only inside it."""
        if self._closed:
            raise Unavailable("storage is closed")
        while True:
            self._gate.enter()
            try:
                txn: Any = self.env.begin(buffers=True) if buffers else self.env.begin()
            except lmdb.MapResizedError:
                self._gate.leave()
                self._follow_map()
                continue
            break
        try:
            with txn:
                yield Txn(self.env, txn, self.dbs, write=False)
        finally:
            self._gate.leave()

    def grow_map(self) -> None:
        """Double the map. Called by the writer thread only, with no write transaction open."""
        with self._gate.exclusive():
            new_size = self.map_size * 2
            self.env.set_mapsize(new_size)
            log.info("storage map grown to %d MiB", new_size >> 20)

    def drop_mapped_pages(self) -> None:
        """Unmap the data file's pages from this process; they stay in the page cache.

        LMDB reads through a shared read-only mmap, so every page a read touches stays resident
        in this process: streaming a 1 GiB blob would leave 1 GiB in our RSS. Dropping the
        mapping's pages is safe at any time (the next access faults them back in from the page
        cache) and keeps long streams from bloating the process. Linux only; else a no-op.
        """
        if _LIBC is None:
            return
        data_file = os.path.realpath(os.path.join(self.config.path, "data.mdb"))
        try:
            with open("/proc/self/maps") as maps:
                ranges = [line.split()[0] for line in maps if line.rstrip().endswith(data_file)]
        except OSError:
            return
        for span in ranges:
            start, end = (int(x, 16) for x in span.split("-"))
            _LIBC.madvise(start, end - start, _MADV_DONTNEED)

    def adopt_map_size(self) -> None:
        """Another process (e.g. `govc import` beside a server) grew the map: follow it. On the
        writer thread between transactions only (LMDB refuses while a write is open)."""
        with self._gate.exclusive():
            self.env.set_mapsize(0)

    def _follow_map(self) -> None:
        """A read found the map grown by another process: the writer thread adopts the size
        between two of its transactions; this thread waits for that."""
        if self.writer.is_current_thread():
            self.adopt_map_size()
        else:
            self.writer.between(self.adopt_map_size).result()

    def close(self) -> None:
        if self._closed:
            return
        self.writer.close()
        self._closed = True
        with self._gate.exclusive():
            self.env.sync(True)
            self.env.close()
