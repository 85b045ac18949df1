"""The grpclib adapter: binds the transport-agnostic handlers to the generated service.

Every call passes through one guard that (1) refuses new calls while the server drains,
(2) counts calls in flight so shutdown can wait for them, (3) maps domain errors to status
codes, and (4) logs a malformed request in one line. Below grpclib, every request of every
call is read through RequestFraming (the size limit from the 5-byte gRPC length prefix before
the message is buffered, as grpclib has no limit of its own; the compressed flag; truncation)
and decoded by the strict codec, so a malformed request never reaches a handler.
"""

import asyncio
import fcntl
import logging
import struct
import termios
import weakref
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.health.check import ServiceStatus
from grpclib.health.service import Health
from grpclib.health.v1 import health_pb2
from grpclib.protocol import H2Protocol
from grpclib.protocol import Stream as H2Stream
from grpclib.reflection.service import ServerReflection
from grpclib.server import Server, Stream

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


class DrainingServer(Server):
    """grpclib's Server, remembering its connections so shutdown can flush them.

    `Server.close()` cancels calls and leaves connections to die with the process, which
    drops whatever is still buffered for a client. `flush_connections` waits until the bytes
    written to each connection have left this process and been acknowledged by the peer
    (kernel send queue empty), then closes it.
    """

    def __init__(self, handlers: Collection[Any], max_message_bytes: int) -> None:
        super().__init__(handlers, codec=GovcCodec(strict=True))
        self._max_message_bytes = max_message_bytes
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()

    def _protocol_factory(self) -> H2Protocol:
        protocol: H2Protocol = super()._protocol_factory()
        self._protocols.add(protocol)
        handler = protocol.handler
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
            p.connection._transport for p in list(self._protocols) if hasattr(p, "connection")
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

    def __init__(self, handlers: Handlers, max_message_bytes: int) -> None:
        self.tracker = CallTracker()
        self._serving = ServiceStatus()
        service = GuardedService(handlers, self.tracker)
        health = Health({service: [self._serving]})
        services: list[Any] = [service, health]
        self._server = DrainingServer(
            ServerReflection.extend(services, pool=_ReflectionPool()), max_message_bytes
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
