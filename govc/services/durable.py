"""Awaiting writes: the bridge from the writer thread's futures to the event loop.

`asyncio.wrap_future` wakes the loop once per write; under load the writer commits dozens of
writes at a time, so this bridge wakes the loop once per committed batch and settles every
waiting call in that one callback.
"""

import asyncio
from concurrent.futures import Future
from typing import Any, TypeVar

from govc.storage.writer import Writer

T = TypeVar("T")


class DurableWaiter:
    def __init__(self, writer: Writer, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: dict[Future[Any], asyncio.Future[Any]] = {}
        self._scheduled = False
        writer.add_commit_listener(self._on_commit)

    def wait(self, future: Future[T]) -> asyncio.Future[T]:
        """An awaitable that completes (on this loop) when the write is durable."""
        waiter: asyncio.Future[T] = self._loop.create_future()
        if future.done():
            _settle(future, waiter)
        else:
            self._pending[future] = waiter
        return waiter

    def _on_commit(self) -> None:  # writer thread
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                self._scheduled = False

    def _drain(self) -> None:
        self._scheduled = False
        done = [f for f in self._pending if f.done()]
        for future in done:
            _settle(future, self._pending.pop(future))


def _settle(future: Future[Any], waiter: asyncio.Future[Any]) -> None:
    if waiter.cancelled():
        return
    error = future.exception()
    if error is None:
        waiter.set_result(future.result())
    else:
        waiter.set_exception(error)
