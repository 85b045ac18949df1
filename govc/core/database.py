"""The core's door to storage: run a function of a transaction as a read or as a write.

Both check, inside the very transaction the function runs in, that the repository exists (it
may have been deleted since the call arrived: writing then would leave orphans that a
repository created again under its id inherits). Where the call runs is the caller's choice:
reads run in the calling thread, writes on the storage's writer thread (a future resolved
once the write is durable).
"""

from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from govc.core.registry import Registry
from govc.storage import Storage, Txn

T = TypeVar("T")

__all__ = ["Database", "Txn"]  # Txn: the transaction the core's functions take


class Database:
    def __init__(self, storage: Storage, registry: Registry) -> None:
        self.storage = storage
        self.registry = registry

    @property
    def path(self) -> str:
        """The data dir."""
        return self.storage.config.path

    def health(self) -> dict[str, str]:
        """Storage checks for GetHealth (see `Storage.health`)."""
        return self.storage.health()

    def read(self, repo_id: str | None, fn: Callable[[Txn], T], buffers: bool = False) -> T:
        """`fn` in a read transaction (blocking); with `buffers`, big values are not copied
        until `fn` copies them."""
        with self.storage.read(buffers=buffers) as txn:
            if repo_id is not None:
                self.registry.require(txn, repo_id)
            return fn(txn)

    def write(self, repo_id: str | None, fn: Callable[[Txn], T]) -> Future[T]:
        """`fn` in the writer's next transaction; resolves once that is durable."""
        if repo_id is None:
            return self.storage.writer.submit(fn)
        registry = self.registry

        def guarded(txn: Txn) -> T:
            registry.require(txn, repo_id)
            return fn(txn)

        return self.storage.writer.submit(guarded)
