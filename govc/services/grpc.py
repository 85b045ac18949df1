"""The grpclib adapter: binds the transport-agnostic handlers to the generated service.

Every call passes through one guard that (1) refuses new calls while the server drains,
(2) counts calls in flight so shutdown can wait for them, (3) enforces the request message size
limit from the 5-byte gRPC length prefix, before the message is buffered (grpclib has no limit
of its own), (4) sets the call context, and (5) maps domain errors to status codes.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from generated.govc import GoVcServiceBase
from govc.errors import Unimplemented
from govc.services.context import CallContext, current_call
from govc.services.errors import to_grpc_error

log = logging.getLogger(__name__)

_RPC_PREFIX = "__rpc_"


class CallTracker:
    """Calls in flight, and whether new ones are still accepted."""

    def __init__(self) -> None:
        self.accepting = True
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


def limit_request_size(stream: Stream[Any, Any], max_bytes: int) -> None:
    """Reject a request message longer than `max_bytes` as soon as its length prefix arrives.

    grpclib reads a message as `recv_data(5)` (flag + length) and then `recv_data(length)`; the
    check sits on the second read so an oversized message is never buffered.
    """
    transport_stream = stream._stream  # grpclib.protocol.Stream (grpclib is pinned exactly)
    recv_data = transport_stream.recv_data

    async def limited_recv_data(size: int) -> bytes:
        if size > max_bytes:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"request message is {size} bytes, over the server's limit of {max_bytes} bytes",
            )
        data: bytes = await recv_data(size)
        return data

    transport_stream.recv_data = limited_recv_data  # type: ignore[method-assign]


def _unimplemented(rpc: str) -> Callable[..., Awaitable[Any]]:
    async def handler(*_: Any) -> Any:
        raise Unimplemented(f"{rpc} is declared in the govc API but not served by this version")

    return handler


class GovcService(GoVcServiceBase):
    """GoVCService over grpclib, delegating each RPC to the handler object that defines it."""

    def __init__(self, handlers: list[object], tracker: CallTracker, max_message_bytes: int):
        self._tracker = tracker
        self._max_message_bytes = max_message_bytes
        self.served: set[str] = set()
        for path, handler in super().__mapping__().items():
            method = handler.func.__name__.removeprefix(_RPC_PREFIX)
            impl = next((getattr(h, method) for h in handlers if hasattr(h, method)), None)
            if impl is None:
                impl = _unimplemented(path.rsplit("/", 1)[-1])
            else:
                self.served.add(path)
            setattr(self, method, impl)

    def __mapping__(self) -> dict[str, Handler]:
        return {
            path: Handler(self._guard(path, h.func), h.cardinality, h.request_type, h.reply_type)
            for path, h in super().__mapping__().items()
        }

    def _guard(
        self, path: str, func: Callable[[Stream[Any, Any]], Awaitable[None]]
    ) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
        tracker = self._tracker
        max_bytes = self._max_message_bytes

        async def guarded(stream: Stream[Any, Any]) -> None:
            if not tracker.accepting:
                raise GRPCError(Status.UNAVAILABLE, "server is shutting down")
            tracker.enter()
            limit_request_size(stream, max_bytes)
            peer = stream.peer.addr() if stream.peer else None
            metadata = {k: v for k, v in (stream.metadata or {}).items() if isinstance(v, str)}
            token = current_call.set(
                CallContext(
                    method=path,
                    peer=f"{peer[0]}:{peer[1]}" if peer else "",
                    metadata=metadata,
                    deadline_seconds=stream.deadline.time_remaining() if stream.deadline else None,
                )
            )
            try:
                await func(stream)
            except GRPCError:
                raise
            except Exception as exc:
                raise to_grpc_error(exc, path) from None
            finally:
                current_call.reset(token)
                tracker.leave()

        return guarded
