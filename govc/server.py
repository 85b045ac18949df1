"""Assembly: configuration -> storage -> core -> services -> the gRPC door, and its lifetime.

Shutdown drains: health turns NOT_SERVING, the listener closes, new calls are refused, calls in
flight finish (bounded by `drain_timeout`), and only then are connections closed and storage
synced and closed. (grpclib's own `Server.close()` would cancel calls in flight.)
"""

import asyncio
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from govc.core.blobs import Blobs
from govc.core.database import Database
from govc.core.registry import Registry
from govc.core.versioncontrol import VersionControl
from govc.search.engine import SearchEngine
from govc.search.history import History
from govc.search.indexer import DEFAULT_WAIT_SECONDS, Indexer
from govc.search.sql import SqlEngine
from govc.services.access import GC_THRESHOLDS, LOOP_SWITCH_INTERVAL, Access
from govc.services.batch import BatchService
from govc.services.batch_ops import BatchExecutor
from govc.services.blobs import BlobService
from govc.services.handlers import Handlers, missing_rpcs
from govc.services.health import HealthService, raise_open_file_limit
from govc.services.repositories import RepositoryService
from govc.services.search import SearchService
from govc.services.streaming import StreamingService
from govc.services.versioning import VersioningService
from govc.storage import Storage, StorageConfig
from govc.storage.datadir import DataDirLock
from govc.transport import speedups
from govc.transport.grpc import ConnectionLimits, GrpcDoor

log = logging.getLogger("govc.server")

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 4 * 1024 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_MAX_CONNECTIONS_PER_PEER = 100
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_MAX_CONCURRENT_STREAMS = 128
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEPALIVE_SECONDS = 60.0
DEFAULT_KEEPALIVE_TIMEOUT = 20.0


@dataclass
class ServerConfig:
    data_dir: str = "./govc-data"
    host: str = "127.0.0.1"
    grpc_port: int = 9090
    rest_port: int = 8080
    durability: str = "durable"  # or "relaxed": no fsync, for throwaway CI workloads
    ephemeral: bool = False  # temporary data dir removed at exit
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    drain_timeout: float = 30.0
    # HTTP/2 connection limits (see govc.transport.grpc.ConnectionLimits): connections in all
    # and per peer address (more are closed at accept), seconds a connection may sit without
    # an open stream or a frame (then GOAWAY; 0: no limit), and the streams one connection may
    # have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_peer: int = DEFAULT_MAX_CONNECTIONS_PER_PEER
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    # Seconds a connection has for its preface and first complete HEADERS, and for any later
    # header block once started (slowloris); then it is closed.
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    # After this many seconds without a frame on a connection with open calls, PING it (0: no
    # pings); no PING ACK within `keepalive_timeout` s: the connection is closed, calls cancelled.
    keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    # A stream whose peer neither reads nor sends for this long is ended (DEADLINE_EXCEEDED)
    # and its memory released; uploads beyond the cap are RESOURCE_EXHAUSTED.
    stream_stall_seconds: float = 30.0
    max_concurrent_uploads: int = 64
    initial_map_size: int = 1 << 30
    # How long a search waits for the index to catch up with the writes before it (then:
    # UNAVAILABLE).
    index_wait_seconds: float = DEFAULT_WAIT_SECONDS
    # Where commit times come from; tests fix it to compare ids with git's.
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.durability not in ("durable", "relaxed"):
            raise ValueError(f"durability must be durable or relaxed, not {self.durability!r}")
        if self.max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        if not self.index_wait_seconds > 0:
            raise ValueError("index_wait_seconds must be positive")
        if not self.stream_stall_seconds > 0:
            raise ValueError("stream_stall_seconds must be positive")
        if self.max_concurrent_uploads < 1:
            raise ValueError("max_concurrent_uploads must be at least 1")
        self.connection_limits()  # ValueError if a limit is out of range

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            max_connections=self.max_connections,
            max_connections_per_peer=self.max_connections_per_peer,
            idle_timeout=self.idle_timeout,
            max_concurrent_streams=self.max_concurrent_streams,
            header_timeout=self.header_timeout,
            keepalive_seconds=self.keepalive_seconds,
            keepalive_timeout=self.keepalive_timeout,
        )


class _InterpreterTuning:
    """The interpreter's switch interval and collector thresholds, set for serving while any
    server of this process runs (see `govc.services.access`) and put back when the last one
    stops."""

    _lock = threading.Lock()
    _servers = 0
    _saved: tuple[float, tuple[int, int, int]] = (0.0, (0, 0, 0))

    @classmethod
    def apply(cls) -> None:
        with cls._lock:
            if cls._servers == 0:
                cls._saved = (sys.getswitchinterval(), gc.get_threshold())
                sys.setswitchinterval(min(cls._saved[0], LOOP_SWITCH_INTERVAL))
                gc.set_threshold(*GC_THRESHOLDS)
            cls._servers += 1

    @classmethod
    def restore(cls) -> None:
        with cls._lock:
            cls._servers -= 1
            if cls._servers == 0:
                interval, thresholds = cls._saved
                sys.setswitchinterval(interval)
                gc.set_threshold(*thresholds)


class StartError(RuntimeError):
    """The server cannot start (its port is taken, say); the message says why."""


class GovcServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._temp_dir: str | None = None
        self._lock: DataDirLock | None = None
        self.storage: Storage | None = None
        self._access: Access | None = None
        self._speedups: speedups.Patch | None = None
        self.indexer: Indexer | None = None
        self._door: GrpcDoor | None = None
        self.port = 0

    async def start(self) -> None:
        """Open the data dir and listen. DataDirInUse if another server holds the data dir,
        StartError if the port cannot be bound; either way nothing is left open."""
        try:
            await self._start()
        except BaseException:
            await self._close_resources()
            raise

    async def _start(self) -> None:
        self._speedups = speedups.apply()
        _InterpreterTuning.apply()
        soft, hard = raise_open_file_limit()
        log.info("open file limit: %d (hard limit %d)", soft, hard)
        config = self.config
        data_dir = config.data_dir
        if config.ephemeral:
            self._temp_dir = data_dir = tempfile.mkdtemp(prefix="govc-ephemeral-")
        started = time.monotonic()
        self._lock = DataDirLock(data_dir)
        self._lock.acquire()
        self.storage = storage = Storage(
            StorageConfig(
                path=data_dir,
                durable=config.durability == "durable",
                initial_map_size=config.initial_map_size,
            )
        )
        registry = Registry()
        db = Database(storage, registry)
        blobs = Blobs(db)
        vc = VersionControl(clock=config.clock)
        history = History(vc)
        self.indexer = indexer = await asyncio.to_thread(
            Indexer, storage, registry, vc, history, os.path.join(data_dir, "search")
        )
        indexer.start(asyncio.get_running_loop())
        changed = indexer.touch
        sql = SqlEngine(storage, vc, history, max_bytes=config.max_message_bytes)
        self._access = access = Access(db, asyncio.get_running_loop())
        handlers = Handlers(
            repositories=RepositoryService(access, registry, changed),
            blobs=BlobService(access, blobs, config.max_message_bytes),
            batch=BatchService(
                access,
                BatchExecutor(
                    vc, config.max_message_bytes, lambda txn, r, q: sql.query(r, q, txn).rows
                ),
                changed,
            ),
            versioning=VersioningService(access, vc, changed),
            search=SearchService(
                access,
                sql,
                SearchEngine(storage, registry, vc, indexer),
                indexer,
                clock=config.clock,
                index_wait_seconds=config.index_wait_seconds,
            ),
            streaming=StreamingService(
                access,
                blobs,
                config.max_upload_bytes,
                stall_seconds=config.stream_stall_seconds,
                max_uploads=config.max_concurrent_uploads,
            ),
            health=HealthService(db, indexer, started),
        )
        if missing := missing_rpcs():
            raise TypeError(f"no handler serves {', '.join(missing)}")
        self._door = door = GrpcDoor(handlers, config.max_message_bytes, config.connection_limits())
        try:
            self.port = await door.start(config.host, config.grpc_port)
        except OSError as exc:
            self._door = None
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartError(
                f"cannot listen on {config.host}:{config.grpc_port}: {reason}"
            ) from None
        log.info(
            "govc serving gRPC on %s:%d, data dir %s (%s%s), max message %d bytes; "
            "REST port %d reserved (REST gateway not served by this version)",
            config.host,
            self.port,
            data_dir,
            config.durability,
            ", ephemeral" if config.ephemeral else "",
            config.max_message_bytes,
            config.rest_port,
        )

    async def stop(self) -> None:
        """Drain and stop; safe to call more than once."""
        if self._door is None:
            return
        door, self._door = self._door, None
        await door.drain(self.config.drain_timeout)
        await self._close_resources()
        log.info("govc stopped")

    async def _close_resources(self) -> None:
        """Close whatever of the index, storage and the data dir is open (once: after a failed
        start, or at the end of `stop`)."""
        patch, self._speedups = self._speedups, None
        if patch is not None:
            patch.undo()
            _InterpreterTuning.restore()
        if self.indexer is not None:
            await asyncio.to_thread(self.indexer.close)
        access, self._access = self._access, None
        if access is not None:
            await asyncio.to_thread(access.close)
        if self.storage is not None:
            await asyncio.to_thread(self.storage.close)
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()
        temp_dir, self._temp_dir = self._temp_dir, None
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)

    async def run_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
            log.info("signal received: draining")
        finally:
            await self.stop()
