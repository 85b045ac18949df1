"""Graceful shutdown of `govc serve`: SIGTERM drains calls in flight, then exits 0.

While draining, the standard health service reports NOT_SERVING on open connections, new
connections are refused, and new calls on open connections are UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from generated.govc import CreateRepositoryRequest, GoVcServiceStub
from govc.client import GovcClient, GovcRpcError
from tests.polling import poll_until
from tests.serverproc import ServerProcess

REPO = "shutdown"
MIB = 1024 * 1024
# Larger than grpclib's 4 MiB HTTP/2 receive window (see `held_call`) and the first part of
# the held requests.
HELD_PREFIX = 8 * MIB
# Large enough that a good part of it is still to come, hash and commit once the server has
# started reading it (see `IN_FLIGHT_BYTES`), and under the 64 MiB default message limit.
BIG_PLAIN = 48 * MIB
# A client may send at most the server's HTTP/2 receive window (grpclib's 4 MiB, per stream) of
# a message the server has not read: once more than that (and some framing) has gone to the
# server, its handler is reading the message, so the call is in flight there.
IN_FLIGHT_BYTES = 6 * MIB
EXIT_BOUND = 20.0  # the server's drain bound is 30 s; these calls need a few seconds at most
GOVC_SERVICE = "govc.GoVCService"
# A slow client: responses reach it at this rate through a `Relay`.
SLOW_RATE = 8 * MIB  # bytes per second: SLOW_BLOB takes about 0.4 s to arrive
SLOW_BLOB = 3 * MIB  # under the client's 4 MiB window: the server can write all of it at once

T = TypeVar("T")


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@asynccontextmanager
async def channel_to(server: ServerProcess) -> AsyncIterator[Channel]:
    channel = Channel(server.host, server.port)
    try:
        yield channel
    finally:
        channel.close()


def assert_clean_exit(server: ServerProcess) -> None:
    try:
        exit_code = server.wait(EXIT_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server still running {EXIT_BOUND} s after SIGTERM:\n{server.log_text()}")
    log = server.log_text()
    assert exit_code == 0, log
    assert "signal received: draining" in log
    assert "govc stopped" in log
    assert "drain timed out" not in log
    assert "Traceback" not in log, log


async def connection_refused(server: ServerProcess) -> bool:
    """Whether a new TCP connection to the server is refused (it no longer listens)."""
    try:
        _, writer = await asyncio.open_connection(server.host, server.port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def health_status(channel: Channel, service: str) -> int:
    response = await HealthStub(channel).Check(HealthCheckRequest(service=service), timeout=5)
    assert response is not None
    return int(response.status)


async def held_call(
    server: ServerProcess,
    call: Callable[[GovcClient], Awaitable[T]],
    first_part_sent: asyncio.Event,
    release: asyncio.Event,
) -> T:
    """`call` on its own connection, through a relay that passes the first HELD_PREFIX bytes
    to the server and holds back the rest until `release` is set.

    HELD_PREFIX is larger than the server's HTTP/2 receive window: the client can have sent
    that much only once the server's handler reads the message. So when `first_part_sent` is
    set the call is in flight on the server, and it stays in flight until `release` is set.
    """
    relay = Relay(server, hold_upstream_after=HELD_PREFIX, release=release)
    async with relay, GovcClient(relay.target, timeout=60) as client:
        task = asyncio.create_task(call(client))
        try:
            await poll_until(
                lambda: task.done() or relay.to_server >= HELD_PREFIX,
                message="the first part of the request never reached the server",
            )
            first_part_sent.set()
            return await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


async def test_sigterm_drains_calls_held_in_flight(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    plain, delta = os.urandom(HELD_PREFIX + 3 * MIB), os.urandom(HELD_PREFIX + MIB)
    with ServerProcess(data_dir) as server:
        async with channel_to(server) as observer:
            govc = GoVcServiceStub(observer)
            await govc.create_repository(CreateRepositoryRequest(id=REPO), timeout=10)
            assert await health_status(observer, "") == HealthCheckResponse.SERVING
            assert await health_status(observer, GOVC_SERVICE) == HealthCheckResponse.SERVING

            release = asyncio.Event()
            started = [asyncio.Event(), asyncio.Event()]
            calls = [
                asyncio.create_task(
                    held_call(server, lambda c: c.store_blob(REPO, plain), started[0], release)
                ),
                asyncio.create_task(
                    held_call(
                        server,
                        lambda c: c.store_blob_with_delta(REPO, delta, use_compression=True),
                        started[1],
                        release,
                    )
                ),
            ]
            try:
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 20)
                server.send_signal(signal.SIGTERM)

                # Health turns NOT_SERVING on a connection that was open before the signal.
                async def not_serving() -> bool:
                    return await health_status(observer, "") != HealthCheckResponse.SERVING

                await poll_until(not_serving, message="health still SERVING after SIGTERM")
                assert await health_status(observer, "") == HealthCheckResponse.NOT_SERVING
                assert (
                    await health_status(observer, GOVC_SERVICE) == HealthCheckResponse.NOT_SERVING
                )

                # A new call on an open connection is refused as UNAVAILABLE, and does nothing.
                with pytest.raises(GRPCError) as refused_call:
                    await govc.create_repository(CreateRepositoryRequest(id="late-call"), timeout=5)
                assert refused_call.value.status == Status.UNAVAILABLE
                assert "shutting down" in (refused_call.value.message or "")

                # A new connection is refused: the listener is closed.
                assert await connection_refused(server)

                # The server waits for the held calls instead of exiting or cancelling them:
                # it still runs now, and (below) both calls complete once released.
                assert server.process is not None and server.process.poll() is None
                assert not any(call.done() for call in calls)
            except BaseException:
                for call in calls:
                    call.cancel()
                await asyncio.gather(*calls, return_exceptions=True)
                raise
            finally:
                release.set()
            stored, stored_delta = await asyncio.wait_for(asyncio.gather(*calls), 60)
        assert stored.hash == git_blob_id(plain) and stored.size == len(plain)
        assert stored_delta.hash == git_blob_id(delta) and stored_delta.size == len(delta)
        assert_clean_exit(server)

    with ServerProcess(data_dir) as restarted:
        async with GovcClient(restarted.target, timeout=60) as client:
            assert (await client.get_blob(REPO, stored.hash)).content == plain
            assert (await client.get_blob_with_delta(REPO, stored_delta.hash)).content == delta
            with pytest.raises(GovcRpcError) as absent:
                await client.get_repository("late-call")
            assert absent.value.status == Status.NOT_FOUND


async def test_sigterm_during_large_upload(tmp_path: Path) -> None:
    """An ordinary client, a payload near the message limit: SIGTERM arrives mid-upload."""
    data_dir = tmp_path / "data"
    content = os.urandom(BIG_PLAIN)
    with ServerProcess(data_dir) as server:
        relay = Relay(server)  # counts what reaches the server
        async with relay, GovcClient(relay.target, timeout=60) as client:
            await client.create_repository(REPO)  # connected, so only the upload is pending
            sent_before = relay.to_server
            call = asyncio.create_task(client.store_blob(REPO, content))
            await poll_until(
                lambda: call.done() or relay.to_server - sent_before > IN_FLIGHT_BYTES,
                message="the upload never got under way",
            )
            assert not call.done(), "the upload finished before SIGTERM; make it larger"
            server.send_signal(signal.SIGTERM)

            async def stopped_listening() -> bool:  # once the signal is handled
                return await connection_refused(server)

            await poll_until(stopped_listening, message="new connections accepted after SIGTERM")
            assert not call.done(), "the upload finished before the server stopped listening"
            stored = await asyncio.wait_for(call, 60)
        assert stored.hash == git_blob_id(content) and stored.size == BIG_PLAIN
        assert_clean_exit(server)

    with ServerProcess(data_dir) as restarted:
        async with GovcClient(restarted.target, timeout=60) as client:
            got = await client.get_blob(REPO, stored.hash)
            assert hashlib.sha256(got.content).digest() == hashlib.sha256(content).digest()


class Relay:
    """A TCP proxy to the server that counts the bytes it passes each way (`to_server`,
    `to_client`): requests at full speed, responses at `downlink_rate` bytes per second if given.

    A slow downlink reads from the server through a small socket buffer, so a response the server
    has written stays mostly in the server process until the client has had it. With
    `hold_upstream_after`, it passes that many bytes to the server and then holds back the rest
    until `release` is set.
    """

    def __init__(
        self,
        server: ServerProcess,
        downlink_rate: int = 0,
        hold_upstream_after: int | None = None,
        release: asyncio.Event | None = None,
    ) -> None:
        assert (hold_upstream_after is None) == (release is None)
        self._upstream = (server.host, server.port)
        self._rate = downlink_rate
        self._hold_after = hold_upstream_after
        self._release = release
        self._listener: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.target = ""
        self.to_server = 0
        self.to_client = 0

    async def __aenter__(self) -> Relay:
        self._listener = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.target = f"127.0.0.1:{self._listener.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._listener is not None:
            self._listener.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()

    async def _accept(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self._rate:
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        upstream.setblocking(False)
        await asyncio.get_running_loop().sock_connect(upstream, self._upstream)
        server_in, server_out = await asyncio.open_connection(sock=upstream)
        self._writers += [client_out, server_out]
        for pump in (
            self._pump(client_in, server_out, 0, "to_server"),
            self._pump(server_in, client_out, self._rate, "to_client"),
        ):
            task = asyncio.create_task(pump)
            self._tasks.add(task)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, rate: int, counter: str
    ) -> None:
        hold_after = self._hold_after if counter == "to_server" else None
        try:
            while data := await source.read(16 * 1024 if rate else 256 * 1024):
                if hold_after is not None and self.to_server + len(data) >= hold_after:
                    first = hold_after - self.to_server
                    await self._forward(sink, data[:first], counter)
                    assert self._release is not None
                    await self._release.wait()
                    data, hold_after = data[first:], None
                await self._forward(sink, data, counter)
                if rate:
                    await asyncio.sleep(len(data) / rate)  # paces the slow client: not a wait
        except ConnectionError:
            pass
        finally:
            sink.close()

    async def _forward(self, sink: asyncio.StreamWriter, data: bytes, counter: str) -> None:
        if data:
            sink.write(data)
            await sink.drain()
            setattr(self, counter, getattr(self, counter) + len(data))


async def test_sigterm_while_slow_client_receives_response(tmp_path: Path) -> None:
    """The response of a call that was in flight reaches a slow client in full."""
    content = os.urandom(SLOW_BLOB)
    with ServerProcess(tmp_path / "data") as server:
        async with GovcClient(server.target, timeout=30) as client:
            await client.create_repository(REPO)
            blob_hash = (await client.store_blob(REPO, content)).hash
        downlink = Relay(server, downlink_rate=SLOW_RATE)
        async with downlink, GovcClient(downlink.target, timeout=30) as slow_client:
            await slow_client.get_repository(REPO)  # connected through the proxy
            received_before = downlink.to_client
            call = asyncio.create_task(slow_client.get_blob(REPO, blob_hash))
            # The server is sending the response: a first part of it has come through.
            await poll_until(
                lambda: call.done() or downlink.to_client - received_before > SLOW_BLOB // 16,
                message="no response came from the server",
            )
            assert not call.done(), "the whole response arrived before SIGTERM; slow it down"
            server.send_signal(signal.SIGTERM)
            got = await asyncio.wait_for(call, 30)
        assert got.hash == blob_hash
        assert got.content == content
        assert_clean_exit(server)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_idle_server_exits_zero_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir) as server:
        async with GovcClient(server.target, timeout=10) as client:
            await client.create_repository(REPO)
            await client.store_blob(REPO, b"hello\n")
            server.send_signal(sig)
            assert server.wait(EXIT_BOUND) == 0, server.log_text()
            # Once it has exited, the open connection fails cleanly rather than hanging.
            with pytest.raises(GovcRpcError) as after_exit:
                await client.get_repository(REPO)
            assert after_exit.value.status == Status.UNAVAILABLE
        assert "govc stopped" in server.log_text()

    with ServerProcess(data_dir) as restarted:
        async with GovcClient(restarted.target, timeout=10) as client:
            got = await client.get_blob(REPO, "ce013625030ba8dba906f756967f9e9ca394464a")
            assert got.content == b"hello\n"
