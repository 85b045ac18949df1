"""The registry of repositories: create, describe, list and delete them (inside a `Txn`)."""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from govc.errors import AlreadyExists, NotFound
from govc.storage import Txn

DEFAULT_BRANCH = "main"
HEADS = "refs/heads/"
TAGS = "refs/tags/"


@dataclass(frozen=True)
class RepositoryInfo:
    id: str
    name: str
    description: str
    created_at_us: int  # microseconds since the epoch, UTC
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "name": self.name,
                "description": self.description,
                "created_at_us": self.created_at_us,
                "metadata": self.metadata,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, repo_id: str, raw: bytes) -> "RepositoryInfo":
        data = json.loads(raw)
        return cls(
            repo_id, data["name"], data["description"], data["created_at_us"], data["metadata"]
        )


class Registry:
    def __init__(self, clock_us: Callable[[], int] | None = None) -> None:
        self._clock_us = clock_us or (lambda: time.time_ns() // 1000)

    def new_info(
        self, repo_id: str, name: str, description: str, metadata: dict[str, str]
    ) -> RepositoryInfo:
        """What `create` will store (its creation time taken now, by the caller's thread)."""
        return RepositoryInfo(repo_id, name or repo_id, description, self._clock_us(), metadata)

    def create(self, txn: Txn, info: RepositoryInfo) -> RepositoryInfo:
        if txn.repos.exists(info.id):
            raise AlreadyExists(f"repository {info.id!r} already exists")
        txn.repos.put(info.id, info.created_at_us, info.to_json())
        # A new repository starts on an unborn `main`, like `git init`.
        txn.refs.put(info.id, "HEAD", f"ref: {HEADS}{DEFAULT_BRANCH}")
        return info

    def get(self, txn: Txn, repo_id: str) -> RepositoryInfo:
        raw = txn.repos.get(repo_id)
        if raw is None:
            raise NotFound(f"repository {repo_id!r} not found")
        return RepositoryInfo.from_json(repo_id, raw)

    def require(self, txn: Txn, repo_id: str, created_at_us: int | None = None) -> None:
        """Raise NotFound unless the repository exists. With `created_at_us`, it must also be
        that same repository, not one deleted and created again under its id (work spread over
        several transactions checks this)."""
        if created_at_us is None:
            if not txn.repos.exists(repo_id):
                raise NotFound(f"repository {repo_id!r} not found")
        elif self.get(txn, repo_id).created_at_us != created_at_us:
            raise NotFound(f"repository {repo_id!r} not found")

    def delete(self, txn: Txn, repo_id: str) -> None:
        info = self.get(txn, repo_id)
        txn.repos.delete(repo_id, info.created_at_us)
        txn.drop_repository_data(repo_id)

    def exists(self, txn: Txn, repo_id: str) -> bool:
        return txn.repos.exists(repo_id)

    def ids(self, txn: Txn) -> list[str]:
        """Every repository id, sorted."""
        return txn.repos.ids()

    def list(self, txn: Txn, limit: int, offset: int) -> tuple[list[RepositoryInfo], int]:
        """Repositories in creation order (then id); `limit <= 0` means all."""
        total = txn.repos.count()
        if offset >= total:
            return [], total
        ids = txn.repos.in_creation_order(offset, limit)
        return [self.get(txn, repo_id) for repo_id in ids], total
