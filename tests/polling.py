"""Wait for a condition, not for a time.

`poll_until` (async) and `wait_until` (blocking) call a predicate until it returns something
truthy, and return that value. The timeout is a hang guard, not an expectation of speed: keep it
generous. When the condition never comes they fail with an AssertionError naming it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
DEFAULT_INTERVAL = 0.01

Message = str | Callable[[], str]


def _failure(message: Message | None, predicate: object, timeout: float) -> AssertionError:
    text = message() if callable(message) else message
    text = text or f"{getattr(predicate, '__name__', predicate)!s} never became true"
    return AssertionError(f"{text} (gave up after {timeout:g} s)")


async def poll_until(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    message: Message | None = None,
) -> T:
    """Await `predicate()` (sync or async) every `interval` s until it is truthy; its value.

    `message` (or a function that builds it, called only on failure) says what was awaited.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise _failure(message, predicate, timeout)
        await asyncio.sleep(interval)


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    message: Message | None = None,
) -> T:
    """The blocking `poll_until`, for code outside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failure(message, predicate, timeout)
        time.sleep(interval)
