"""Big blobs go up and down through the server without the server holding them.

The server's peak resident set (VmHWM) is read before and after uploading and downloading a
blob. Streaming costs a fixed amount whatever the size (a write transaction's worth of chunks in
flight, HTTP/2 windows, mapped pages between releases: here about 75 MiB from 32 MiB on), so:

- 64 MiB (run by `make test`): moving 64 MiB may raise the peak by at most HALF_THE_DIFFERENCE
  more than moving 32 MiB does, each on a fresh server. A server that held the whole blob grows
  with it, by about the 32 MiB the sizes differ (this server made to keep every chunk it
  receives: 28 MiB more, and past ALLOWED_GROWTH).
- 512 MiB (slow: `make test-slow`): the peak grows by less than ALLOWED_GROWTH.
"""

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from govc.client import GovcClient
from tests.serverproc import ServerProcess

MIB = 1024 * 1024
ALLOWED_GROWTH = 128 * MIB
SMALL, LARGE = 32 * MIB, 64 * MIB
HALF_THE_DIFFERENCE = (LARGE - SMALL) // 2

needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")


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


async def peak_growth(data_dir: Path, size: int) -> int:
    """Upload and download `size` bytes through a fresh server; how much its peak RSS grew."""
    sent = hashlib.sha256()
    block = os.urandom(MIB)

    async def content() -> AsyncIterator[bytes]:
        for n in range(size // MIB):
            piece = n.to_bytes(8, "big") + block[8:]  # distinct pieces, one buffer reused
            sent.update(piece)
            yield piece

    with ServerProcess(data_dir) as server:
        async with GovcClient(server.target, timeout=600) as client:
            await client.create_repository("big")
            baseline = peak_rss(server.pid)
            stored = await client.upload("big", content(), total_size=size, chunk_size=MIB)
            assert stored.size == size and stored.checksum == sent.hexdigest()
            sink = Sha256Sink()
            await client.download("big", stored.hash, sink, chunk_size=MIB)  # type: ignore[arg-type]
            assert sink.size == size and sink.digest.hexdigest() == sent.hexdigest()
            return peak_rss(server.pid) - baseline


@needs_proc
async def test_64_mib_up_and_down_without_holding_it(tmp_path: Path) -> None:
    small = await peak_growth(tmp_path / "small", SMALL)
    large = await peak_growth(tmp_path / "large", LARGE)
    assert large < ALLOWED_GROWTH, f"server peak RSS grew by {large / MIB:.0f} MiB moving 64 MiB"
    assert large - small < HALF_THE_DIFFERENCE, (
        f"server peak RSS grew by {large / MIB:.0f} MiB moving {LARGE // MIB} MiB but by "
        f"{small / MIB:.0f} MiB moving {SMALL // MIB} MiB: it grows with the blob"
    )


@pytest.mark.slow
@needs_proc
async def test_512_mib_up_and_down_without_holding_it(tmp_path: Path) -> None:
    size = 512 * MIB
    growth = await peak_growth(tmp_path / "data", size)
    assert growth < ALLOWED_GROWTH, (
        f"server peak RSS grew by {growth / MIB:.0f} MiB moving {size // MIB} MiB"
    )
