"""Range scans over keys that share a prefix (a repository's keys form one such range)."""

from collections.abc import Iterator
from typing import Any


def scan_prefix(txn: Any, db: Any, prefix: bytes, copy: bool = True) -> Iterator[tuple[bytes, Any]]:
    """(key, value) of every key of `db` that starts with `prefix`, in key order. Values are
    copied unless `copy` is false: then, in a transaction that returns buffers, each is a view
    valid only until the scan moves on (enough to read a header without copying a payload)."""
    with txn.cursor(db=db) as cursor:
        if not cursor.set_range(prefix):
            return
        for key, value in cursor:
            key = bytes(key)
            if not key.startswith(prefix):
                return
            yield key, bytes(value) if copy else value


def delete_prefix(txn: Any, db: Any, prefix: bytes) -> int:
    """Delete every key of `db` that starts with `prefix`; returns how many."""
    count = 0
    with txn.cursor(db=db) as cursor:
        if not cursor.set_range(prefix):
            return 0
        while bytes(cursor.key()).startswith(prefix):
            count += 1
            if not cursor.delete():
                break
    return count
