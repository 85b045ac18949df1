"""The indexer survives its own errors: with the open-file limit reached (EMFILE from tantivy,
and from its rollback too) the indexer thread stays alive, health says `degraded` and why,
searches answer UNAVAILABLE with that reason at once, and once the cause goes away everything
recovers by itself: health, searches, and the index catches up with the writes made meanwhile.
Also: the helper that raises the open file limit at start, and health's open file count."""

import asyncio
import errno
import os
import resource
import threading
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest
from grpclib.const import Status

from govc.client import GovcClient, GovcRpcError
from govc.server import GovcServer
from govc.services.health import raise_open_file_limit
from tests.polling import poll_until

R = "hardening"
EMFILE = os.strerror(errno.EMFILE)  # "Too many open files"


class _Fault:
    """While set, every call of the index writer that changes the index (the rollback too)
    fails as it does once the process has reached its open file limit."""

    def __init__(self) -> None:
        self.on = threading.Event()
        self.calls = 0  # of the writer while failing

    def check(self) -> None:
        if self.on.is_set():
            self.calls += 1
            raise OSError(errno.EMFILE, EMFILE)


class _FaultyWriter:
    """A tantivy IndexWriter that fails while `fault` is on."""

    def __init__(self, writer: Any, fault: _Fault) -> None:
        self._writer = writer
        self._fault = fault

    def add_document(self, *args: Any) -> Any:
        self._fault.check()
        return self._writer.add_document(*args)

    def delete_documents_by_term(self, *args: Any) -> Any:
        self._fault.check()
        return self._writer.delete_documents_by_term(*args)

    def commit(self) -> Any:
        self._fault.check()
        return self._writer.commit()

    def rollback(self) -> Any:
        self._fault.check()
        return self._writer.rollback()

    def __getattr__(self, name: str) -> Any:  # wait_merging_threads, ...
        return getattr(self._writer, name)


async def _error(call: Awaitable[object]) -> GovcRpcError:
    with pytest.raises(GovcRpcError) as info:
        # A hang (waiting for an index that cannot follow) would fail here, as would a search
        # answered from an index that lacks the write.
        await asyncio.wait_for(call, 5)
    return info.value


async def test_the_indexer_survives_emfile_and_recovers_by_itself(
    client: GovcClient, server: GovcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer = server.indexer
    assert indexer is not None and indexer._thread is not None
    thread = indexer._thread
    await client.create_repository(R)
    await client.add_file(R, "before.txt", b"aardvark\n")
    assert (await client.search(R, "aardvark")).total == 1
    health = await client.health()
    assert health.status == "healthy", health.checks
    assert int(health.checks["open_files"]) > 0
    assert health.checks["open_files_limit"]

    fault = _Fault()
    # Every writer the indexer has, and any new one it opens, fails while the fault is on.
    indexer._writer = _FaultyWriter(indexer._writer, fault)  # type: ignore[assignment]
    open_writer = indexer._open_writer
    monkeypatch.setattr(indexer, "_open_writer", lambda: _FaultyWriter(open_writer(), fault))
    fault.on.set()
    try:
        await client.add_file(R, "during.txt", b"marmoset\n")

        async def degraded() -> dict[str, str] | None:
            health = await client.health()
            return dict(health.checks) if health.status == "degraded" else None

        checks = await poll_until(degraded, message="health never said degraded")
        assert EMFILE in checks["search_index"], checks
        assert checks["search_catch_up"] == "done"
        # It retries (with backoff), in the same thread, which stays alive.
        calls = fault.calls
        await poll_until(lambda: fault.calls > calls, message="the indexer never retried")
        assert thread.is_alive() and indexer._thread is thread
        assert indexer.failure is None

        error = await _error(client.search(R, "marmoset"))
        assert error.status == Status.UNAVAILABLE, error
        assert EMFILE in error.message, error.message
        error = await _error(client.search_with_aggregation(R, "marmoset", ["extension"]))
        assert error.status == Status.UNAVAILABLE, error
        assert EMFILE in error.message, error.message
    finally:
        fault.on.clear()

    async def healthy() -> bool:
        health = await client.health()
        return health.status == "healthy" and health.checks["search_index"] == "ok"

    await poll_until(healthy, message="health never recovered")
    assert thread.is_alive()
    found = await client.search(R, "marmoset")
    assert [r.document.path for r in found.results if r.document] == ["during.txt"]
    assert (await client.search(R, "aardvark")).total == 1
    # ...and it goes on indexing.
    await client.add_file(R, "after.txt", b"narwhal\n")
    assert (await client.search(R, "narwhal")).total == 1


@pytest.fixture
def soft_limit() -> Iterator[tuple[int, int]]:
    """The open file limits, put back after the test."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield limits
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_the_open_file_limit_is_raised_to_the_hard_limit(soft_limit: tuple[int, int]) -> None:
    soft, hard = soft_limit
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit of open files")
    lowered = min(hard - 1, max(soft // 2, len(os.listdir("/proc/self/fd")) + 64))
    if lowered <= 0:
        pytest.skip("the hard limit leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    assert raise_open_file_limit() == (hard, hard)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    # Already at the hard limit: left as it is.
    assert raise_open_file_limit() == (hard, hard)
