"""Slow and dead peers through a real server: the header timeout (slowloris) and keepalive
pings (govc.transport.grpc.HardenedProtocol).

The misbehaving clients are raw sockets and the `h2` library, run in a thread so the server's
event loop (this test's loop) keeps serving a normal GovcClient meanwhile.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import h2.events
import pytest
from h2.errors import ErrorCodes
from hpack import Encoder
from hyperframe.frame import HeadersFrame

from govc.client import GovcClient
from govc.server import GovcServer
from tests.conftest import server_config
from tests.polling import poll_until
from tests.test_hardening_http2 import REQUEST_HEADERS, RawH2, connections

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER_TIMEOUT = 0.5
SLACK = 2.0  # seconds a close may come after its deadline on a loaded machine
GOAWAY_FRAME = 0x7


@asynccontextmanager
async def normal_calls(port: int) -> AsyncIterator[GovcClient]:
    """A GovcClient making calls in the background all along; each must succeed."""
    async with GovcClient(f"127.0.0.1:{port}") as client:
        await client.create_repository("r")
        done = asyncio.Event()
        count = 0

        async def calls() -> None:
            nonlocal count
            while not done.is_set():
                assert (await asyncio.wait_for(client.get_repository("r"), 5.0)).id == "r"
                count += 1
                await asyncio.sleep(0.02)

        task = asyncio.create_task(calls())
        try:
            yield client
        finally:
            done.set()
            await task  # re-raises a failed call
        assert count > 0
        assert (await client.get_repository("r")).id == "r"


def frame_types(data: bytes) -> list[int]:
    """The types of the HTTP/2 frames in `data` (whole frames only)."""
    types = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        types.append(data[3])
        data = data[9 + length :]
    return types


def send_slowly(port: int, payload: bytes, gap: float) -> tuple[bool, float, bytes]:
    """Send `payload` (then nothing) in pieces `gap` s apart until the server closes the
    connection; whether it did (within 10 s), after how long, and what it sent."""
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    received = b""
    pieces = [payload[i : i + 1] for i in range(len(payload))] if gap else [payload]
    try:
        while time.monotonic() - started < 10.0:
            if pieces:
                try:
                    sock.sendall(pieces.pop(0))
                except (BrokenPipeError, ConnectionResetError):
                    return True, time.monotonic() - started, received
            sock.settimeout(gap or 0.1)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return True, time.monotonic() - started, received
            if not data:
                return True, time.monotonic() - started, received
            received += data
        return False, time.monotonic() - started, received
    finally:
        sock.close()


def incomplete_headers(stream_id: int) -> bytes:
    """A HEADERS frame without END_HEADERS: the CONTINUATION it promises never comes."""
    frame = HeadersFrame(stream_id, data=Encoder().encode(REQUEST_HEADERS))
    return bytes(frame.serialize())


@pytest.mark.parametrize("limited", [{"header_timeout": HEADER_TIMEOUT}], indirect=True)
async def test_half_a_preface_is_closed_at_the_header_timeout(limited: GovcServer) -> None:
    async with normal_calls(limited.port):
        closed, waited, received = await asyncio.to_thread(
            send_slowly, limited.port, PREFACE[:12], 0
        )
        assert closed and HEADER_TIMEOUT * 0.8 < waited < HEADER_TIMEOUT + SLACK, waited
        assert GOAWAY_FRAME not in frame_types(received)  # no preface: no HTTP/2 to answer in
        # A preface sent a byte at a time, each well within the timeout, is closed all the same.
        closed, waited, _ = await asyncio.to_thread(send_slowly, limited.port, PREFACE, 0.1)
        assert closed and waited < HEADER_TIMEOUT + SLACK, waited
        await poll_until(lambda: connections(limited) == 1)


@pytest.mark.parametrize("limited", [{"header_timeout": HEADER_TIMEOUT}], indirect=True)
async def test_headers_without_their_continuation_are_closed(limited: GovcServer) -> None:
    async with normal_calls(limited.port):
        # the preface and SETTINGS, then a header block that never ends
        conn = await asyncio.to_thread(RawH2, limited.port)
        try:
            started = time.monotonic()
            await asyncio.to_thread(conn.sock.sendall, incomplete_headers(1))
            await asyncio.to_thread(conn.read_until_eof, 10.0)
            waited = time.monotonic() - started
            goaway = conn.goaway()
            assert goaway is not None and goaway.error_code == ErrorCodes.PROTOCOL_ERROR
            assert conn.eof and waited < HEADER_TIMEOUT + SLACK, waited
        finally:
            conn.close()

        # A connection whose first request came in time may wait; a later header block
        # started must still be finished in time.
        conn = await asyncio.to_thread(RawH2, limited.port)
        try:
            conn.h2.send_headers(1, REQUEST_HEADERS)  # a call left open
            await asyncio.to_thread(conn.flush)
            started = time.monotonic()
            await poll_until(lambda: time.monotonic() - started > 3 * HEADER_TIMEOUT)
            await asyncio.to_thread(conn.read, 0.0)
            assert not conn.eof and conn.goaway() is None
            started = time.monotonic()
            await asyncio.to_thread(conn.sock.sendall, incomplete_headers(3))
            await asyncio.to_thread(conn.read_until_eof, 10.0)
            waited = time.monotonic() - started
            goaway = conn.goaway()
            assert goaway is not None and goaway.error_code == ErrorCodes.PROTOCOL_ERROR
            assert goaway.last_stream_id == 1
            assert conn.eof and waited < HEADER_TIMEOUT + SLACK, waited
        finally:
            conn.close()
        await poll_until(lambda: connections(limited) == 1)


KEEPALIVE = {"keepalive_seconds": 0.3, "keepalive_timeout": 0.3}


def pings(conn: RawH2) -> int:
    return sum(isinstance(e, h2.events.PingReceived) for e in conn.events)


@pytest.mark.parametrize("limited", [KEEPALIVE], indirect=True)
async def test_a_peer_that_stops_answering_pings_is_closed(limited: GovcServer) -> None:
    door = limited._door
    assert door is not None
    release = asyncio.Event()

    async def slow_upload() -> AsyncIterator[bytes]:
        yield b"first half "
        await release.wait()  # the call stays open, its connection silent, meanwhile
        yield b"second half"

    async with normal_calls(limited.port) as client:
        upload = asyncio.create_task(client.upload("r", slow_upload(), filename="f"))
        await poll_until(lambda: door.tracker.in_flight >= 1)
        # A dead peer: it opens a call and then never reads the socket again.
        dead = await asyncio.to_thread(RawH2, limited.port)
        try:
            dead.h2.send_headers(1, REQUEST_HEADERS)
            await asyncio.to_thread(dead.flush)
            started = time.monotonic()
            await poll_until(lambda: connections(limited) == 1, timeout=10.0)
            waited = time.monotonic() - started
            assert 0.5 < waited < 0.6 + SLACK, waited
            await asyncio.to_thread(dead.read_until_eof, 5.0)
            assert dead.eof and pings(dead) >= 1
        finally:
            dead.close()
        # Its call was cancelled; the upload's (and the normal calls') connection lives on
        # through several keepalive rounds, answering the pings.
        await poll_until(lambda: door.tracker.in_flight <= 2)
        started = time.monotonic()
        await poll_until(lambda: time.monotonic() - started > 1.5)
        assert not upload.done()
        release.set()
        reply = await asyncio.wait_for(upload, 10.0)
        assert reply.size == len(b"first half second half")
        await poll_until(lambda: door.tracker.in_flight <= 1)
        assert connections(limited) == 1


@pytest.mark.parametrize("limited", [KEEPALIVE], indirect=True)
async def test_a_connection_without_calls_is_not_pinged(limited: GovcServer) -> None:
    conn = await asyncio.to_thread(RawH2, limited.port)
    try:
        conn.h2.send_headers(1, REQUEST_HEADERS)
        conn.h2.send_data(1, b"\0\0\0\0\x03\n\x01r", end_stream=True)  # GetRepository("r")
        await asyncio.to_thread(conn.flush)
        started = time.monotonic()
        while time.monotonic() - started < 1.5:  # five keepalive intervals, its call done
            await asyncio.to_thread(conn.read, 0.1)
            await asyncio.to_thread(conn.flush)
        assert any(isinstance(e, h2.events.StreamEnded) for e in conn.events)
        assert pings(conn) == 0 and not conn.eof
    finally:
        conn.close()


@pytest.mark.parametrize(
    "option",
    [{"header_timeout": 0}, {"keepalive_seconds": -1}, {"keepalive_timeout": 0}],
)
def test_out_of_range_settings_are_refused(tmp_path: Path, option: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        server_config(tmp_path, **option)
    # 0 turns keepalive pings off
    assert server_config(tmp_path, keepalive_seconds=0).connection_limits().keepalive_seconds == 0
