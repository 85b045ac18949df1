"""The async client library: the public embedding API of govc.

    async with GovcClient("127.0.0.1:9090") as c:
        await c.create_repository("demo")
        stored = await c.store_blob("demo", b"hello\\n")
        blob = await c.get_blob("demo", stored.hash)

Every failure is raised as `GovcRpcError`, carrying the gRPC status and the server's message.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from generated.google.protobuf import Empty
from generated.govc import (
    CreateRepositoryRequest,
    CreateRepositoryResponse,
    DeleteRepositoryRequest,
    GetBlobRequest,
    GetBlobResponse,
    GetBlobWithDeltaRequest,
    GetBlobWithDeltaResponse,
    GetRepositoryRequest,
    GetRepositoryResponse,
    GoVcServiceStub,
    HealthResponse,
    ListRepositoriesRequest,
    ListRepositoriesResponse,
    StoreBlobRequest,
    StoreBlobResponse,
    StoreBlobWithDeltaRequest,
    StoreBlobWithDeltaResponse,
)

T = TypeVar("T")

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class GovcRpcError(Exception):
    """A call failed: `status` is the gRPC status, `message` the server's explanation."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(f"{status.name}: {message}")
        self.status = status
        self.message = message


def _split_target(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"target must be HOST:PORT, got {target!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class GovcClient:
    """An async client on one HTTP/2 connection (calls are multiplexed over it).

    Options: `timeout` (seconds, per call, None for no deadline), `metadata` sent with every
    call, `max_message_bytes` (payloads larger than this are refused before sending, matching
    the server's limit), `ssl` (True for the system trust store, or an `ssl.SSLContext`).
    """

    def __init__(
        self,
        target: str = "127.0.0.1:9090",
        *,
        timeout: float | None = 30.0,
        metadata: Mapping[str, str] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        ssl: bool | ssl_module.SSLContext | None = None,
    ) -> None:
        host, port = _split_target(target)
        self.timeout = timeout
        self.metadata = dict(metadata or {})
        self.max_message_bytes = max_message_bytes
        self._channel = Channel(host, port, ssl=ssl)
        self.stub = GoVcServiceStub(self._channel)

    async def __aenter__(self) -> GovcClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        try:
            return await method(request, timeout=self.timeout, metadata=self.metadata or None)
        except GRPCError as exc:
            raise GovcRpcError(exc.status, exc.message or exc.status.name) from None
        except TimeoutError:
            raise GovcRpcError(
                Status.DEADLINE_EXCEEDED, f"no answer within {self.timeout} s"
            ) from None
        except (StreamTerminatedError, ConnectionError, OSError) as exc:
            raise GovcRpcError(Status.UNAVAILABLE, f"connection failed: {exc}") from None

    def _check_size(self, field: str, data: bytes) -> None:
        if len(data) > self.max_message_bytes:
            raise GovcRpcError(
                Status.RESOURCE_EXHAUSTED,
                f"{field} is {len(data)} bytes, over the {self.max_message_bytes}-byte message "
                "limit; use a streaming upload",
            )

    # ---- repositories ----

    async def create_repository(
        self,
        repository_id: str,
        *,
        name: str = "",
        description: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> CreateRepositoryResponse:
        request = CreateRepositoryRequest(
            id=repository_id, name=name, description=description, metadata=dict(metadata or {})
        )
        return await self._call(self.stub.create_repository, request)

    async def get_repository(self, repository_id: str) -> GetRepositoryResponse:
        return await self._call(self.stub.get_repository, GetRepositoryRequest(id=repository_id))

    async def delete_repository(self, repository_id: str) -> None:
        await self._call(self.stub.delete_repository, DeleteRepositoryRequest(id=repository_id))

    async def list_repositories(self, limit: int = 0, offset: int = 0) -> ListRepositoriesResponse:
        request = ListRepositoriesRequest(limit=limit, offset=offset)
        return await self._call(self.stub.list_repositories, request)

    # ---- blobs ----

    async def store_blob(self, repository_id: str, content: bytes) -> StoreBlobResponse:
        self._check_size("content", content)
        request = StoreBlobRequest(repository_id=repository_id, content=content)
        return await self._call(self.stub.store_blob, request)

    async def get_blob(self, repository_id: str, blob_hash: str) -> GetBlobResponse:
        request = GetBlobRequest(repository_id=repository_id, hash=blob_hash)
        return await self._call(self.stub.get_blob, request)

    async def store_blob_with_delta(
        self, repository_id: str, content: bytes, *, use_compression: bool = True
    ) -> StoreBlobWithDeltaResponse:
        self._check_size("content", content)
        request = StoreBlobWithDeltaRequest(
            repository_id=repository_id, content=content, use_compression=use_compression
        )
        return await self._call(self.stub.store_blob_with_delta, request)

    async def get_blob_with_delta(
        self, repository_id: str, blob_hash: str
    ) -> GetBlobWithDeltaResponse:
        request = GetBlobWithDeltaRequest(repository_id=repository_id, hash=blob_hash)
        return await self._call(self.stub.get_blob_with_delta, request)

    # ---- health ----

    async def health(self) -> HealthResponse:
        return await self._call(self.stub.get_health, Empty())


async def wait_until_ready(target: str, deadline: float = 10.0) -> None:
    """Wait until a server answers GetHealth (used by tests and tools)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        try:
            async with GovcClient(target, timeout=1.0) as client:
                await client.health()
                return
        except GovcRpcError:
            if loop.time() > end:
                raise
            await asyncio.sleep(0.05)
