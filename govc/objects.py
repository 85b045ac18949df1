"""Git object identity: ids are SHA-1 over a typed header and the content, exactly as git."""

import hashlib
import re

from govc.errors import InvalidArgument

BLOB = "blob"
TREE = "tree"
COMMIT = "commit"

EMPTY_BLOB_ID = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"

_HEX40 = re.compile(r"[0-9a-f]{40}")


def object_header(kind: str, size: int) -> bytes:
    return f"{kind} {size}\0".encode("ascii")


def object_id(kind: str, content: bytes | memoryview) -> str:
    """The git id of an object of `kind` with `content` (40 lowercase hex)."""
    h = hashlib.sha1(object_header(kind, len(content)))
    h.update(content)
    return h.hexdigest()


def blob_id(content: bytes | memoryview) -> str:
    return object_id(BLOB, content)


def validate_object_id(value: str, field: str = "hash") -> bytes:
    """Check a full 40-hex id and return its 20 raw bytes."""
    if not value:
        raise InvalidArgument(f"{field} is required")
    if not _HEX40.fullmatch(value):
        raise InvalidArgument(f"{field} must be 40 lowercase hex characters, got {value!r:.60}")
    return bytes.fromhex(value)
