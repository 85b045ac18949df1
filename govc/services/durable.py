"""Awaiting writes: the bridge from the writer thread's futures to the event loop.

`asyncio.wrap_future` wakes the loop once per write; under load the writer commits dozens of
writes at a time, so this bridge collects finished writes and wakes the loop once for all of
those that finish before it gets to run, settling every waiting call in that one callback.
"""

import asyncio
from collections import deque
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class DurableWaiter:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: dict[Future[Any], asyncio.Future[Any]] = {}
        self._done: deque[Future[Any]] = deque()  # appended from the writer thread
        self._scheduled = False

    def wait(self, future: Future[T]) -> asyncio.Future[T]:
        """An awaitable that completes (on this loop) when the write is durable."""
        waiter: asyncio.Future[T] = self._loop.create_future()
        self._pending[future] = waiter
        future.add_done_callback(self._on_done)  # runs at once if already done
        return waiter

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
            waiter = self._pending.pop(future)
            if waiter.cancelled():
                continue
            error = future.exception()
            if error is None:
                waiter.set_result(future.result())
            else:
                waiter.set_exception(error)
