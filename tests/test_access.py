"""services.Access: writes are followed by their after-write step even when the call that made
them was cancelled (the search indexer must hear of every write that landed)."""

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, cast

import pytest

from govc.core.database import Database
from govc.errors import NotFound
from govc.services.access import Access


class HeldWrites:
    """A stand-in for the core's Database whose writes complete when the test says."""

    def __init__(self) -> None:
        self.pending: list[Future[Any]] = []

    def write(self, repo_id: str | None, fn: Callable[[Any], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self.pending.append(future)
        return future


async def _settled(access: Access, future: Future[Any], outcome: object) -> None:
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
    for _ in range(3):  # the loop hears of the writer's future on its next turn
        await asyncio.sleep(0)


async def _handler(access: Access, told: list[str]) -> object:
    """A handler's write, telling `told` afterwards."""
    return await access.write("r", lambda txn: None, then=lambda: told.append("r"))


@pytest.mark.parametrize("cancel_first", [False, True])
async def test_the_after_write_step_runs_once_the_write_landed(cancel_first: bool) -> None:
    writes = HeldWrites()
    access = Access(cast(Database, writes), asyncio.get_running_loop())
    told: list[str] = []
    try:
        call = asyncio.create_task(_handler(access, told))
        await asyncio.sleep(0)
        if cancel_first:  # the client went away while the write was queued
            call.cancel()
        assert told == []
        await _settled(access, writes.pending[0], "done")
        assert told == ["r"]
        if cancel_first:
            assert call.cancelled()
        else:
            assert await call == "done"
    finally:
        access.close()


async def test_a_failed_write_has_no_after_write_step() -> None:
    writes = HeldWrites()
    access = Access(cast(Database, writes), asyncio.get_running_loop())
    told: list[str] = []
    try:
        call = asyncio.create_task(_handler(access, told))
        await asyncio.sleep(0)
        await _settled(access, writes.pending[0], NotFound("repository 'r' not found"))
        with pytest.raises(NotFound):
            await call
        assert told == []
    finally:
        access.close()
