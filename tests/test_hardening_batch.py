"""BatchOperations under attack: one response budget for the whole call, parallel or not."""

import asyncio
import threading
import time
from pathlib import Path

from generated.govc import BatchOperation, BatchOperationsRequest
from govc.client import GovcClient
from govc.server import GovcServer
from tests.conftest import server_config

MiB = 1024 * 1024
R = "hardening"


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class _PeakRss:
    """The process's highest resident size while it runs (sampled; the server runs here)."""

    def __init__(self) -> None:
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> "_PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


async def test_parallel_reads_share_one_response_budget(tmp_path: Path) -> None:
    """150 parallel reads of a 2 MB file made a 300 MB answer (each read had its own 16 MiB
    budget); now they share the call's one budget: the answer stays under the message limit,
    the reads past it fail with the budget's error, and memory stays bounded."""
    limit = 16 * MiB
    server = GovcServer(server_config(tmp_path / "data", max_message_bytes=limit))
    await server.start()
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as c:
            await c.create_repository(R)
            size = 2_000_000
            await c.add_file(R, "big.txt", b"x" * size)
            ops = [
                BatchOperation(id=f"r{i}", type="read", params=b'{"path": "big.txt"}')
                for i in range(150)
            ]
            request = BatchOperationsRequest(repository_id=R, operations=ops, parallel=True)
            before = _rss()
            with _PeakRss() as rss:
                response = await c.stub.batch_operations(request)
            assert len(bytes(response)) < limit
            ok = [r for r in response.results if r.success]
            failed = [r for r in response.results if not r.success]
            assert len(ok) == limit // size  # (8 fit, the ninth would not)
            assert all(len(r.result) > size for r in ok)
            assert len(failed) == 150 - len(ok)
            assert all("message limit" in r.error and "StreamBlob" in r.error for r in failed)
            assert response.results[0].success and not response.results[-1].success
            # Old: ~1.2 GB. Now: the answer (16 MiB, a few copies: results, encoded response,
            # the client's copy) and the reads in flight.
            assert rss.peak - before < 150 * MiB, (rss.peak - before) // MiB
            # Sequential mode keeps the same bound.
            sequential = BatchOperationsRequest(repository_id=R, operations=ops)
            response = await c.stub.batch_operations(sequential)
            assert sum(r.success for r in response.results) == limit // size
    finally:
        await server.stop()


async def test_parallel_sql_shares_the_response_budget(tmp_path: Path) -> None:
    """Query rows count against the same budget as file contents, across parallel reads."""
    limit = 4 * MiB
    server = GovcServer(server_config(tmp_path / "data", max_message_bytes=limit))
    await server.start()
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as c:
            await c.create_repository(R)
            b = c.batch(R, parallel=True)
            query = (
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 100) "
                "SELECT printf('%.10000c', 'x') AS v FROM n"
            )  # 1 MB of rows each
            for i in range(10):
                b.query(sql=query, op_id=f"q{i}")
            started = time.monotonic()
            outcome = await b.run()
            assert time.monotonic() - started < 5
            assert 1 <= sum(r.success for r in outcome.results) <= 4
            assert any("message limit" in r.error for r in outcome.results)
    finally:
        await server.stop()


async def test_concurrent_batches_are_each_bounded(tmp_path: Path) -> None:
    """Each call has its own budget: two at once both get their share."""
    limit = 4 * MiB
    server = GovcServer(server_config(tmp_path / "data", max_message_bytes=limit))
    await server.start()
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as c:
            await c.create_repository(R)
            await c.add_file(R, "f.txt", b"y" * 1_000_000)

            async def run() -> int:
                b = c.batch(R, parallel=True)
                for _ in range(20):
                    b.read("f.txt")
                return sum(r.success for r in (await b.run()).results)

            assert await asyncio.gather(run(), run()) == [4, 4]
    finally:
        await server.stop()
