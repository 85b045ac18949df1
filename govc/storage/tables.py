"""Key/value layouts of the version-control state: the registry, refs, index, work tree and
recent delta bases. Each table is bound to one transaction (see `govc.storage.txn.Txn`).

Keys are `repo id + "/" + name`; repository ids cannot contain "/", so a repository's keys
form one contiguous range.
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from govc.storage.scan import delete_prefix, scan_prefix

_ENTRY = struct.Struct(">20sIQQ")  # object id, mode, size, modified (us since epoch)
_TIME_KEY = struct.Struct(">Q")  # created_at in the `repos_by_time` key
_RECENT_ENTRY = struct.Struct(">20sQ")  # object id, size


def repo_prefix(repo_id: str) -> bytes:
    return repo_id.encode() + b"/"


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


class RepoTable:
    """repo id -> its metadata (opaque bytes), and the same ids in creation order."""

    def __init__(self, raw: Any, repos: Any, by_time: Any) -> None:
        self._raw = raw
        self._repos = repos
        self._by_time = by_time

    def get(self, repo_id: str) -> bytes | None:
        value = self._raw.get(repo_id.encode(), db=self._repos)
        return None if value is None else bytes(value)

    def exists(self, repo_id: str) -> bool:
        return self._raw.get(repo_id.encode(), db=self._repos) is not None

    def put(self, repo_id: str, created_at_us: int, value: bytes) -> None:
        self._raw.put(repo_id.encode(), value, db=self._repos)
        self._raw.put(_TIME_KEY.pack(created_at_us) + repo_id.encode(), b"", db=self._by_time)

    def delete(self, repo_id: str, created_at_us: int) -> None:
        self._raw.delete(repo_id.encode(), db=self._repos)
        self._raw.delete(_TIME_KEY.pack(created_at_us) + repo_id.encode(), db=self._by_time)

    def ids(self) -> list[str]:
        """Every repository id, sorted."""
        with self._raw.cursor(db=self._repos) as cursor:
            return [bytes(key).decode() for key in cursor.iternext(keys=True, values=False)]

    def count(self) -> int:
        return int(self._raw.stat(self._by_time)["entries"])

    def in_creation_order(self, offset: int, limit: int) -> Iterator[str]:
        """Ids in creation order (then id), from `offset`; `limit <= 0` means all."""
        with self._raw.cursor(db=self._by_time) as cursor:
            if not cursor.first():
                return
            taken = 0
            for index, key in enumerate(cursor.iternext(keys=True, values=False)):
                if index < offset:
                    continue
                if 0 < limit <= taken:
                    return
                taken += 1
                yield bytes(key[_TIME_KEY.size :]).decode()


class RefTable:
    """HEAD and branches: `HEAD` -> "ref: refs/heads/x" or a commit id; `refs/heads/x` -> id."""

    def __init__(self, raw: Any, db: Any) -> None:
        self._raw = raw
        self._db = db

    def get(self, repo_id: str, name: str) -> str | None:
        value = self._raw.get(repo_prefix(repo_id) + name.encode(), db=self._db)
        return None if value is None else bytes(value).decode()

    def put(self, repo_id: str, name: str, value: str) -> None:
        self._raw.put(repo_prefix(repo_id) + name.encode(), value.encode(), db=self._db)

    def delete(self, repo_id: str, name: str) -> bool:
        return bool(self._raw.delete(repo_prefix(repo_id) + name.encode(), db=self._db))

    def list(self, repo_id: str, prefix: str) -> list[tuple[str, str]]:
        """(name, value) of every ref under `prefix`, sorted by name."""
        skip = len(repo_prefix(repo_id))
        start = repo_prefix(repo_id) + prefix.encode()
        return [
            (key[skip:].decode(), value.decode())
            for key, value in scan_prefix(self._raw, self._db, start)
        ]


class EntryTable:
    """path -> Entry for one repository: the index or the work tree."""

    def __init__(self, raw: Any, db: Any) -> None:
        self._raw = raw
        self._db = db

    def get(self, repo_id: str, path: str) -> Entry | None:
        value = self._raw.get(repo_prefix(repo_id) + path.encode(), db=self._db)
        return None if value is None else Entry.decode(value)

    def put(self, repo_id: str, path: str, entry: Entry) -> None:
        self._raw.put(repo_prefix(repo_id) + path.encode(), entry.encode(), db=self._db)

    def delete(self, repo_id: str, path: str) -> bool:
        return bool(self._raw.delete(repo_prefix(repo_id) + path.encode(), db=self._db))

    def has_prefix(self, repo_id: str, path_prefix: str) -> bool:
        """Whether any path starts with `path_prefix` (e.g. "dir/": is dir a directory?)."""
        start = repo_prefix(repo_id) + path_prefix.encode()
        with self._raw.cursor(db=self._db) as cursor:
            return bool(cursor.set_range(start)) and bytes(cursor.key()).startswith(start)

    def all(self, repo_id: str) -> dict[str, Entry]:
        skip = len(repo_prefix(repo_id))
        return {
            key[skip:].decode(): Entry.decode(value)
            for key, value in scan_prefix(self._raw, self._db, repo_prefix(repo_id))
        }

    def under(self, repo_id: str, path: str) -> dict[str, Entry]:
        """The entry at `path` and every entry below it (`path` as a directory)."""
        prefix = repo_prefix(repo_id)
        found = {
            key[len(prefix) :].decode(): Entry.decode(value)
            for key, value in scan_prefix(self._raw, self._db, prefix + path.encode() + b"/")
        }
        entry = self.get(repo_id, path)
        if entry is not None:
            found[path] = entry
        return found

    def replace_all(self, repo_id: str, entries: dict[str, Entry]) -> None:
        self.clear(repo_id)
        prefix = repo_prefix(repo_id)
        for path, entry in entries.items():
            self._raw.put(prefix + path.encode(), entry.encode(), db=self._db)

    def clear(self, repo_id: str) -> None:
        delete_prefix(self._raw, self._db, repo_prefix(repo_id))


class RecentTable:
    """repo id -> the (object id, size) of its most recent delta-eligible blobs, oldest first."""

    def __init__(self, raw: Any, db: Any) -> None:
        self._raw = raw
        self._db = db

    def get(self, repo_id: str) -> list[tuple[bytes, int]]:
        value = self._raw.get(repo_id.encode(), db=self._db)
        if value is None:
            return []
        data = bytes(value)
        return [
            _RECENT_ENTRY.unpack_from(data, offset)
            for offset in range(0, len(data), _RECENT_ENTRY.size)
        ]

    def put(self, repo_id: str, entries: list[tuple[bytes, int]]) -> None:
        value = b"".join(_RECENT_ENTRY.pack(oid, size) for oid, size in entries)
        self._raw.put(repo_id.encode(), value, db=self._db)

    def clear(self, repo_id: str) -> None:
        self._raw.delete(repo_id.encode(), db=self._db)
