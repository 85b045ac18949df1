"""The ONE table from every RPC of the contract to the handler that serves it.

`Handlers` is typed against the generated service base: every method is marked `@override`,
so a handler whose RPC was renamed or removed is a type error, and `missing_rpcs()` (checked
at start-up and by a test) names any RPC without a handler. A handler takes the request
message and returns the response message (streams: async iterators); doors (the gRPC binding
in `govc.transport`, and any added later) call these methods and nothing else.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass

from typing_extensions import override

from generated.google.protobuf import Empty
from generated.govc import (
    AbortMergeRequest,
    AddFileRequest,
    AddFileResponse,
    BatchOperationsRequest,
    BatchOperationsResponse,
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
    GoVcServiceBase,
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
    StreamBlobResponse,
    Tag,
    UploadBlobStreamRequest,
    UploadBlobStreamResponse,
    WriteFileRequest,
    WriteFileResponse,
)
from govc.services.batch import BatchService
from govc.services.blobs import BlobService
from govc.services.health import HealthService
from govc.services.repositories import RepositoryService
from govc.services.search import SearchService
from govc.services.streaming import StreamingService
from govc.services.versioning import VersioningService


@dataclass(eq=False)
class Handlers(GoVcServiceBase):
    """GoVCService: each RPC, delegated to the service of its group."""

    repositories: RepositoryService
    blobs: BlobService
    batch: BatchService
    versioning: VersioningService
    search: SearchService
    streaming: StreamingService
    health: HealthService

    # ---- repositories (RepositoryService) ----

    @override
    async def create_repository(self, message: CreateRepositoryRequest) -> CreateRepositoryResponse:
        return await self.repositories.create_repository(message)

    @override
    async def get_repository(self, message: GetRepositoryRequest) -> GetRepositoryResponse:
        return await self.repositories.get_repository(message)

    @override
    async def delete_repository(self, message: DeleteRepositoryRequest) -> Empty:
        return await self.repositories.delete_repository(message)

    @override
    async def list_repositories(self, message: ListRepositoriesRequest) -> ListRepositoriesResponse:
        return await self.repositories.list_repositories(message)

    # ---- blobs (BlobService) ----

    @override
    async def store_blob(self, message: StoreBlobRequest) -> StoreBlobResponse:
        return await self.blobs.store_blob(message)

    @override
    async def get_blob(self, message: GetBlobRequest) -> GetBlobResponse:
        return await self.blobs.get_blob(message)

    @override
    async def store_blob_with_delta(
        self, message: StoreBlobWithDeltaRequest
    ) -> StoreBlobWithDeltaResponse:
        return await self.blobs.store_blob_with_delta(message)

    @override
    async def get_blob_with_delta(
        self, message: GetBlobWithDeltaRequest
    ) -> GetBlobWithDeltaResponse:
        return await self.blobs.get_blob_with_delta(message)

    # ---- batch (BatchService) ----

    @override
    async def batch_operations(self, message: BatchOperationsRequest) -> BatchOperationsResponse:
        return await self.batch.batch_operations(message)

    # ---- versioning (VersioningService) ----

    @override
    async def add_file(self, message: AddFileRequest) -> AddFileResponse:
        return await self.versioning.add_file(message)

    @override
    async def read_file(self, message: ReadFileRequest) -> ReadFileResponse:
        return await self.versioning.read_file(message)

    @override
    async def write_file(self, message: WriteFileRequest) -> WriteFileResponse:
        return await self.versioning.write_file(message)

    @override
    async def remove_file(self, message: RemoveFileRequest) -> Empty:
        return await self.versioning.remove_file(message)

    @override
    async def move_file(self, message: MoveFileRequest) -> Empty:
        return await self.versioning.move_file(message)

    @override
    async def commit(self, message: CommitRequest) -> CommitResponse:
        return await self.versioning.commit(message)

    @override
    async def get_commit(self, message: GetCommitRequest) -> GetCommitResponse:
        return await self.versioning.get_commit(message)

    @override
    async def list_commits(self, message: ListCommitsRequest) -> ListCommitsResponse:
        return await self.versioning.list_commits(message)

    @override
    async def create_branch(self, message: CreateBranchRequest) -> CreateBranchResponse:
        return await self.versioning.create_branch(message)

    @override
    async def list_branches(self, message: ListBranchesRequest) -> ListBranchesResponse:
        return await self.versioning.list_branches(message)

    @override
    async def delete_branch(self, message: DeleteBranchRequest) -> Empty:
        return await self.versioning.delete_branch(message)

    @override
    async def checkout_branch(self, message: CheckoutBranchRequest) -> Empty:
        return await self.versioning.checkout_branch(message)

    @override
    async def merge_branch(self, message: MergeBranchRequest) -> MergeBranchResponse:
        return await self.versioning.merge_branch(message)

    @override
    async def abort_merge(self, message: AbortMergeRequest) -> Empty:
        return await self.versioning.abort_merge(message)

    @override
    async def create_tag(self, message: CreateTagRequest) -> Tag:
        return await self.versioning.create_tag(message)

    @override
    async def list_tags(self, message: ListTagsRequest) -> ListTagsResponse:
        return await self.versioning.list_tags(message)

    @override
    async def delete_tag(self, message: DeleteTagRequest) -> Empty:
        return await self.versioning.delete_tag(message)

    @override
    async def get_status(self, message: GetStatusRequest) -> GetStatusResponse:
        return await self.versioning.get_status(message)

    # ---- search (SearchService) ----

    @override
    async def full_text_search(self, message: FullTextSearchRequest) -> FullTextSearchResponse:
        return await self.search.full_text_search(message)

    @override
    async def execute_sql_query(self, message: ExecuteSqlQueryRequest) -> ExecuteSqlQueryResponse:
        return await self.search.execute_sql_query(message)

    @override
    async def search_with_aggregation(
        self, message: SearchWithAggregationRequest
    ) -> SearchWithAggregationResponse:
        return await self.search.search_with_aggregation(message)

    # ---- streaming (StreamingService) ----

    @override
    async def stream_blob(
        self, messages: AsyncIterator[StreamBlobRequest]
    ) -> AsyncIterator[StreamBlobResponse]:
        async for response in self.streaming.stream_blob(messages):
            yield response

    @override
    async def upload_blob_stream(
        self, messages: AsyncIterator[UploadBlobStreamRequest]
    ) -> UploadBlobStreamResponse:
        return await self.streaming.upload_blob_stream(messages)

    # ---- health (HealthService) ----

    @override
    async def get_health(self, message: Empty) -> HealthResponse:
        return await self.health.get_health(message)


def missing_rpcs(handlers: type[GoVcServiceBase] = Handlers) -> list[str]:
    """RPC methods of the generated base that `handlers` does not define itself."""
    return sorted(
        name
        for name, value in vars(GoVcServiceBase).items()
        if not name.startswith("_") and callable(value) and name not in vars(handlers)
    )
