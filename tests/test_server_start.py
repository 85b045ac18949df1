"""Starting a server: one server per data dir, and a start that fails leaves nothing open."""

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from govc.client import GovcClient
from govc.server import GovcServer, StartError
from govc.services.access import GC_THRESHOLDS, LOOP_SWITCH_INTERVAL
from govc.storage.datadir import DataDirInUse
from tests.conftest import server_config
from tests.serverproc import REPO_ROOT, ServerProcess

R = "lock-test"


async def _start(data_dir: Path, port: int = 0) -> GovcServer:
    server = GovcServer(server_config(data_dir, grpc_port=port))
    await server.start()
    return server


async def _paths(server: GovcServer, query: str) -> set[str]:
    async with GovcClient(f"127.0.0.1:{server.port}") as c:
        found = await c.search(R, query, limit=100)
        return {r.document.path for r in found.results if r.document}


async def test_a_second_server_on_a_data_dir_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = await _start(data_dir)
    try:
        async with GovcClient(f"127.0.0.1:{first.port}") as c:
            await c.create_repository(R)
            await c.add_file(R, "a.txt", b"alpha beta")
            await c.commit(R, "one")
        assert await _paths(first, "alpha") == {"a.txt"}
        index_files = sorted(os.listdir(data_dir / "search"))

        with pytest.raises(
            DataDirInUse, match=f"data dir {data_dir} is in use .*pid {os.getpid()}"
        ):
            await _start(data_dir)

        # The refused server touched nothing: the first one's index and storage still serve.
        assert sorted(os.listdir(data_dir / "search")) == index_files
        assert await _paths(first, "alpha") == {"a.txt"}
        async with GovcClient(f"127.0.0.1:{first.port}") as c:
            await c.add_file(R, "b.txt", b"alpha gamma")
        assert await _paths(first, "alpha") == {"a.txt", "b.txt"}
    finally:
        await first.stop()

    # Once the first has stopped, the data dir is free again.
    second = await _start(data_dir)
    try:
        assert await _paths(second, "alpha") == {"a.txt", "b.txt"}
    finally:
        await second.stop()


async def test_a_failed_start_releases_the_data_dir(tmp_path: Path) -> None:
    holder = await _start(tmp_path / "one")
    try:
        with pytest.raises(StartError, match=f"cannot listen on 127.0.0.1:{holder.port}: "):
            await _start(tmp_path / "two", port=holder.port)
    finally:
        await holder.stop()
    # The failed server closed its storage and released its data dir: another can open it.
    server = await _start(tmp_path / "two")
    await server.stop()


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "govc.cli", "serve", "--host", "127.0.0.1", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_refuses_a_busy_data_dir_and_port(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data") as running:
        busy_dir = _serve("--data-dir", str(tmp_path / "data"), "--grpc-port", "0")
        assert busy_dir.returncode == 1
        assert busy_dir.stderr.strip().splitlines()[-1] == (
            f"govc serve: data dir {tmp_path / 'data'} is in use by another govc server "
            f"(pid {running.pid})"
        )
        busy_port = _serve("--data-dir", str(tmp_path / "other"), "--grpc-port", str(running.port))
        assert busy_port.returncode == 1
        assert (
            busy_port.stderr.strip()
            .splitlines()[-1]
            .startswith(f"govc serve: cannot listen on 127.0.0.1:{running.port}: ")
        )
        for result in (busy_dir, busy_port):
            assert "Traceback" not in result.stderr


async def test_servers_tune_the_interpreter_while_they_run(tmp_path: Path) -> None:
    """Threads walking history hand the GIL back to the event loop sooner, and the collector
    runs less often, while a server runs; the interpreter's settings are back once the last
    server of the process has stopped."""
    before = sys.getswitchinterval(), gc.get_threshold()
    serving = min(before[0], LOOP_SWITCH_INTERVAL), GC_THRESHOLDS
    first = await _start(tmp_path / "one")
    second = await _start(tmp_path / "two")
    try:
        assert (sys.getswitchinterval(), gc.get_threshold()) == serving
        assert serving[0] < 0.005
        await first.stop()
        assert (sys.getswitchinterval(), gc.get_threshold()) == serving
    finally:
        await first.stop()
        await second.stop()
    assert (sys.getswitchinterval(), gc.get_threshold()) == before
