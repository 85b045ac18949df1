"""A 512 MiB blob goes up and down through the server without the server holding it."""

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from govc.client import GovcClient
from tests.serverproc import ServerProcess

MIB = 1024 * 1024
SIZE = 512 * MIB
ALLOWED_GROWTH = 128 * MIB


def peak_rss(pid: int) -> int:
    """VmHWM: the process's peak resident set, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


class Sha256Sink:
    """A binary writer that keeps only a digest of what it is given."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return len(data)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
async def test_512_mib_up_and_down_without_holding_it(tmp_path: Path) -> None:
    sent = hashlib.sha256()
    block = os.urandom(MIB)

    async def content() -> AsyncIterator[bytes]:
        for n in range(SIZE // MIB):
            piece = n.to_bytes(8, "big") + block[8:]  # distinct pieces, one buffer reused
            sent.update(piece)
            yield piece

    with ServerProcess(tmp_path / "data") as server:
        async with GovcClient(server.target, timeout=600) as client:
            await client.create_repository("big")
            baseline = peak_rss(server.pid)
            started = time.monotonic()
            stored = await client.upload("big", content(), total_size=SIZE, chunk_size=MIB)
            assert stored.size == SIZE and stored.checksum == sent.hexdigest()
            sink = Sha256Sink()
            await client.download("big", stored.hash, sink, chunk_size=MIB)  # type: ignore[arg-type]
            assert sink.size == SIZE and sink.digest.hexdigest() == sent.hexdigest()
            growth = peak_rss(server.pid) - baseline
            assert growth < ALLOWED_GROWTH, (
                f"server peak RSS grew by {growth / MIB:.0f} MiB moving {SIZE // MIB} MiB "
                f"in {time.monotonic() - started:.1f} s"
            )
