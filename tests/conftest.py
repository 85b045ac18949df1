"""Shared fixtures: a real server on an ephemeral port over a real LMDB data dir."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from govc.client import GovcClient
from govc.server import GovcServer, ServerConfig


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[GovcServer]:
    srv = GovcServer(ServerConfig(data_dir=str(tmp_path / "data"), grpc_port=0))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def client(server: GovcServer) -> AsyncIterator[GovcClient]:
    async with GovcClient(f"127.0.0.1:{server.port}") as c:
        yield c
