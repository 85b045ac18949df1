"""Git objects of a repository: hashing and preparing them, and reading and writing trees and
commits, with caches.

Objects are content-addressed and immutable, so decoded commits and trees are cached by id.
A flattened tree maps each file path to (mode, 20-byte blob id).
"""

import hashlib
from typing import Any

from govc.core.gitformat import (
    BLOB,
    COMMIT,
    DIR_MODE,
    TREE,
    Commit,
    TreeEntry,
    decode_tree,
    encode_tree,
    object_header,
)
from govc.storage import Txn
from govc.storage.objectstore import CHUNK_SIZE, ObjectInfo, PreparedObject, encode_object

FileMap = dict[str, tuple[int, bytes]]  # path -> (mode, blob id)

# What the layers above see of stored objects: how big a storage piece is, what is stored of an
# object (ObjectInfo), and an object prepared for storage.
__all__ = ["CHUNK_SIZE", "FileMap", "ObjectInfo", "ObjectReader", "PreparedObject"]
__all__ += ["diff_files", "file_extension", "file_name", "prepare_blob", "prepare_object"]


def file_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def file_extension(path: str) -> str:
    """The extension without the dot; "" when there is none (`.bashrc` has none)."""
    name = file_name(path)
    return name.rsplit(".", 1)[-1] if "." in name.strip(".") else ""


_CACHE_LIMIT = 200_000


def prepare_object(kind: str, content: bytes, compress: bool = True) -> PreparedObject:
    """Hash `content` as git does and encode it for storage (a plain, non-delta object)."""
    oid = hashlib.sha1(object_header(kind, len(content)) + content).digest()
    return encode_object(oid, kind, content, compress)


def prepare_blob(content: bytes, compress: bool = True) -> PreparedObject:
    return prepare_object(BLOB, content, compress)


class ObjectReader:
    """Typed access to commits and trees of repositories inside a transaction."""

    def __init__(self) -> None:
        self._commits: dict[bytes, Commit] = {}
        self._trees: dict[bytes, tuple[TreeEntry, ...]] = {}

    def _remember(self, cache: dict[bytes, Any], key: bytes, value: Any) -> None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value

    def read_kind(self, txn: Txn, repo_id: str, oid: bytes, kind: str) -> bytes:
        return txn.objects.read(repo_id, oid, kind)

    def commit(self, txn: Txn, repo_id: str, commit_id: str) -> Commit:
        oid = bytes.fromhex(commit_id)
        cached = self._commits.get(oid)
        if cached is None:
            cached = Commit.decode(self.read_kind(txn, repo_id, oid, COMMIT))
            self._remember(self._commits, oid, cached)
        return cached

    def tree(self, txn: Txn, repo_id: str, oid: bytes) -> tuple[TreeEntry, ...]:
        cached = self._trees.get(oid)
        if cached is None:
            cached = decode_tree(self.read_kind(txn, repo_id, oid, TREE))
            self._remember(self._trees, oid, cached)
        return cached

    def flatten(self, txn: Txn, repo_id: str, tree_id: str | None) -> FileMap:
        files: FileMap = {}
        if tree_id:
            self._flatten_into(txn, repo_id, bytes.fromhex(tree_id), "", files)
        return files

    def _flatten_into(self, txn: Txn, repo_id: str, oid: bytes, prefix: str, out: FileMap) -> None:
        for mode, name, child in self.tree(txn, repo_id, oid):
            if mode == DIR_MODE:
                self._flatten_into(txn, repo_id, child, f"{prefix}{name}/", out)
            else:
                out[prefix + name] = (int(mode, 8), child)

    def lookup(
        self, txn: Txn, repo_id: str, tree_id: str | None, path: str
    ) -> tuple[int, bytes] | None:
        """The (mode, id) of a file in a tree, or None."""
        if not tree_id:
            return None
        oid = bytes.fromhex(tree_id)
        parts = path.split("/")
        for depth, part in enumerate(parts):
            for mode, name, child in self.tree(txn, repo_id, oid):
                if name == part:
                    is_dir = mode == DIR_MODE
                    if depth == len(parts) - 1:
                        return None if is_dir else (int(mode, 8), child)
                    if not is_dir:
                        return None
                    oid = child
                    break
            else:
                return None
        return None

    def write_tree(self, txn: Txn, repo_id: str, files: FileMap) -> str:
        """Store the nested trees for `files`; returns the root tree id."""
        root: dict[str, Any] = {}
        for path, entry in files.items():
            node = root
            *dirs, name = path.split("/")
            for d in dirs:
                node = node.setdefault(d, {})
            node[name] = entry
        return self._write_node(txn, repo_id, root).hex()

    def _write_node(self, txn: Txn, repo_id: str, node: dict[str, Any]) -> bytes:
        entries: list[tuple[str, str, bytes]] = []
        for name, value in node.items():
            if isinstance(value, dict):
                entries.append((DIR_MODE, name, self._write_node(txn, repo_id, value)))
            else:
                mode, oid = value
                entries.append((f"{mode:o}", name, oid))
        prepared = prepare_object(TREE, encode_tree(entries))
        txn.objects.put_prepared(repo_id, prepared)
        return prepared.oid


def diff_files(old: FileMap, new: FileMap) -> list[tuple[str, str, bytes]]:
    """(path, added|modified|deleted, blob id) sorted by path; deleted carries the old id."""
    changes = []
    for path in sorted(old.keys() | new.keys()):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        if before is None and after is not None:
            changes.append((path, "added", after[1]))
        elif after is None and before is not None:
            changes.append((path, "deleted", before[1]))
        elif after is not None:
            changes.append((path, "modified", after[1]))
    return changes
