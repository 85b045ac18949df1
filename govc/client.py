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
    AddFileRequest,
    AddFileResponse,
    CheckoutBranchRequest,
    CommitRequest,
    CommitResponse,
    CreateBranchRequest,
    CreateBranchResponse,
    CreateRepositoryRequest,
    CreateRepositoryResponse,
    DeleteBranchRequest,
    DeleteRepositoryRequest,
    GetBlobRequest,
    GetBlobResponse,
    GetBlobWithDeltaRequest,
    GetBlobWithDeltaResponse,
    GetCommitRequest,
    GetCommitResponse,
    GetRepositoryRequest,
    GetRepositoryResponse,
    GetStatusRequest,
    GetStatusResponse,
    GoVcServiceStub,
    HealthResponse,
    ListBranchesRequest,
    ListBranchesResponse,
    ListCommitsRequest,
    ListCommitsResponse,
    ListRepositoriesRequest,
    ListRepositoriesResponse,
    MergeBranchRequest,
    MergeBranchResponse,
    MoveFileRequest,
    ReadFileRequest,
    ReadFileResponse,
    RemoveFileRequest,
    StoreBlobRequest,
    StoreBlobResponse,
    StoreBlobWithDeltaRequest,
    StoreBlobWithDeltaResponse,
    WriteFileRequest,
    WriteFileResponse,
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

    # ---- files ----

    async def add_file(self, repository_id: str, path: str, content: bytes) -> AddFileResponse:
        """Write `content` to the work tree and stage it (`git add`)."""
        self._check_size("content", content)
        request = AddFileRequest(repository_id=repository_id, path=path, content=content)
        return await self._call(self.stub.add_file, request)

    async def write_file(self, repository_id: str, path: str, content: bytes) -> WriteFileResponse:
        """Write `content` to the work tree only (not staged)."""
        self._check_size("content", content)
        request = WriteFileRequest(repository_id=repository_id, path=path, content=content)
        return await self._call(self.stub.write_file, request)

    async def read_file(self, repository_id: str, path: str, commit: str = "") -> ReadFileResponse:
        """The file from the work tree (or index, or HEAD), or from revision `commit`."""
        request = ReadFileRequest(repository_id=repository_id, path=path, commit=commit)
        return await self._call(self.stub.read_file, request)

    async def remove_file(self, repository_id: str, path: str) -> None:
        request = RemoveFileRequest(repository_id=repository_id, path=path)
        await self._call(self.stub.remove_file, request)

    async def move_file(self, repository_id: str, from_path: str, to_path: str) -> None:
        request = MoveFileRequest(repository_id=repository_id, from_path=from_path, to_path=to_path)
        await self._call(self.stub.move_file, request)

    # ---- commits ----

    async def commit(
        self,
        repository_id: str,
        message: str,
        *,
        author: str = "",
        files: list[str] | None = None,
    ) -> CommitResponse:
        request = CommitRequest(
            repository_id=repository_id, message=message, author=author, files=list(files or [])
        )
        return await self._call(self.stub.commit, request)

    async def get_commit(self, repository_id: str, revision: str) -> GetCommitResponse:
        request = GetCommitRequest(repository_id=repository_id, hash=revision)
        return await self._call(self.stub.get_commit, request)

    async def list_commits(
        self,
        repository_id: str,
        *,
        branch: str = "",
        author: str = "",
        limit: int = 0,
        offset: int = 0,
    ) -> ListCommitsResponse:
        request = ListCommitsRequest(
            repository_id=repository_id, branch=branch, author=author, limit=limit, offset=offset
        )
        return await self._call(self.stub.list_commits, request)

    # ---- branches ----

    async def create_branch(
        self, repository_id: str, name: str, from_commit: str = ""
    ) -> CreateBranchResponse:
        request = CreateBranchRequest(
            repository_id=repository_id, name=name, from_commit=from_commit
        )
        return await self._call(self.stub.create_branch, request)

    async def list_branches(self, repository_id: str) -> ListBranchesResponse:
        request = ListBranchesRequest(repository_id=repository_id)
        return await self._call(self.stub.list_branches, request)

    async def delete_branch(self, repository_id: str, name: str) -> None:
        request = DeleteBranchRequest(repository_id=repository_id, name=name)
        await self._call(self.stub.delete_branch, request)

    async def checkout_branch(self, repository_id: str, name: str) -> None:
        request = CheckoutBranchRequest(repository_id=repository_id, name=name)
        await self._call(self.stub.checkout_branch, request)

    async def merge_branch(
        self, repository_id: str, source_branch: str, target_branch: str = "", message: str = ""
    ) -> MergeBranchResponse:
        request = MergeBranchRequest(
            repository_id=repository_id,
            source_branch=source_branch,
            target_branch=target_branch,
            message=message,
        )
        return await self._call(self.stub.merge_branch, request)

    async def status(self, repository_id: str) -> GetStatusResponse:
        return await self._call(self.stub.get_status, GetStatusRequest(repository_id=repository_id))

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
