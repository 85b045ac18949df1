"""The single writer: one thread owns every LMDB write transaction (group commit).

LMDB requires a write transaction to begin and commit on the same OS thread, and durable
throughput comes from batching: the writer takes every operation queued while it was busy,
applies them in one transaction (each in a nested transaction, so a failing operation leaves no
trace while its neighbours commit), commits once (one fsync), and only then resolves the callers'
futures. An acknowledged write is therefore on disk.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

import lmdb

from govc.errors import GovcError, Unavailable
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

    @staticmethod
    def _run_between(item: _Between) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        try:
            item.future.set_result(item.fn())
        except BaseException as exc:
            item.future.set_exception(exc)

    def _commit(self, batch: list[tuple[WriteOp[Any], Future[Any]]]) -> None:
        live = [(op, fut) for op, fut in batch if fut.set_running_or_notify_cancel()]
        if not live:
            return
        env, dbs = self._storage.env, self._storage.dbs
        while True:
            outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
            try:
                with env.begin(write=True, buffers=True) as txn:
                    for op, fut in live:
                        outcomes.append((fut, *self._apply(env, dbs, txn, op)))
            except lmdb.MapFullError:
                self._storage.grow_map()
                continue
            except lmdb.MapResizedError:
                self._storage.adopt_map_size()
                continue
            except Exception as exc:  # the commit itself failed: nothing of the batch is stored
                log.exception("write transaction failed")
                self.last_failure = str(exc) or type(exc).__name__
                for _, fut in live:
                    fut.set_exception(Unavailable(f"storage write failed: {exc}"))
                return
            break
        self.commits += 1
        self.operations += len(live)
        self.last_failure = None
        for fut, result, error in outcomes:
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)

    @staticmethod
    def _apply(
        env: Any, dbs: dict[str, Any], txn: Any, op: WriteOp[Any]
    ) -> tuple[Any, BaseException | None]:
        try:
            with env.begin(write=True, parent=txn, buffers=True) as child:
                return op(Txn(env, child, dbs, write=True)), None
        except lmdb.MapFullError:
            raise
        except GovcError as exc:
            return None, exc
        except Exception as exc:  # a bug in an operation must not take its batch down
            log.exception("write operation failed")
            return None, exc
