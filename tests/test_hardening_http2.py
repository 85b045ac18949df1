"""HTTP/2 abuse through a real server: rapid reset (CVE-2023-44487), connection limits and the
idle timeout (govc.transport.grpc.HardenedProtocol).

The abusive clients are the `h2` library over raw sockets, run in a thread so the server's
event loop (this test's loop) keeps serving a normal GovcClient meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import pytest
from h2.errors import ErrorCodes

from govc.client import GovcClient
from govc.server import GovcServer
from tests.polling import poll_until

REQUEST_HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/govc.GoVCService/GetRepository"),
    (":authority", "localhost"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]
LATENCY_BOUND = 1.0  # seconds a normal call may take while another connection attacks
RSS_GROWTH_BOUND = 40 * 1024 * 1024


class RawH2:
    """A blocking HTTP/2 client connection: the preface sent, frames read into `events`."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.eof = False
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def read(self, timeout: float) -> None:
        """Read what arrives within `timeout` (0: only what is there already)."""
        self.sock.settimeout(timeout or 1e-6)
        try:
            while not self.eof:
                data = self.sock.recv(65536)
                if not data:
                    self.eof = True
                    break
                with contextlib.suppress(h2.exceptions.ProtocolError):  # after a GOAWAY
                    self.events += self.h2.receive_data(data)
                self.sock.settimeout(1e-6)
        except (TimeoutError, BlockingIOError):
            pass
        except ConnectionResetError:
            self.eof = True

    def read_until_eof(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self.read(0.05)

    def goaway(self) -> h2.events.ConnectionTerminated | None:
        for event in self.events:
            if isinstance(event, h2.events.ConnectionTerminated):
                return event
        return None

    def close(self) -> None:
        self.sock.close()


def rapid_reset(port: int, pairs: int, wait: float = 10.0) -> tuple[RawH2, int]:
    """HEADERS + DATA + RST_STREAM `pairs` times, as fast as the socket takes them; the
    connection (read until the server closes it, at most `wait` s) and how many streams were
    sent."""
    conn = RawH2(port)
    sent = 0
    try:
        for i in range(pairs):
            stream_id = 1 + 2 * i
            conn.h2.send_headers(stream_id, REQUEST_HEADERS)
            conn.h2.send_data(stream_id, b"\0\0\0\0\x05hello")
            conn.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            sent += 1
            if sent % 100 == 0:
                conn.flush()
                conn.read(0)
                if conn.goaway() is not None or conn.eof:
                    break
        conn.flush()
    except (BrokenPipeError, ConnectionResetError, h2.exceptions.ProtocolError):
        pass
    conn.read_until_eof(wait)
    return conn, sent


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def live_h2_streams() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, h2.stream.H2Stream))


def connections(server: GovcServer) -> int:
    door = server._door
    assert door is not None
    return int(door._server.connections)


async def test_rapid_reset_gets_goaway_and_spares_other_clients(
    server: GovcServer, client: GovcClient
) -> None:
    await client.create_repository("r")
    await client.get_repository("r")
    streams_before = live_h2_streams()
    rss_before = rss_bytes()
    latencies: list[float] = []

    async def normal_calls(stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            reply = await asyncio.wait_for(client.get_repository("r"), LATENCY_BOUND * 5)
            latencies.append(time.monotonic() - started)
            assert reply.id == "r"
            await asyncio.sleep(0.005)

    stop = asyncio.Event()
    caller = asyncio.create_task(normal_calls(stop))
    results = []
    try:
        for _ in range(3):  # three attacking connections, one after another
            results.append(await asyncio.to_thread(rapid_reset, server.port, 5000))
    finally:
        stop.set()
        await caller  # re-raises any failed normal call

    for conn, sent in results:
        goaway = conn.goaway()
        assert goaway is not None, f"no GOAWAY after {sent} resets"
        assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert conn.eof, "the server did not close the connection"
        assert sent < 5000, "the server let the whole attack through"
        conn.close()
    assert latencies and max(latencies) < LATENCY_BOUND, max(latencies)
    print(
        f"sent before GOAWAY: {[sent for _, sent in results]}; {len(latencies)} normal calls, "
        f"slowest {max(latencies) * 1000:.1f} ms"
    )
    # The normal connection still works, and the attackers' connections are gone.
    await client.get_repository("r")
    await poll_until(lambda: connections(server) == 1)
    for _ in range(3):
        await asyncio.sleep(0)  # let cancelled tasks finish
    leftover = live_h2_streams() - streams_before
    # At most the last stream or two of each closed connection (h2 drops closed streams
    # lazily), not one per reset: thousands were reset.
    assert leftover <= 2 * len(results), f"{leftover} h2 streams of closed connections live"
    growth = rss_bytes() - rss_before
    print(f"h2 streams left: {leftover}; RSS growth {growth / 2**20:.1f} MiB")
    assert growth < RSS_GROWTH_BOUND, f"RSS grew {growth / 2**20:.1f} MiB"


async def test_resets_below_the_budget_are_tolerated(
    server: GovcServer, client: GovcClient
) -> None:
    await client.create_repository("r")
    conn, sent = await asyncio.to_thread(rapid_reset, server.port, 150, 0.3)
    try:
        assert sent == 150
        assert conn.goaway() is None and not conn.eof
        assert connections(server) == 2  # the client's and this one
        assert (await client.get_repository("r")).id == "r"
    finally:
        conn.close()


def _open(port: int, count: int) -> list[RawH2]:
    return [RawH2(port) for _ in range(count)]


@pytest.mark.parametrize(
    "limited",
    [{"max_connections_per_peer": 3}, {"max_connections": 3}],
    indirect=True,
    ids=["per-peer", "total"],
)
async def test_connections_over_the_limit_are_closed(limited: GovcServer) -> None:
    async with GovcClient(f"127.0.0.1:{limited.port}") as client:
        await client.create_repository("r")  # the client's connection is the first
        kept = await asyncio.to_thread(_open, limited.port, 2)
        await poll_until(lambda: connections(limited) == 3)
        extras = await asyncio.to_thread(_open, limited.port, 5)
        try:
            for conn in extras:
                await asyncio.to_thread(conn.read_until_eof)
                goaway = conn.goaway()
                assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
                assert b"too many connections" in (goaway.additional_data or b"")
                assert conn.eof
            for conn in kept:
                conn.read(0)
                assert not conn.eof and conn.goaway() is None
            assert (await client.get_repository("r")).id == "r"
            assert connections(limited) == 3
            # a slot freed is a slot taken again
            kept.pop().close()
            await poll_until(lambda: connections(limited) == 2)
            again = await asyncio.to_thread(RawH2, limited.port)
            kept.append(again)
            await poll_until(lambda: connections(limited) == 3)
            again.read(0.05)
            assert not again.eof
        finally:
            for conn in kept + extras:
                conn.close()


@pytest.mark.parametrize("limited", [{"idle_timeout": 0.5}], indirect=True)
async def test_idle_connections_get_goaway_busy_ones_do_not(limited: GovcServer) -> None:
    idle = await asyncio.to_thread(RawH2, limited.port)
    busy = await asyncio.to_thread(RawH2, limited.port)
    try:
        # An open call (its request stream never ends) keeps `busy` from being idle.
        busy.h2.send_headers(1, REQUEST_HEADERS)
        await asyncio.to_thread(busy.flush)
        started = time.monotonic()
        await asyncio.to_thread(idle.read_until_eof, 10.0)
        waited = time.monotonic() - started
        goaway = idle.goaway()
        assert goaway is not None and goaway.error_code == ErrorCodes.NO_ERROR
        assert idle.eof and 0.3 < waited < 3.0, waited
        # Three idle timeouts later the busy connection is still open.
        await poll_until(lambda: time.monotonic() - started > 1.5)
        await asyncio.to_thread(busy.read, 0.0)
        assert not busy.eof and busy.goaway() is None
        assert connections(limited) == 1
        # Its call ends; then it is idle too.
        busy.h2.reset_stream(1, ErrorCodes.CANCEL)
        await asyncio.to_thread(busy.flush)
        await asyncio.to_thread(busy.read_until_eof, 10.0)
        assert busy.goaway() is not None and busy.eof
    finally:
        idle.close()
        busy.close()
    # A client whose connection was closed for idleness connects again on its next call.
    async with GovcClient(f"127.0.0.1:{limited.port}") as client:
        await client.create_repository("r")
        await poll_until(lambda: connections(limited) == 0)
        assert (await client.get_repository("r")).id == "r"


def _settings(conn: RawH2) -> dict[Any, int]:
    conn.read_until_eof(0.5)
    for event in conn.events:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            return {code: change.new_value for code, change in event.changed_settings.items()}
    return {}


@pytest.mark.parametrize("limited", [{"max_concurrent_streams": 7}], indirect=True)
async def test_max_concurrent_streams_is_advertised(limited: GovcServer) -> None:
    conn = await asyncio.to_thread(RawH2, limited.port)
    try:
        settings = await asyncio.to_thread(_settings, conn)
        assert settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS) == 7
    finally:
        conn.close()
