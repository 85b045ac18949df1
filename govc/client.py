"""The async client library: the public embedding API of govc.

    async with GovcClient("127.0.0.1:9090") as c:
        await c.create_repository("demo")
        stored = await c.store_blob("demo", b"hello\\n")
        blob = await c.get_blob("demo", stored.hash)

Every failure is raised as `GovcRpcError`, carrying the gRPC status and the server's message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import ssl as ssl_module
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypedDict, TypeVar, Unpack, cast

import betterproto2
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from generated.google.protobuf import Empty
from generated.govc import (
    AbortMergeRequest,
    AddFileRequest,
    AddFileResponse,
    BatchOperation,
    BatchOperationsRequest,
    CheckoutBranchRequest,
    CommitRequest,
    CommitResponse,
    CreateBranchRequest,
    CreateBranchResponse,
    CreateRepositoryRequest,
    CreateRepositoryResponse,
    CreateTagRequest,
    DeleteBranchRequest,
    DeleteRepositoryRequest,
    DeleteTagRequest,
    ExecuteSqlQueryRequest,
    ExecuteSqlQueryResponse,
    FullTextSearchRequest,
    FullTextSearchResponse,
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
    ListTagsRequest,
    ListTagsResponse,
    MergeBranchRequest,
    MergeBranchResponse,
    MoveFileRequest,
    ReadFileRequest,
    ReadFileResponse,
    RemoveFileRequest,
    SearchWithAggregationRequest,
    SearchWithAggregationResponse,
    StoreBlobRequest,
    StoreBlobResponse,
    StoreBlobWithDeltaRequest,
    StoreBlobWithDeltaResponse,
    StreamBlobRequest,
    StreamChunk,
    StreamMetadata,
    Tag,
    UploadBlobStreamRequest,
    UploadBlobStreamResponse,
    UploadMetadata,
    WriteFileRequest,
    WriteFileResponse,
)
from govc.transport.codec import GovcCodec

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
        self._channel = Channel(host, port, ssl=ssl, codec=GovcCodec())
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

    @contextmanager
    def _rpc_errors(self) -> Iterator[None]:
        """Every failure of a call as one exception type, GovcRpcError."""
        try:
            yield
        except GRPCError as exc:
            raise GovcRpcError(exc.status, exc.message or exc.status.name) from None
        except TimeoutError:
            raise GovcRpcError(
                Status.DEADLINE_EXCEEDED, f"no answer within {self.timeout} s"
            ) from None
        except (StreamTerminatedError, ConnectionError, OSError) as exc:
            raise GovcRpcError(Status.UNAVAILABLE, f"connection failed: {exc}") from None

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        with self._rpc_errors():
            return await method(request, timeout=self.timeout, metadata=self.metadata or None)

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

    async def add_file(
        self, repository_id: str, path: str, content: bytes = b"", *, blob_hash: str = ""
    ) -> AddFileResponse:
        """Write `content` (or the stored blob `blob_hash`, of any size) to the work tree and
        stage it (`git add`)."""
        self._check_size("content", content)
        request = AddFileRequest(
            repository_id=repository_id, path=path, content=content, blob_hash=blob_hash
        )
        return await self._call(self.stub.add_file, request)

    async def write_file(
        self, repository_id: str, path: str, content: bytes = b"", *, blob_hash: str = ""
    ) -> WriteFileResponse:
        """Write `content` (or the stored blob `blob_hash`) to the work tree only (not staged)."""
        self._check_size("content", content)
        request = WriteFileRequest(
            repository_id=repository_id, path=path, content=content, blob_hash=blob_hash
        )
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
        self,
        repository_id: str,
        source_branch: str,
        target_branch: str = "",
        message: str = "",
        *,
        strategy: str = "",
        leave_conflicts: bool = False,
    ) -> MergeBranchResponse:
        request = MergeBranchRequest(
            repository_id=repository_id,
            source_branch=source_branch,
            target_branch=target_branch,
            message=message,
            strategy=strategy,
            leave_conflicts=leave_conflicts,
        )
        return await self._call(self.stub.merge_branch, request)

    async def abort_merge(self, repository_id: str) -> None:
        await self._call(self.stub.abort_merge, AbortMergeRequest(repository_id=repository_id))

    async def create_tag(
        self,
        repository_id: str,
        name: str,
        target: str = "",
        message: str = "",
        tagger: str = "",
    ) -> Tag:
        """A lightweight tag, or with `message` an annotated one (`git tag -a`)."""
        request = CreateTagRequest(
            repository_id=repository_id, name=name, target=target, message=message, tagger=tagger
        )
        return await self._call(self.stub.create_tag, request)

    async def list_tags(self, repository_id: str) -> ListTagsResponse:
        return await self._call(self.stub.list_tags, ListTagsRequest(repository_id=repository_id))

    async def delete_tag(self, repository_id: str, name: str) -> None:
        request = DeleteTagRequest(repository_id=repository_id, name=name)
        await self._call(self.stub.delete_tag, request)

    async def status(self, repository_id: str) -> GetStatusResponse:
        return await self._call(self.stub.get_status, GetStatusRequest(repository_id=repository_id))

    # ---- streaming ----

    async def upload(
        self,
        repository_id: str,
        source: str | os.PathLike[str] | AsyncIterable[bytes],
        *,
        chunk_size: int = 64 * 1024,
        total_size: int = 0,
        filename: str = "",
        progress: Callable[[int, int], None] | None = None,
    ) -> UploadBlobStreamResponse:
        """Upload a file (or an async iterable of bytes) with UploadBlobStream.

        Every chunk carries its SHA-256; the reply's checksum is verified against the SHA-256
        of everything sent. `progress(bytes_sent, total_size)` is called after each chunk.
        """
        digest = hashlib.sha256()
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            total_size = total_size or path.stat().st_size
            filename = filename or path.name
            pieces: AsyncIterable[bytes] = _read_file(path, chunk_size)
        else:
            pieces = source

        async def requests() -> AsyncIterator[UploadBlobStreamRequest]:
            yield UploadBlobStreamRequest(
                repository_id=repository_id,
                metadata=UploadMetadata(
                    filename=filename, total_size=total_size, chunk_size=chunk_size
                ),
            )
            sent = 0
            sequence = 0
            async for piece in _rechunk(pieces, chunk_size):
                digest.update(piece)
                yield UploadBlobStreamRequest(
                    repository_id=repository_id,
                    chunk=StreamChunk(
                        sequence_num=sequence,
                        data=piece,
                        checksum=hashlib.sha256(piece).hexdigest(),
                    ),
                )
                sequence += 1
                sent += len(piece)
                if progress is not None:
                    progress(sent, total_size)

        response = await self._call(self.stub.upload_blob_stream, requests())
        if response.checksum != digest.hexdigest():
            raise GovcRpcError(Status.DATA_LOSS, "server's SHA-256 differs from what was sent")
        return response

    async def download(
        self,
        repository_id: str,
        blob_hash: str,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        chunk_size: int = 64 * 1024,
        start: int = 0,
        end: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> StreamMetadata:
        """Download a blob (or the range [start, end)) with StreamBlob into a path or a binary
        writer, verifying every chunk's SHA-256 and the whole range's."""
        request = StreamBlobRequest(
            repository_id=repository_id,
            hash=blob_hash,
            chunk_size=chunk_size,
            start_offset=start,
            end_offset=end,
        )
        if isinstance(dest, (str, os.PathLike)):
            with Path(dest).open("wb") as out:
                return await self._download_into(request, out, progress)
        return await self._download_into(request, dest, progress)

    async def _download_into(
        self,
        request: StreamBlobRequest,
        out: BinaryIO,
        progress: Callable[[int, int], None] | None,
    ) -> StreamMetadata:
        digest = hashlib.sha256()
        metadata: StreamMetadata | None = None
        received = 0
        async for message in self._stream(self.stub.stream_blob, [request]):
            kind, value = betterproto2.which_one_of(message, "response")
            if kind == "metadata":
                metadata = value
            elif kind == "chunk":
                chunk = cast(StreamChunk, value)
                if hashlib.sha256(chunk.data).hexdigest() != chunk.checksum:
                    problem = f"chunk {chunk.sequence_num} does not match its SHA-256"
                    raise GovcRpcError(Status.DATA_LOSS, problem)
                digest.update(chunk.data)
                out.write(chunk.data)
                received += len(chunk.data)
                if progress is not None and metadata is not None:
                    progress(received, metadata.total_size)
        if metadata is None or digest.hexdigest() != metadata.checksum:
            raise GovcRpcError(Status.DATA_LOSS, "downloaded content does not match its SHA-256")
        return metadata

    async def _stream(
        self, method: Callable[..., AsyncIterator[T]], requests: Any
    ) -> AsyncIterator[T]:
        with self._rpc_errors():
            async for message in method(
                requests, timeout=self.timeout, metadata=self.metadata or None
            ):
                yield message

    # ---- search and SQL ----

    async def search(
        self, repository_id: str, query: str, **options: Unpack[SearchOptions]
    ) -> FullTextSearchResponse:
        """Full-text search over the repository's current files (tantivy query syntax; "" matches
        every file). `sort_by`: score (default), path, size, date; `highlight_length` > 0 asks for
        snippets of at most that many characters; `total` counts every match."""
        request = search_request(repository_id, query, **options)
        return await self._call(self.stub.full_text_search, request)

    async def search_with_aggregation(
        self,
        repository_id: str,
        query: str | FullTextSearchRequest,
        group_by: Sequence[str],
        *,
        aggregations: Sequence[str] = (),
        time_range: str = "",
    ) -> SearchWithAggregationResponse:
        """Every match of `query` grouped by `group_by` (extension, size_range, date_range, path,
        author), with `aggregations` (all metrics when empty) per group and overall."""
        inner = (
            query
            if isinstance(query, FullTextSearchRequest)
            else search_request(repository_id, query)
        )
        request = SearchWithAggregationRequest(
            repository_id=repository_id,
            query=inner,
            group_by=list(group_by),
            aggregations=list(aggregations),
            time_range=time_range,
        )
        return await self._call(self.stub.search_with_aggregation, request)

    async def execute_sql(self, repository_id: str, sql_query: str) -> ExecuteSqlQueryResponse:
        """One read-only SELECT over the repository's tables (files, commits, changes,
        branches, blobs); every value comes back as text, NULLs absent."""
        request = ExecuteSqlQueryRequest(repository_id=repository_id, sql_query=sql_query)
        return await self._call(self.stub.execute_sql_query, request)

    # ---- batch ----

    def batch(
        self, repository_id: str, *, transaction: bool = False, parallel: bool = False
    ) -> Batch:
        """A builder for BatchOperations: `b = c.batch(repo); b.write(...); await b.run()`."""
        return Batch(self, repository_id, transaction=transaction, parallel=parallel)

    # ---- health ----

    async def health(self) -> HealthResponse:
        return await self._call(self.stub.get_health, Empty())


class SearchOptions(TypedDict, total=False):
    """FullTextSearch's filters, order, paging, highlights and content (README: Full-text
    search); absent means the server's default."""

    file_types: Sequence[str]
    max_size: int
    min_score: float
    include_content: bool
    highlight_length: int
    limit: int
    offset: int
    sort_by: str


def search_request(
    repository_id: str, query: str, **options: Unpack[SearchOptions]
) -> FullTextSearchRequest:
    return FullTextSearchRequest(
        repository_id=repository_id,
        query=query,
        file_types=list(options.get("file_types", ())),
        max_size=options.get("max_size", 0),
        min_score=options.get("min_score", 0.0),
        include_content=options.get("include_content", False),
        highlight_length=options.get("highlight_length", 0),
        limit=options.get("limit", 0),
        offset=options.get("offset", 0),
        sort_by=options.get("sort_by", ""),
    )


@dataclass
class BatchResult:
    id: str
    success: bool
    result: dict[str, Any]
    error: str


@dataclass
class BatchOutcome:
    success: bool
    error: str
    results: list[BatchResult]
    execution_time_ms: float


class Batch:
    """Operations collected in order and sent as one BatchOperations call."""

    def __init__(
        self, client: GovcClient, repository_id: str, *, transaction: bool, parallel: bool
    ) -> None:
        self._client = client
        self._repository_id = repository_id
        self._transaction = transaction
        self._parallel = parallel
        self._operations: list[BatchOperation] = []

    def __len__(self) -> int:
        return len(self._operations)

    def add(self, op_type: str, params: Mapping[str, Any], op_id: str = "") -> Batch:
        op_id = op_id or str(len(self._operations))
        encoded = json.dumps(dict(params), separators=(",", ":")).encode()
        self._operations.append(BatchOperation(id=op_id, type=op_type, params=encoded))
        return self

    @staticmethod
    def _content(content: bytes | str) -> dict[str, str]:
        if isinstance(content, str):
            return {"content": content}
        try:
            return {"content": content.decode("utf-8")}
        except UnicodeDecodeError:
            return {"content_b64": base64.b64encode(content).decode()}

    def store_blob(self, content: bytes | str, op_id: str = "") -> Batch:
        return self.add("store_blob", self._content(content), op_id)

    def get_blob(self, blob_hash: str, op_id: str = "") -> Batch:
        return self.add("get_blob", {"hash": blob_hash}, op_id)

    def write(
        self, path: str, content: bytes | str, *, stage: bool = True, op_id: str = ""
    ) -> Batch:
        return self.add("write", {"path": path, "stage": stage, **self._content(content)}, op_id)

    def read(self, path: str, ref: str = "", op_id: str = "") -> Batch:
        return self.add("read", {"path": path, "ref": ref} if ref else {"path": path}, op_id)

    def delete(self, path: str, op_id: str = "") -> Batch:
        return self.add("delete", {"path": path}, op_id)

    def commit(
        self, message: str, *, author: str = "", files: list[str] | None = None, op_id: str = ""
    ) -> Batch:
        params: dict[str, Any] = {"message": message, "author": author}
        if files:
            params["files"] = files
        return self.add("commit", params, op_id)

    def get_commit(self, revision: str, op_id: str = "") -> Batch:
        return self.add("get_commit", {"hash": revision}, op_id)

    def list_commits(
        self,
        *,
        branch: str = "",
        limit: int = 0,
        offset: int = 0,
        author: str = "",
        op_id: str = "",
    ) -> Batch:
        params = {"branch": branch, "limit": limit, "offset": offset, "author": author}
        return self.add("list_commits", params, op_id)

    def get_tree(self, ref: str = "", path: str = "", op_id: str = "") -> Batch:
        params = {k: v for k, v in (("ref", ref), ("path", path)) if v}
        return self.add("get_tree", params, op_id)

    def query(self, pattern: str = "", op_id: str = "", *, sql: str = "") -> Batch:
        """Files whose path matches the glob `pattern`, or the rows of a read-only `sql` SELECT
        (as ExecuteSQLQuery; only in a batch without writes, or a parallel one)."""
        return self.add("query", {"sql": sql} if sql else {"pattern": pattern}, op_id)

    async def run(self) -> BatchOutcome:
        request = BatchOperationsRequest(
            repository_id=self._repository_id,
            operations=self._operations,
            transaction=self._transaction,
            parallel=self._parallel,
        )
        response = await self._client._call(self._client.stub.batch_operations, request)
        return BatchOutcome(
            success=response.success,
            error=response.error,
            results=[
                BatchResult(r.id, r.success, json.loads(r.result) if r.result else {}, r.error)
                for r in response.results
            ],
            execution_time_ms=response.execution_time_ms,
        )


async def _read_file(path: Path, chunk_size: int) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while True:
            piece = (
                await asyncio.to_thread(source.read, chunk_size)
                if chunk_size > 256 * 1024
                else source.read(chunk_size)
            )
            if not piece:
                return
            yield piece


async def _rechunk(pieces: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """Pieces of exactly `size` bytes (the last shorter); one empty piece for no data."""
    buffer = bytearray()
    sent_any = False
    async for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
            sent_any = True
    if buffer or not sent_any:
        yield bytes(buffer)


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
