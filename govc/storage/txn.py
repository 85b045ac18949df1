"""A typed transaction: what the layers above storage hold instead of an LMDB transaction.

It names no database and no key: it hands out the tables (bound to itself) and the few
operations that span tables. The LMDB transaction stays inside; only `govc.storage` touches it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from govc.storage.objectstore import ObjectStore
from govc.storage.scan import delete_prefix
from govc.storage.tables import EntryTable, RecentTable, RefTable, RepoTable, repo_prefix

FORMAT_KEY = b"format"


class Txn:
    """One read or write transaction. Values it returns are copies, safe after it ends."""

    __slots__ = ("_dbs", "_env", "_index", "_objects", "_raw", "_refs", "_worktree", "write")

    def __init__(self, env: Any, raw: Any, dbs: dict[str, Any], write: bool) -> None:
        self._env = env
        self._raw = raw
        self._dbs = dbs
        self.write = write
        # The tables walks use at every step, made on first use and kept.
        self._objects: ObjectStore | None = None
        self._refs: RefTable | None = None
        self._index: EntryTable | None = None
        self._worktree: EntryTable | None = None

    @property
    def repos(self) -> RepoTable:
        return RepoTable(self._raw, self._dbs["repos"], self._dbs["repos_by_time"])

    @property
    def refs(self) -> RefTable:
        if self._refs is None:
            self._refs = RefTable(self._raw, self._dbs["refs"])
        return self._refs

    @property
    def index(self) -> EntryTable:
        if self._index is None:
            self._index = EntryTable(self._raw, self._dbs["index"])
        return self._index

    @property
    def worktree(self) -> EntryTable:
        if self._worktree is None:
            self._worktree = EntryTable(self._raw, self._dbs["worktree"])
        return self._worktree

    @property
    def objects(self) -> ObjectStore:
        if self._objects is None:
            self._objects = ObjectStore(self._raw, self._dbs)
        return self._objects

    @property
    def recent(self) -> RecentTable:
        return RecentTable(self._raw, self._dbs["recent"])

    def format_version(self) -> bytes | None:
        """The storage format recorded in the data dir (a cheap read that proves reads work)."""
        value = self._raw.get(FORMAT_KEY, db=self._dbs["meta"])
        return None if value is None else bytes(value)

    def entry_counts(self) -> dict[str, int]:
        """Entries in each database, by name."""
        return {name: int(self._raw.stat(db)["entries"]) for name, db in self._dbs.items()}

    def drop_repository_data(self, repo_id: str) -> None:
        """Delete everything stored for a repository except its registry entry."""
        self.objects.delete_repo(repo_id)
        self.recent.clear(repo_id)
        for table in ("refs", "index", "worktree"):
            delete_prefix(self._raw, self._dbs[table], repo_prefix(repo_id))

    @contextmanager
    def nested(self) -> Iterator["Txn"]:
        """A child of this write transaction: it commits into this one when the block ends, or
        aborts alone (leaving no trace) when the block raises."""
        with self._env.begin(write=True, parent=self._raw, buffers=True) as child:
            yield Txn(self._env, child, self._dbs, write=True)
