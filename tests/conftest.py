"""Shared fixtures: a real server on an ephemeral port over a real LMDB data dir, its clock
set by the test.

Test servers run with relaxed durability (no fsync): what they write is thrown away, and only
the tests of durability itself (tests/test_durability.py, servers started with
`durability="durable"`) need acknowledged writes to be on disk. `server_config` builds such a
configuration for tests that start their own server.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from govc.client import GovcClient
from govc.server import GovcServer, ServerConfig


class Clock:
    """A server clock the test sets, so commit ids can be compared with git's."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def server_config(data_dir: Path | str, **options: Any) -> ServerConfig:
    """A server configuration for tests: ephemeral port, relaxed durability, then `options`."""
    settings: dict[str, Any] = {"grpc_port": 0, "durability": "relaxed", **options}
    return ServerConfig(data_dir=str(data_dir), **settings)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def server(tmp_path: Path, clock: Clock) -> AsyncIterator[GovcServer]:
    srv = GovcServer(server_config(tmp_path / "data", clock=clock))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def client(server: GovcServer) -> AsyncIterator[GovcClient]:
    async with GovcClient(f"127.0.0.1:{server.port}") as c:
        yield c


@pytest.fixture
async def limited(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[GovcServer]:
    """A server with the settings the test parametrizes (indirect=True): `request.param` is a
    dict of ServerConfig options."""
    srv = GovcServer(server_config(tmp_path / "data", **request.param))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()
