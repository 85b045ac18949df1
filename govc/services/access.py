"""The one place where handlers reach storage and where blocking work leaves the event loop.

One event loop serves every client, so nothing that can take long runs on it:

* `read` runs a function of a read transaction in the read pool: anything that may walk
  history, flatten trees or read big values (ReadFile, ListCommits, GetStatus, ...).
* `read_inline` runs it on the loop: only for point reads of a few keys (GetRepository, the
  header and content of a small blob), which take microseconds; the thread hop would cost more.
* `write` queues a function of a write transaction to the single writer and completes when it
  is durable (group commit: many writes, one fsync).
* `run` runs any other blocking call (hashing or compressing a big blob, reading a piece of
  one, a search, SQL) in the work pool. These mostly run in C with the GIL released.

The read pool is small on purpose: its work is pure Python that holds the GIL, which the loop
needs too, and every thread competing for it delays the loop's next turn; so two threads keep
small calls fast while long reads queue. They queue apart from the work pool, so a burst of
history walks does not hold up downloads and searches.

For the same reason the server shortens the interpreter's switch interval
(`LOOP_SWITCH_INTERVAL`): a thread walking history in pure Python keeps the GIL until the
interval ends, and the loop needs it back several times per call (after each socket read and
write), so the default 5 ms per hand-over adds up to tens of milliseconds for a small call.
And it raises the collector's first threshold (`GC_THRESHOLDS`): a walk allocates objects by
the million, and each collection stops every thread, the loop's too; fewer, larger young
collections cost the loop less than a pause every 700 allocations.
"""

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from govc.core.database import Database, Txn

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

READ_THREADS = 2
WORK_THREADS = 4
LOOP_SWITCH_INTERVAL = 0.0005  # seconds (Python's default is 0.005)
GC_THRESHOLDS = (50_000, 20, 100)  # Python's default is (700, 10, 10)


class Access:
    def __init__(self, db: Database, loop: asyncio.AbstractEventLoop) -> None:
        self.db = db
        self._loop = loop
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="govc-read")
        self._pool = ThreadPoolExecutor(WORK_THREADS, thread_name_prefix="govc-work")
        self._pending: dict[Future[Any], tuple[asyncio.Future[Any], Callable[[], None] | None]] = {}
        self._done: deque[Future[Any]] = deque()  # appended from the writer thread
        self._scheduled = False

    async def read(self, repo_id: str | None, fn: Callable[[Txn], T]) -> T:
        """`fn` in a read transaction, in the read pool (NOT_FOUND unless `repo_id` exists)."""
        call = functools.partial(self.db.read, repo_id, fn)
        return await self._loop.run_in_executor(self._reads, call)

    def read_inline(self, repo_id: str | None, fn: Callable[[Txn], T]) -> T:
        """`fn` in a read transaction on the loop: for point reads only."""
        return self.db.read(repo_id, fn)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Any blocking call, in the work pool."""
        return await self._loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def write(
        self,
        repo_id: str | None,
        fn: Callable[[Txn], T],
        then: Callable[[], None] | None = None,
    ) -> asyncio.Future[T]:
        """`fn` in the writer's next transaction; completes once that is durable. `then` runs
        (on the loop) when the write succeeded, before the caller resumes, and also when the
        caller was cancelled meanwhile: a write that landed is always followed by it (the
        search indexer is told of every change, whatever became of the call)."""
        return self.durable(self.db.write(repo_id, fn), then)

    def durable(
        self, future: Future[T], then: Callable[[], None] | None = None
    ) -> asyncio.Future[T]:
        """An awaitable for a writer future, completed on this loop.

        `asyncio.wrap_future` wakes the loop once per write; under load the writer commits
        dozens of writes at a time, so finished writes are collected here and the loop is
        woken once for all of those that finish before it gets to run.
        """
        waiter: asyncio.Future[T] = self._loop.create_future()
        self._pending[future] = (waiter, then)
        future.add_done_callback(self._on_done)  # runs at once if already done
        return waiter

    def close(self) -> None:
        self._reads.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _on_done(self, future: Future[Any]) -> None:  # usually the writer thread
        self._done.append(future)
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                self._scheduled = False

    def _drain(self) -> None:
        self._scheduled = False
        while self._done:
            future = self._done.popleft()
            waiter, then = self._pending.pop(future)
            error = future.exception()
            if error is None and then is not None:
                try:
                    then()
                except Exception:  # a bug there must not leave the other waiters hanging
                    log.exception("after-write step failed")
            if waiter.cancelled():
                continue
            if error is None:
                waiter.set_result(future.result())
            else:
                waiter.set_exception(error)
