"""Shared fixtures: a real server on an ephemeral port over a real LMDB data dir, its clock
set by the test."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from govc.client import GovcClient
from govc.server import GovcServer, ServerConfig


class Clock:
    """A server clock the test sets, so commit ids can be compared with git's."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def server(tmp_path: Path, clock: Clock) -> AsyncIterator[GovcServer]:
    srv = GovcServer(ServerConfig(data_dir=str(tmp_path / "data"), grpc_port=0, clock=clock))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def client(server: GovcServer) -> AsyncIterator[GovcClient]:
    async with GovcClient(f"127.0.0.1:{server.port}") as c:
        yield c
