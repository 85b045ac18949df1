"""The grpclib adapter: binds the transport-agnostic handlers to the generated service.

Every call passes through one guard that (1) refuses new calls while the server drains,
(2) counts calls in flight so shutdown can wait for them, (3) maps domain errors to status
codes, and (4) logs a malformed request in one line. Below grpclib, every request of every
call is read through RequestFraming (the size limit from the 5-byte gRPC length prefix before
the message is buffered, as grpclib has no limit of its own; the compressed flag; truncation)
and decoded by the strict codec, so a malformed request never reaches a handler.

Each connection is served by HardenedProtocol (grpclib's H2Protocol with limits): the number of
connections (in all, and per peer address), an idle timeout, the advertised
SETTINGS_MAX_CONCURRENT_STREAMS, and a guard against HTTP/2 rapid reset (CVE-2023-44487): a
connection whose client cancels too many streams is sent GOAWAY(ENHANCE_YOUR_CALM) and closed,
and every cancelled stream releases its buffered data at once. Against slowloris, a connection
must send the HTTP/2 preface and its first complete HEADERS within a header timeout, and so must
any later header block (HEADERS and its CONTINUATIONs) once started; against dead peers, a
connection with calls open and nothing received for a keepalive interval is sent a PING, and
closed (its calls cancelled) if no PING ACK comes back in time.
"""

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import termios
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Any

from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.health.check import ServiceStatus
from grpclib.health.service import Health
from grpclib.health.v1 import health_pb2
from grpclib.protocol import Connection, EventsProcessor, H2Protocol, _set_nodelay
from grpclib.protocol import Stream as H2Stream
from grpclib.reflection.service import ServerReflection
from grpclib.server import Handler as GrpclibHandler
from grpclib.server import Server, Stream
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import PingAckReceived, StreamReset
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

from generated.google_proto_descriptor_pool import default_google_proto_descriptor_pool
from govc.services.handlers import Handlers
from govc.transport.codec import GovcCodec
from govc.transport.errors import MalformedMessage, to_grpc_error

log = logging.getLogger(__name__)


class CallTracker:
    """Calls in flight, and whether new ones are still accepted.

    A call is tracked by grpclib's task for it, which outlives our handler: after the handler
    returns, the task still sends the response (waiting on flow control for a slow reader) and
    the trailers. Drain waits for those tasks, not just for the handlers.
    """

    def __init__(self) -> None:
        self.accepting = True
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def enter(self) -> None:
        task = asyncio.current_task()
        if task is not None and task not in self._tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every tracked call has finished; False if `timeout` ran out first."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        return not self._tasks


@dataclass(frozen=True)
class ConnectionLimits:
    """What one server allows its HTTP/2 connections (see `govc serve --help`)."""

    max_connections: int = 1000  # open connections in all; more are closed at accept
    max_connections_per_peer: int = 100  # open connections from one peer IP address
    idle_timeout: float = 300.0  # seconds without an open stream or a frame: GOAWAY; 0: never
    max_concurrent_streams: int = 128  # SETTINGS_MAX_CONCURRENT_STREAMS advertised
    # Rapid reset: more than `max_resets` streams cancelled by the client within
    # `reset_window` seconds, and more of them than streams completed in that window,
    # is answered GOAWAY(ENHANCE_YOUR_CALM). (nghttp2 and grpc-go use budgets of this size.)
    max_resets: int = 200
    reset_window: float = 10.0
    # Slowloris: seconds for the preface and the first complete HEADERS of a connection, and
    # for any later header block once started (HEADERS without END_HEADERS, then CONTINUATION).
    header_timeout: float = 10.0
    # Dead peers: after `keepalive_seconds` without a frame received on a connection with open
    # streams, PING; no PING ACK within `keepalive_timeout`: close. 0 seconds: no pings.
    keepalive_seconds: float = 60.0
    keepalive_timeout: float = 20.0

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_connections_per_peer < 1:
            raise ValueError("connection limits must be at least 1")
        if self.idle_timeout < 0:
            raise ValueError("idle_timeout must not be negative")
        if not 1 <= self.max_concurrent_streams <= 2**31 - 1:
            raise ValueError("max_concurrent_streams must be 1 to 2**31-1")
        if not self.header_timeout > 0:
            raise ValueError("header_timeout must be positive")
        if not self.keepalive_seconds >= 0:
            raise ValueError("keepalive_seconds must not be negative")
        if not self.keepalive_timeout > 0:
            raise ValueError("keepalive_timeout must be positive")


class _ResetBudget:
    """Stream resets and completed streams of one connection over a sliding window, counted
    in one-second buckets (so its size does not grow with the call rate)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self._max = limits.max_resets
        self._window = max(1, round(limits.reset_window))
        self._buckets: deque[list[int]] = deque()  # [second, resets, completed]
        self._resets = 0
        self._completed = 0

    def _bucket(self, now: float) -> list[int]:
        second = int(now)
        buckets = self._buckets
        while buckets and buckets[0][0] <= second - self._window:
            _, resets, completed = buckets.popleft()
            self._resets -= resets
            self._completed -= completed
        if not buckets or buckets[-1][0] != second:
            buckets.append([second, 0, 0])
        return buckets[-1]

    def completed(self, now: float) -> None:
        self._bucket(now)[2] += 1
        self._completed += 1

    def reset(self, now: float) -> bool:
        """Count one reset; True if the connection has now spent its budget."""
        self._bucket(now)[1] += 1
        self._resets += 1
        return self._resets > self._max and self._resets > self._completed


class _HardenedEvents(EventsProcessor):
    """grpclib's event processor, plus: a stream the client resets is released at once (its
    buffered data dropped and acknowledged, whether or not its task ever ran), and resets are
    counted against the connection's budget."""

    def __init__(self, handler: Any, connection: Connection, protocol: "HardenedProtocol"):
        super().__init__(handler, connection)
        self._protocol = protocol

    def register(self, stream: H2Stream) -> Callable[[], None]:
        assert stream.id is not None
        self.streams[stream.id] = stream
        return partial(self._release, stream, True)

    def _release(self, stream: H2Stream, completed: bool = False) -> None:
        """grpclib's release_stream, made idempotent (the task that serves a stream calls it
        at its end, which a stream cancelled before its task started never reaches)."""
        assert stream.id is not None
        if self.streams.get(stream.id) is not stream:
            return
        del self.streams[stream.id]
        self.connection.stream_close_waiter.set()
        if not self.connection.is_closing():
            self.connection.ack(stream.id, stream.buffer.unacked_size())
        if completed:
            self._protocol.stream_completed()

    def process_stream_reset(self, event: StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        super().process_stream_reset(event)
        if stream is not None:
            self._release(stream)
            if event.remote_reset:
                self._protocol.stream_reset()

    def process_ping_ack_received(self, event: PingAckReceived) -> None:
        self._protocol.ping_acked(event.ping_data)


class HardenedProtocol(H2Protocol):
    """One server connection: grpclib's H2Protocol under the server's ConnectionLimits."""

    processor: _HardenedEvents

    def __init__(self, server: "DrainingServer", handler: GrpclibHandler) -> None:
        super().__init__(handler, server._config, server._h2_config)
        self._server = server
        self._limits = server.limits
        self._budget = _ResetBudget(server.limits)
        self._peer: str | None = None
        self._counted = False
        self._closed = False
        self._last_activity = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        # The header timeout: when the pending preface / header block must be complete.
        self._header_deadline: float | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        # Keepalive: the payload of the PING awaiting its ACK, and when it was sent.
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self._ping_sent = 0.0

    def connection_made(self, transport: Any) -> None:
        peername = transport.get_extra_info("peername")
        self._peer = str(peername[0]) if isinstance(peername, tuple) else str(peername)
        refusal = self._server.admit(self)
        self._counted = refusal is None
        self._start_h2(transport)
        if refusal is not None:
            self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, refusal)
            return
        self._last_activity = time.monotonic()
        if self._limits.idle_timeout > 0:
            self._schedule_idle_check(self._limits.idle_timeout)
        self._track_headers()
        if self._limits.keepalive_seconds > 0:
            self._schedule_keepalive(self._limits.keepalive_seconds)

    def _start_h2(self, transport: Any) -> None:
        """grpclib's H2Protocol.connection_made, with our SETTINGS_MAX_CONCURRENT_STREAMS in
        the first SETTINGS frame (h2 enforces it from the start) and our event processor."""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _set_nodelay(sock)
        h2_conn = H2Connection(config=self.h2_config)
        h2_conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: self._limits.max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: h2_conn.DEFAULT_MAX_HEADER_LIST_SIZE,
            },
        )
        h2_conn.initiate_connection()
        config = self.config
        initial = h2_conn.local_settings.initial_window_size
        conn_delta = config.http2_connection_window_size - initial
        stream_delta = config.http2_stream_window_size - initial
        if conn_delta:
            h2_conn.increment_flow_control_window(conn_delta)
        if stream_delta:
            h2_conn.update_settings(
                {SettingCodes.INITIAL_WINDOW_SIZE: config.http2_stream_window_size}
            )
        self.connection = Connection(h2_conn, transport, config=config)
        self.connection.flush()
        self.connection.initialize()
        self.processor = _HardenedEvents(self.handler, self.connection, self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._last_activity = time.monotonic()
        connection = self.connection
        try:
            events = connection.feed(data)
        except ProtocolError:
            log.debug("HTTP/2 protocol error from %s", self._peer, exc_info=True)
            self._close("Protocol error")  # flushes h2's GOAWAY first
            return
        connection.flush()
        process = self.processor.process
        for event in events:
            process(event)
            if self._closed:
                return
        connection.flush()
        self._track_headers()

    def stream_completed(self) -> None:
        self._budget.completed(time.monotonic())

    def stream_reset(self) -> None:
        if self._closed or not self._budget.reset(time.monotonic()):
            return
        self._server.note_refusal(
            f"{self._peer}: too many streams reset by the client (rapid reset); "
            "GOAWAY(ENHANCE_YOUR_CALM)"
        )
        self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, "too many stream resets")

    def goaway(self, code: ErrorCodes, reason: str, abort: bool = False) -> None:
        """Send GOAWAY (`code`, `reason` as its debug data) and close the connection; calls on
        it are cancelled. `abort`: drop what the peer has not read yet (a dead peer never
        will) rather than wait for it to go out."""
        if self._closed:
            return
        h2_conn = self.connection._connection
        with contextlib.suppress(ProtocolError):  # h2 has already closed the connection
            h2_conn.close_connection(
                error_code=code,
                additional_data=reason.encode(),
                last_stream_id=h2_conn.highest_inbound_stream_id,
            )
        self._close(reason, abort)

    def _close(self, reason: str, abort: bool = False) -> None:
        self._closed = True
        self._cancel_timers()
        transport = getattr(self.connection, "_transport", None)
        if transport is not None and not transport.is_closing():
            data = self.connection._connection.data_to_send()
            if data:
                transport.write(data)
            if abort:
                transport.abort()  # connection_lost follows at once, not after a flush
        self.processor.close(reason)  # closes the transport (after writing what it holds)
        self.processor.streams.clear()

    def _cancel_timers(self) -> None:
        for name in ("_idle_timer", "_header_timer", "_keepalive_timer"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)

    def _track_headers(self) -> None:
        """Start the header timeout when the connection owes us bytes it started sending (the
        rest of the preface, or of a header block); stop it when it owes none. A connection
        that finished its preface and sends nothing yet is idle, the idle timeout's business:
        clients often connect well before their first call."""
        h2_conn = self.connection._connection
        incoming = h2_conn.incoming_buffer
        partial = incoming._data  # the start of a frame not yet complete
        pending = (
            bool(incoming._preamble_len)  # the preface is not complete yet
            or bool(incoming._headers_buffer)  # a header block without END_HEADERS yet
            # a HEADERS or CONTINUATION frame (or a frame header) not yet complete
            or (bool(partial) and (len(partial) < 9 or partial[3] in (0x1, 0x9)))
        )
        if not pending:
            self._header_deadline = None
        elif self._header_deadline is None:
            timeout = self._limits.header_timeout
            self._header_deadline = time.monotonic() + timeout
            if self._header_timer is None:
                self._header_timer = asyncio.get_running_loop().call_later(
                    timeout, self._check_headers
                )

    def _check_headers(self) -> None:
        self._header_timer = None
        if self._closed or self._header_deadline is None:
            return
        left = self._header_deadline - time.monotonic()
        if left > 0:
            self._header_timer = asyncio.get_running_loop().call_later(left, self._check_headers)
            return
        timeout = self._limits.header_timeout
        h2_conn = self.connection._connection
        incoming = h2_conn.incoming_buffer
        if incoming._preamble_len:
            self._server.note_refusal(
                f"{self._peer}: no HTTP/2 preface within the header timeout ({timeout:g} s); closed"
            )
            self._close("header timeout")
        elif incoming._headers_buffer or incoming._data:
            self._server.note_refusal(
                f"{self._peer}: a header block not completed within the header timeout "
                f"({timeout:g} s); GOAWAY(PROTOCOL_ERROR)"
            )
            self.goaway(ErrorCodes.PROTOCOL_ERROR, "header timeout")
        else:
            self._server.note_refusal(
                f"{self._peer}: no request headers within the header timeout ({timeout:g} s); "
                "GOAWAY"
            )
            self.goaway(ErrorCodes.NO_ERROR, "header timeout")

    def _schedule_keepalive(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._keepalive_timer = loop.call_later(delay, self._check_keepalive)

    def _check_keepalive(self) -> None:
        """Every keepalive interval of silence on a connection with open streams: PING; no
        ACK within the keepalive timeout: the peer is gone, close (its calls are cancelled).
        A connection without streams is not pinged (the idle timeout is for those)."""
        self._keepalive_timer = None
        if self._closed:
            return
        now = time.monotonic()
        limits = self._limits
        if self._ping_payload is not None:
            left = self._ping_sent + limits.keepalive_timeout - now
            if left > 0:
                self._schedule_keepalive(left)
                return
            log.info(
                "closing connection from %s: no PING ACK within %g s (%d calls cancelled)",
                self._peer,
                limits.keepalive_timeout,
                len(self.processor.streams),
            )
            self.goaway(ErrorCodes.NO_ERROR, "keepalive timeout", abort=True)
            return
        silence = now - self._last_activity
        if silence < limits.keepalive_seconds:
            self._schedule_keepalive(limits.keepalive_seconds - silence)
            return
        if not self.processor.streams:
            self._schedule_keepalive(limits.keepalive_seconds)
            return
        self._ping_payload = os.urandom(8)
        self._ping_sent = now
        with contextlib.suppress(ProtocolError):
            self.connection._connection.ping(self._ping_payload)
            self.connection.flush()
        self._schedule_keepalive(limits.keepalive_timeout)

    def ping_acked(self, payload: bytes) -> None:
        if payload == self._ping_payload:
            self._ping_payload = None

    def _schedule_idle_check(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self._closed:
            return
        timeout = self._limits.idle_timeout
        if self.processor.streams:
            self._schedule_idle_check(timeout)
            return
        idle = time.monotonic() - self._last_activity
        if idle < timeout:
            self._schedule_idle_check(timeout - idle)
            return
        log.debug("closing connection from %s: idle for %.1f s", self._peer, idle)
        self.goaway(ErrorCodes.NO_ERROR, "idle timeout")

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self._server.release(self)
        self._cancel_timers()
        self._closed = True
        super().connection_lost(exc)
        self.processor.streams.clear()  # their tasks are cancelled; they hold their own

    @property
    def peer(self) -> str | None:
        return self._peer


class DrainingServer(Server):
    """grpclib's Server, remembering its connections so shutdown can flush them, and serving
    each through HardenedProtocol under `limits`.

    `Server.close()` cancels calls and leaves connections to die with the process, which
    drops whatever is still buffered for a client. `flush_connections` waits until the bytes
    written to each connection have left this process and been acknowledged by the peer
    (kernel send queue empty), then closes it.
    """

    def __init__(
        self,
        handlers: Collection[Any],
        max_message_bytes: int,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(handlers, codec=GovcCodec(strict=True))
        self._max_message_bytes = max_message_bytes
        self.limits = limits or ConnectionLimits()
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()
        self.connections = 0
        self._per_peer: dict[str | None, int] = {}
        self._last_refusal_log = -1e9
        self._refusals_unlogged = 0

    def admit(self, protocol: HardenedProtocol) -> str | None:
        """Count a new connection in; or the reason it is refused (then not counted)."""
        peer = protocol.peer
        if self.connections >= self.limits.max_connections:
            reason = f"too many connections (limit {self.limits.max_connections})"
        elif self._per_peer.get(peer, 0) >= self.limits.max_connections_per_peer:
            reason = (
                f"too many connections from {peer} (limit {self.limits.max_connections_per_peer})"
            )
        else:
            self.connections += 1
            self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
            return None
        self.note_refusal(f"refused a connection: {reason}")
        return reason

    def release(self, protocol: HardenedProtocol) -> None:
        peer = protocol.peer
        self.connections -= 1
        left = self._per_peer.get(peer, 1) - 1
        if left > 0:
            self._per_peer[peer] = left
        else:
            self._per_peer.pop(peer, None)

    def note_refusal(self, message: str) -> None:
        """Log a refusal; at most one line in 10 s (a flood would flood the log too)."""
        now = time.monotonic()
        if now - self._last_refusal_log < 10.0:
            self._refusals_unlogged += 1
            return
        more = f" (and {self._refusals_unlogged} more since the last report)"
        log.warning("%s%s", message, more if self._refusals_unlogged else "")
        self._last_refusal_log = now
        self._refusals_unlogged = 0

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = GrpclibHandler(
            self._mapping, self._codec, self._status_details_codec, self.__dispatch__
        )
        self._handlers.add(handler)
        protocol = HardenedProtocol(self, handler)
        self._protocols.add(protocol)
        accept = handler.accept

        def accept_framed(stream: H2Stream, headers: Any, release_stream: Any) -> None:
            """Every call of every service (health and reflection too) reads its requests
            through RequestFraming, which needs the call's headers and cardinality."""
            fields = dict(headers)
            method = self._mapping.get(fields.get(":path", ""))
            unary_request = method is not None and not method.cardinality.client_streaming
            encoding = fields.get("grpc-encoding")
            RequestFraming(stream, self._max_message_bytes, encoding, unary_request)
            accept(stream, headers, release_stream)

        handler.accept = accept_framed  # type: ignore[method-assign]
        return protocol

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()  # open connections stay up

    async def flush_connections(self, timeout: float) -> bool:
        """Wait (bounded) until every connection has delivered its output; then close them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        transports = [
            t
            for p in list(self._protocols)
            if (t := getattr(getattr(p, "connection", None), "_transport", None)) is not None
        ]
        pending = [t for t in transports if not t.is_closing()]
        while pending and loop.time() < deadline:
            pending = [t for t in pending if not t.is_closing() and _unsent_bytes(t) > 0]
            if pending:
                await asyncio.sleep(0.01)
        for transport in transports:
            transport.close()
        return not pending


def _unsent_bytes(transport: Any) -> int:
    """Bytes still buffered in the transport or unacknowledged in the kernel send queue."""
    buffered = int(transport.get_write_buffer_size())
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(termios, "TIOCOUTQ"):
        return buffered
    try:
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return buffered
    return buffered + int(struct.unpack("i", queued)[0])


class RequestFraming:
    """The gRPC framing of one call's requests, checked as grpclib reads them.

    grpclib reads a request message as `recv_data(5)` (compressed flag + length) and then
    `recv_data(length)`. Wrapping that read, before anything is buffered: a message longer than
    `max_bytes` is RESOURCE_EXHAUSTED; a set compressed flag is answered as gRPC's compression
    spec says (this server accepts no compression: without a `grpc-encoding` other than
    identity it is an invalid Compressed-Flag, INTERNAL; with one, an unsupported encoding,
    UNIMPLEMENTED) where grpclib raised NotImplementedError; a stream that ends inside a
    message, or a unary call's stream that ends with none, is INVALID_ARGUMENT where grpclib
    failed an assertion. Each is a MalformedMessage: one line in the log, no traceback.
    """

    def __init__(
        self,
        stream: H2Stream,
        max_bytes: int,
        encoding: str | None,
        unary_request: bool,
    ) -> None:
        self._recv_data = stream.recv_data
        self._max_bytes = max_bytes
        self._encoding = encoding
        self._unary_request = unary_request
        self._prefix_next = True
        self._messages = 0
        stream.recv_data = self.recv_data  # type: ignore[method-assign]

    async def recv_data(self, size: int) -> bytes:
        if self._prefix_next:
            return await self._recv_prefix(size)
        try:
            data: bytes = await self._recv_data(size)
        except AssertionError:  # grpclib's buffer: the stream ended before `size` bytes
            data = b""
        if len(data) != size:
            raise MalformedMessage(
                Status.INVALID_ARGUMENT,
                f"request message truncated: its prefix declares {size} bytes, "
                "the stream ended before them",
            )
        self._prefix_next = True
        self._messages += 1
        return data

    async def _recv_prefix(self, size: int) -> bytes:
        try:
            prefix: bytes = await self._recv_data(size)
        except AssertionError:
            prefix = b"?"  # some bytes, fewer than the 5 of a prefix
        if not prefix:  # the end of the request stream
            if self._unary_request and self._messages == 0:
                raise MalformedMessage(
                    Status.INVALID_ARGUMENT, "the request stream ended without a message"
                )
            return prefix
        if len(prefix) != 5:
            raise MalformedMessage(
                Status.INVALID_ARGUMENT,
                "request message truncated: the stream ended inside its 5-byte prefix",
            )
        flag, length = prefix[0], int.from_bytes(prefix[1:5], "big")
        if flag == 1:
            if self._encoding in (None, "identity"):
                raise MalformedMessage(
                    Status.INTERNAL,
                    "invalid Compressed-Flag: the request message is marked compressed, "
                    "but the call has no grpc-encoding header (other than identity)",
                )
            raise MalformedMessage(
                Status.UNIMPLEMENTED,
                f"grpc-encoding {self._encoding!r} is not supported; this server accepts "
                "only uncompressed (identity) messages",
            )
        if flag != 0:
            raise MalformedMessage(
                Status.INVALID_ARGUMENT, f"invalid Compressed-Flag {flag} (must be 0 or 1)"
            )
        if length > self._max_bytes:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"request message is {length} bytes, over the server's limit of "
                f"{self._max_bytes} bytes",
            )
        self._prefix_next = False
        return prefix


class GuardedService:
    """The handler table as grpclib serves it: every RPC of `handlers` through one guard."""

    def __init__(self, handlers: Handlers, tracker: CallTracker):
        self._handlers = handlers
        self._tracker = tracker

    def __mapping__(self) -> dict[str, Handler]:
        return {
            path: Handler(self._guard(path, h.func), h.cardinality, h.request_type, h.reply_type)
            for path, h in self._handlers.__mapping__().items()
        }

    def _guard(
        self, path: str, func: Callable[[Stream[Any, Any]], Awaitable[None]]
    ) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
        tracker = self._tracker

        async def guarded(stream: Stream[Any, Any]) -> None:
            if not tracker.accepting:
                raise GRPCError(Status.UNAVAILABLE, "server is shutting down")
            tracker.enter()
            try:
                await func(stream)
            except MalformedMessage as exc:
                log.warning("refused a malformed %s request: %s", path, exc.message)
                raise
            except GRPCError:
                raise
            except Exception as exc:
                raise to_grpc_error(exc, path) from None

        return guarded


class _ReflectionPool:
    """The generated descriptor pool, plus the health service, for server reflection.

    protobuf's (upb) pool cannot find a method by its full name (`govc.GoVCService.StoreBlob`),
    which tools such as grpcurl ask for; we answer with the file of its service.
    """

    def __init__(self) -> None:
        pool = default_google_proto_descriptor_pool
        try:
            pool.FindFileByName(health_pb2.DESCRIPTOR.name)
        except KeyError:
            pool.AddSerializedFile(health_pb2.DESCRIPTOR.serialized_pb)
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> Any:  # protobuf's method name
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                raise KeyError(symbol) from None
            if method not in service.methods_by_name:
                raise
            return service.file


class GrpcDoor:
    """The gRPC door on one port: the handler table behind the guard, the standard health
    service (SERVING while the door takes calls) and server reflection.

    `drain` is the shutdown grpclib lacks: health turns NOT_SERVING, the listener closes, new
    calls are refused, calls in flight finish (bounded), their responses are flushed to the
    clients, and only then are connections closed.
    """

    def __init__(
        self,
        handlers: Handlers,
        max_message_bytes: int,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.tracker = CallTracker()
        self._serving = ServiceStatus()
        service = GuardedService(handlers, self.tracker)
        health = Health({service: [self._serving]})
        services: list[Any] = [service, health]
        self._server = DrainingServer(
            ServerReflection.extend(services, pool=_ReflectionPool()), max_message_bytes, limits
        )

    async def start(self, host: str, port: int) -> int:
        """Listen (OSError if the port cannot be bound); returns the port bound."""
        await self._server.start(host, port)
        sockets = getattr(self._server._server, "sockets", None) or []
        self._serving.set(True)
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def drain(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._serving.set(False)
        self.tracker.accepting = False
        self._server.stop_listening()
        if not await self.tracker.wait_idle(timeout):
            log.warning("drain timed out with %d calls in flight", self.tracker.in_flight)
        if not await self._server.flush_connections(max(0.0, deadline - loop.time())):
            log.warning("drain timed out before every response reached its client")
        self._server.close()
        await self._server.wait_closed()
