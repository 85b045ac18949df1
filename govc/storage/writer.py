"""The single writer: one thread owns every LMDB write transaction (group commit).

LMDB requires a write transaction to begin and commit on the same OS thread, and durable
throughput comes from batching: the writer takes every operation queued while it was busy,
applies them in one transaction (each in a nested transaction, so a failing operation leaves no
trace while its neighbours commit), commits once (one fsync), and only then resolves the callers'
futures. An acknowledged write is therefore on disk.

A commit that fails fails every operation of its group (nothing of it is stored, nothing
acknowledged before is touched) and the writer carries on: a full disk answers
RESOURCE_EXHAUSTED "no space left on device" until space returns, then writes succeed again.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

import lmdb

from govc.errors import GovcError, ResourceExhausted, StorageFull, Unavailable
from govc.storage.txn import Txn

if TYPE_CHECKING:
    from govc.storage.env import Storage

log = logging.getLogger(__name__)

T = TypeVar("T")

# An operation receives the write transaction and returns its result. It must not touch any
# state outside the transaction: the whole batch is re-run if the map has to grow.
WriteOp = Callable[[Txn], T]

MAX_BATCH = 1024
_STOP = object()

# A commit that failed with EIO while the filesystem had less than this free was a full disk:
# LMDB reports a short write (the disk filled in the middle of it) as EIO, and a short write
# leaves the filesystem with next to nothing free.
DISK_FULL_FREE_BYTES = 8 << 20

# py-lmdb raises DiskError for ENOSPC and a plain lmdb.Error naming the OS error for the
# others; it keeps no errno, only LMDB's message ("mdb_txn_commit: <strerror>").
_EIO_TEXT = os.strerror(errno.EIO)
_QUOTA_TEXTS = (os.strerror(errno.EDQUOT), os.strerror(errno.EFBIG))


def _commit_transaction(txn: Any) -> None:
    """Commit the group's transaction: writes its pages, fsyncs (durable mode), writes the
    meta page. The one place a full disk shows up (tests inject failures here)."""
    txn.commit()


def free_bytes(path: str) -> int:
    """Bytes this process may still write on the filesystem holding `path`."""
    st = os.statvfs(path)
    return int(st.f_bavail) * int(st.f_frsize)


def storage_error(exc: BaseException, path: str) -> GovcError:
    """The domain error for a write transaction that failed to commit (or to spill pages)."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, lmdb.DiskError):  # ENOSPC
        return StorageFull(f"storage write failed: no space left on device ({detail})")
    if isinstance(exc, lmdb.Error):
        if any(text in detail for text in _QUOTA_TEXTS):
            return StorageFull(f"storage write failed: no space left on device ({detail})")
        if _EIO_TEXT in detail:
            try:
                free = free_bytes(path)
            except OSError:
                free = None
            if free is not None and free < DISK_FULL_FREE_BYTES:
                return StorageFull(
                    f"storage write failed: no space left on device ({detail}; {free} bytes free)"
                )
    return Unavailable(f"storage write failed: {detail}")


def _is_disk_error(exc: BaseException) -> bool:
    """An LMDB error from writing to the data file (spilled pages), not from an operation."""
    if isinstance(exc, lmdb.DiskError):
        return True
    if type(exc) is lmdb.Error:
        detail = str(exc)
        return _EIO_TEXT in detail or any(text in detail for text in _QUOTA_TEXTS)
    return False


class _Between:
    """Work for the writer thread with no write transaction open (see `Writer.between`)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()


class Writer:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        #: Number of committed write transactions and of operations in them (tests, metrics).
        self.commits = 0
        self.operations = 0
        #: Why the last write transaction failed to commit, until one commits again (health).
        self.last_failure: str | None = None
        #: The error of that failure: `StorageFull` for a full disk (health says `degraded`).
        self.last_error: GovcError | None = None
        self._thread = threading.Thread(target=self._run, name="govc-writer", daemon=True)
        self._thread.start()

    def submit(self, op: WriteOp[T]) -> Future[T]:
        """Queue `op`; the future resolves after the transaction that ran it is durable."""
        fut: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise Unavailable("storage is closing; no more writes are accepted")
            self._queue.put((op, fut))
        return fut

    def between(self, fn: Callable[[], T]) -> Future[T]:
        """Run `fn` on the writer thread between two transactions, when none is open (LMDB's
        `set_mapsize` needs that)."""
        item = _Between(fn)
        with self._lock:
            if self._closed:
                raise Unavailable("storage is closing; no more writes are accepted")
            self._queue.put(item)
        return item.future

    @property
    def alive(self) -> bool:
        """Whether the writer thread runs and takes writes."""
        return self._thread.is_alive() and not self._closed

    def is_current_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def close(self) -> None:
        """Finish every queued operation, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            batch: list[tuple[WriteOp[Any], Future[Any]]] = []
            while True:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, _Between):
                    if batch:  # what was queued before it commits first
                        self._commit(batch)
                        batch = []
                    self._run_between(item)
                else:
                    batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[tuple[WriteOp[Any], Future[Any]]]) -> None:
        """Commit `batch`; whatever goes wrong, resolve every future and keep the thread."""
        try:
            self._commit_batch(batch)
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            log.exception("group commit failed unexpectedly")
            error = Unavailable(f"storage write failed: {exc or type(exc).__name__}")
            self._record_failure(error)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(Unavailable(error.message))

    def _record_failure(self, error: GovcError) -> None:
        self.last_error = error
        self.last_failure = error.message

    @staticmethod
    def _run_between(item: _Between) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        try:
            item.future.set_result(item.fn())
        except BaseException as exc:
            item.future.set_exception(exc)

    def _commit_batch(self, batch: list[tuple[WriteOp[Any], Future[Any]]]) -> None:
        live = [(op, fut) for op, fut in batch if fut.set_running_or_notify_cancel()]
        if not live:
            return
        env, dbs = self._storage.env, self._storage.dbs
        while True:
            outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
            try:
                txn = env.begin(write=True, buffers=True)
                try:
                    for op, fut in live:
                        outcomes.append((fut, *self._apply(env, dbs, txn, op)))
                    _commit_transaction(txn)
                finally:
                    txn.abort()  # a no-op after a commit; after a failed one, frees the lock
            except lmdb.MapFullError:
                # The map (LMDB's size limit, virtual) is full, not the disk: grow and retry.
                try:
                    self._storage.grow_map()
                except Exception as exc:
                    log.exception("could not grow the storage map")
                    self._fail(
                        live,
                        ResourceExhausted(
                            f"storage map is full ({self._storage.map_size} bytes) and could "
                            f"not grow: {exc or type(exc).__name__}"
                        ),
                    )
                    return
                continue
            except lmdb.MapResizedError:
                self._storage.adopt_map_size()
                continue
            except Exception as exc:  # the commit itself failed: nothing of the batch is stored
                error = storage_error(exc, self._storage.config.path)
                if isinstance(error, StorageFull):
                    log.error("write transaction of %d operations failed: %s", len(live), exc)
                else:
                    log.exception("write transaction failed")
                self._fail(live, error)
                return
            break
        self.commits += 1
        self.operations += len(live)
        if self.last_error is not None:
            log.info("storage writes succeed again")
        self.last_failure = None
        self.last_error = None
        for fut, result, failed in outcomes:
            if failed is None:
                fut.set_result(result)
            else:
                fut.set_exception(failed)

    def _fail(self, live: list[tuple[WriteOp[Any], Future[Any]]], error: GovcError) -> None:
        """Every operation of a group that did not commit fails with the group's error."""
        self._record_failure(error)
        for _, fut in live:  # one exception each: each caller's traceback is its own
            fut.set_exception(type(error)(error.message))

    @staticmethod
    def _apply(
        env: Any, dbs: dict[str, Any], txn: Any, op: WriteOp[Any]
    ) -> tuple[Any, BaseException | None]:
        try:
            with env.begin(write=True, parent=txn, buffers=True) as child:
                return op(Txn(env, child, dbs, write=True)), None
        except (lmdb.MapFullError, lmdb.MapResizedError):
            raise
        except lmdb.Error as exc:
            if _is_disk_error(exc):  # spilling pages hit the disk: the whole group fails
                raise
            log.exception("write operation failed")
            return None, exc
        except GovcError as exc:
            return None, exc
        except Exception as exc:  # a bug in an operation must not take its batch down
            log.exception("write operation failed")
            return None, exc
