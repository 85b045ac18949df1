"""The registry of repositories: create, describe, list and delete them.

Writes return `concurrent.futures.Future`s resolved by the storage writer once durable; reads
are synchronous and short (LMDB reads are memory-mapped).
"""

import json
import struct
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from govc.errors import AlreadyExists, NotFound
from govc.storage import Storage
from govc.storage.env import delete_prefix
from govc.storage.objectstore import ObjectStore, repo_prefix

DEFAULT_BRANCH = "main"
_TIME_KEY = struct.Struct(">Q")


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
    def from_json(cls, repo_id: str, raw: bytes | memoryview) -> "RepositoryInfo":
        data = json.loads(bytes(raw))
        return cls(
            repo_id, data["name"], data["description"], data["created_at_us"], data["metadata"]
        )


def _time_key(info: RepositoryInfo) -> bytes:
    return _TIME_KEY.pack(info.created_at_us) + info.id.encode()


class Registry:
    def __init__(self, storage: Storage, clock_us: Callable[[], int] | None = None) -> None:
        self._storage = storage
        self._repos = storage.dbs["repos"]
        self._by_time = storage.dbs["repos_by_time"]
        self._refs = storage.dbs["refs"]
        self._recent = storage.dbs["recent"]
        self._objects = ObjectStore(storage.dbs)
        self._clock_us = clock_us or (lambda: time.time_ns() // 1000)

    def create(
        self, repo_id: str, name: str, description: str, metadata: dict[str, str]
    ) -> Future[RepositoryInfo]:
        info = RepositoryInfo(repo_id, name or repo_id, description, self._clock_us(), metadata)

        def op(txn: Any) -> RepositoryInfo:
            key = repo_id.encode()
            if txn.get(key, db=self._repos) is not None:
                raise AlreadyExists(f"repository {repo_id!r} already exists")
            txn.put(key, info.to_json(), db=self._repos)
            txn.put(_time_key(info), b"", db=self._by_time)
            # A new repository starts on an unborn `main`, like `git init`.
            txn.put(key + b"/HEAD", f"ref: refs/heads/{DEFAULT_BRANCH}".encode(), db=self._refs)
            return info

        return self._storage.writer.submit(op)

    def get(self, repo_id: str) -> RepositoryInfo:
        with self._storage.read() as txn:
            return self._get(txn, repo_id)

    def _get(self, txn: Any, repo_id: str) -> RepositoryInfo:
        raw = txn.get(repo_id.encode(), db=self._repos)
        if raw is None:
            raise NotFound(f"repository {repo_id!r} not found")
        return RepositoryInfo.from_json(repo_id, raw)

    def require(self, txn: Any, repo_id: str, created_at_us: int | None = None) -> None:
        """Raise NotFound unless the repository exists (inside any transaction). With
        `created_at_us`, it must also be that same repository, not one deleted and created
        again under its id (work spread over several transactions checks this)."""
        raw = txn.get(repo_id.encode(), db=self._repos)
        if raw is None or (
            created_at_us is not None
            and RepositoryInfo.from_json(repo_id, raw).created_at_us != created_at_us
        ):
            raise NotFound(f"repository {repo_id!r} not found")

    def delete(self, repo_id: str) -> Future[None]:
        def op(txn: Any) -> None:
            info = self._get(txn, repo_id)
            key = repo_id.encode()
            txn.delete(key, db=self._repos)
            txn.delete(_time_key(info), db=self._by_time)
            txn.delete(key, db=self._recent)
            self._objects.delete_repo(txn, repo_id)
            for table in ("refs", "index", "worktree"):
                delete_prefix(txn, self._storage.dbs[table], repo_prefix(repo_id))

        return self._storage.writer.submit(op)

    def ids(self, txn: Any) -> list[str]:
        """Every repository id, sorted."""
        with txn.cursor(db=self._repos) as cursor:
            return [bytes(key).decode() for key in cursor.iternext(keys=True, values=False)]

    def exists(self, txn: Any, repo_id: str) -> bool:
        return txn.get(repo_id.encode(), db=self._repos) is not None

    def list(self, limit: int, offset: int) -> tuple[list[RepositoryInfo], int]:
        """Repositories in creation order (then id); `limit <= 0` means all."""
        with self._storage.read() as txn:
            total = txn.stat(self._by_time)["entries"]
            result: list[RepositoryInfo] = []
            if offset >= total:
                return result, total
            with txn.cursor(db=self._by_time) as cursor:
                cursor.first()
                for index, key in enumerate(cursor.iternext(keys=True, values=False)):
                    if index < offset:
                        continue
                    if 0 < limit <= len(result):
                        break
                    result.append(self._get(txn, bytes(key[_TIME_KEY.size :]).decode()))
            return result, total
