"""Key/value layouts of the version-control state: refs, index and work tree.

Keys are `repo id + "/" + name`; repository ids cannot contain "/", so a repository's keys
form one contiguous range.
"""

import struct
from dataclasses import dataclass
from typing import Any

from govc.storage.env import delete_prefix, scan_prefix
from govc.storage.objectstore import repo_prefix

_ENTRY = struct.Struct(">20sIQQ")  # object id, mode, size, modified (us since epoch)


@dataclass(frozen=True)
class Entry:
    """A file in the index or the work tree."""

    oid: bytes
    mode: int  # 0o100644 etc.
    size: int
    modified_us: int = 0

    def encode(self) -> bytes:
        return _ENTRY.pack(self.oid, self.mode, self.size, self.modified_us)

    @classmethod
    def decode(cls, raw: bytes | memoryview) -> "Entry":
        oid, mode, size, modified = _ENTRY.unpack(bytes(raw))
        return cls(oid, mode, size, modified)

    def same_content(self, other: "Entry | None") -> bool:
        return other is not None and other.oid == self.oid and other.mode == self.mode


class RefTable:
    """HEAD and branches: `HEAD` -> "ref: refs/heads/x" or a commit id; `refs/heads/x` -> id."""

    def __init__(self, dbs: dict[str, Any]) -> None:
        self._db = dbs["refs"]

    def get(self, txn: Any, repo_id: str, name: str) -> str | None:
        raw = txn.get(repo_prefix(repo_id) + name.encode(), db=self._db)
        return None if raw is None else bytes(raw).decode()

    def put(self, txn: Any, repo_id: str, name: str, value: str) -> None:
        txn.put(repo_prefix(repo_id) + name.encode(), value.encode(), db=self._db)

    def delete(self, txn: Any, repo_id: str, name: str) -> bool:
        return bool(txn.delete(repo_prefix(repo_id) + name.encode(), db=self._db))

    def list(self, txn: Any, repo_id: str, prefix: str) -> list[tuple[str, str]]:
        """(name, value) of every ref under `prefix`, sorted by name."""
        skip = len(repo_prefix(repo_id))
        return [
            (key[skip:].decode(), value.decode())
            for key, value in scan_prefix(txn, self._db, repo_prefix(repo_id) + prefix.encode())
        ]


class EntryTable:
    """path -> Entry for one repository: the index or the work tree."""

    def __init__(self, dbs: dict[str, Any], name: str) -> None:
        self._db = dbs[name]

    def get(self, txn: Any, repo_id: str, path: str) -> Entry | None:
        raw = txn.get(repo_prefix(repo_id) + path.encode(), db=self._db)
        return None if raw is None else Entry.decode(raw)

    def put(self, txn: Any, repo_id: str, path: str, entry: Entry) -> None:
        txn.put(repo_prefix(repo_id) + path.encode(), entry.encode(), db=self._db)

    def delete(self, txn: Any, repo_id: str, path: str) -> bool:
        return bool(txn.delete(repo_prefix(repo_id) + path.encode(), db=self._db))

    def has_prefix(self, txn: Any, repo_id: str, path_prefix: str) -> bool:
        """Whether any path starts with `path_prefix` (e.g. "dir/": is dir a directory?)."""
        start = repo_prefix(repo_id) + path_prefix.encode()
        with txn.cursor(db=self._db) as cursor:
            return bool(cursor.set_range(start)) and bytes(cursor.key()).startswith(start)

    def all(self, txn: Any, repo_id: str) -> dict[str, Entry]:
        prefix = repo_prefix(repo_id)
        return {
            key[len(prefix) :].decode(): Entry.decode(value)
            for key, value in scan_prefix(txn, self._db, prefix)
        }

    def under(self, txn: Any, repo_id: str, path: str) -> dict[str, Entry]:
        """The entry at `path` and every entry below it (`path` as a directory)."""
        prefix = repo_prefix(repo_id)
        found = {
            key[len(prefix) :].decode(): Entry.decode(value)
            for key, value in scan_prefix(txn, self._db, prefix + path.encode() + b"/")
        }
        entry = self.get(txn, repo_id, path)
        if entry is not None:
            found[path] = entry
        return found

    def replace_all(self, txn: Any, repo_id: str, entries: dict[str, Entry]) -> None:
        self.clear(txn, repo_id)
        prefix = repo_prefix(repo_id)
        for path, entry in entries.items():
            txn.put(prefix + path.encode(), entry.encode(), db=self._db)

    def clear(self, txn: Any, repo_id: str) -> None:
        delete_prefix(txn, self._db, repo_prefix(repo_id))
