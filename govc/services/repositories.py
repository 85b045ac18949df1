"""Repository RPCs: CreateRepository, GetRepository, DeleteRepository, ListRepositories."""

from collections.abc import Callable, Iterable

from generated.google.protobuf import Empty
from generated.govc import (
    CreateRepositoryRequest,
    CreateRepositoryResponse,
    DeleteRepositoryRequest,
    GetRepositoryRequest,
    GetRepositoryResponse,
    ListRepositoriesRequest,
    ListRepositoriesResponse,
)
from govc.core.registry import Registry, RepositoryInfo
from govc.core.validation import validate_repo_id
from govc.errors import InvalidArgument
from govc.services.access import Access
from govc.services.convert import timestamp_from_us

MAX_NAME_BYTES = 256
MAX_DESCRIPTION_BYTES = 4096
MAX_METADATA_ENTRIES = 100
MAX_METADATA_BYTES = 64 * 1024


def _repository_message(info: RepositoryInfo) -> GetRepositoryResponse:
    return GetRepositoryResponse(
        id=info.id,
        name=info.name,
        description=info.description,
        created_at=timestamp_from_us(info.created_at_us),
        metadata=dict(info.metadata),
    )


def _check_length(value: str, field: str, limit: int) -> None:
    if len(value.encode()) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} bytes")


class RepositoryService:
    def __init__(
        self,
        access: Access,
        registry: Registry,
        changed: Callable[[str, Iterable[str] | None], None],
    ) -> None:
        self._access = access
        self._registry = registry
        self._changed = changed  # told when a repository is deleted (the search indexer)

    async def create_repository(self, message: CreateRepositoryRequest) -> CreateRepositoryResponse:
        repo_id = validate_repo_id(message.id, "id")
        _check_length(message.name, "name", MAX_NAME_BYTES)
        _check_length(message.description, "description", MAX_DESCRIPTION_BYTES)
        metadata = dict(message.metadata)
        if len(metadata) > MAX_METADATA_ENTRIES:
            raise InvalidArgument(f"metadata has more than {MAX_METADATA_ENTRIES} entries")
        if sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items()) > MAX_METADATA_BYTES:
            raise InvalidArgument(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
        if any(not key for key in metadata):
            raise InvalidArgument("metadata keys must not be empty")
        new = self._registry.new_info(repo_id, message.name, message.description, metadata)
        info = await self._access.write(None, lambda txn: self._registry.create(txn, new))
        return CreateRepositoryResponse(
            id=info.id, name=info.name, created_at=timestamp_from_us(info.created_at_us)
        )

    async def get_repository(self, message: GetRepositoryRequest) -> GetRepositoryResponse:
        repo_id = validate_repo_id(message.id, "id")
        info = self._access.read_inline(None, lambda txn: self._registry.get(txn, repo_id))
        return _repository_message(info)

    async def delete_repository(self, message: DeleteRepositoryRequest) -> Empty:
        repo_id = validate_repo_id(message.id, "id")
        await self._access.write(
            None,
            lambda txn: self._registry.delete(txn, repo_id),
            then=lambda: self._changed(repo_id, None),
        )
        return Empty()

    async def list_repositories(self, message: ListRepositoriesRequest) -> ListRepositoriesResponse:
        if message.offset < 0:
            raise InvalidArgument(f"offset must not be negative, got {message.offset}")
        infos, total = await self._access.read(
            None, lambda txn: self._registry.list(txn, message.limit, message.offset)
        )
        return ListRepositoriesResponse(
            repositories=[_repository_message(info) for info in infos], total=total
        )
