"""Version control of one repository at a time: work tree, index, commits, branches, merges.

Every operation is a function of a transaction (`Txn`): a mutation runs as one writer operation,
so it is atomic and serialized with every other write; a read runs in a read transaction. The
caller chooses the transaction and the thread (see `govc.core.database.Database`); blob contents
are hashed and compressed by the caller before a write is queued.
"""

import heapq
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from govc.core.gitformat import (
    BLOB,
    COMMIT,
    FILE_MODE,
    TAG,
    Commit,
    Signature,
    Tag,
    clean_message,
    require_message,
)
from govc.core.merge import Conflict, Strategy, TreeMerge, merge_trees
from govc.core.objects import FileMap, ObjectReader, diff_files, prepare_blob, prepare_object
from govc.core.registry import DEFAULT_BRANCH, HEADS, TAGS
from govc.core.renames import detect_renames
from govc.core.revisions import looks_like_hash, split_revision
from govc.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from govc.storage import Entry, Txn
from govc.storage.objectstore import PreparedObject

DEFAULT_IDENTITY = ("govc", "govc@localhost")


@dataclass(frozen=True)
class CommitInfo:
    id: str
    commit: Commit
    changes: list[tuple[str, str, bytes]] | None = None


@dataclass(frozen=True)
class BranchInfo:
    name: str
    commit_id: str
    commit: Commit


@dataclass(frozen=True)
class TagInfo:
    name: str
    target: str  # what the ref names: the tag object (annotated) or the tagged object
    commit_id: str  # the commit it peels to ("" when it tags a tree or blob)
    tag: Tag | None  # the tag object, for an annotated tag


@dataclass(frozen=True)
class FileContent:
    content: bytes
    oid: bytes
    modified_us: int


@dataclass(frozen=True)
class Status:
    branch: str
    entries: list[tuple[str, str]]  # (two-letter code, path): changes by path, then untracked

    @property
    def staged(self) -> int:
        return sum(code[0] not in " ?" for code, _ in self.entries)

    @property
    def unstaged(self) -> int:
        return sum(code[1] not in " ?" for code, _ in self.entries)

    @property
    def untracked(self) -> int:
        return sum(code == "??" for code, _ in self.entries)


@dataclass(frozen=True)
class MergeResult:
    commit_id: str  # "" when the merge was left with conflicts
    conflicts: list[Conflict] = field(default_factory=list)
    # Conflicts without a conflicted path (e.g. a directory renamed to two places), as git
    # describes them.
    other_conflicts: list[str] = field(default_factory=list)
    fast_forward: bool = False


class MergeConflict(FailedPrecondition):
    """The merge conflicts; raised inside the write, so whatever it stored is rolled back
    with it."""

    def __init__(self, conflicts: list[Conflict], other_conflicts: list[str]) -> None:
        self.conflicts = conflicts
        self.other_conflicts = other_conflicts
        self.paths = [c.path for c in conflicts]
        super().__init__("merge conflicts: " + "; ".join(self.paths + other_conflicts))


class VersionControl:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        identity: tuple[str, str] = DEFAULT_IDENTITY,
    ) -> None:
        self._clock = clock
        self.identity = identity
        self.objects = ObjectReader()

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    # ---- refs ----

    def head(self, txn: Txn, repo_id: str) -> tuple[str | None, str | None]:
        """(current branch or None when detached, commit id or None when unborn)."""
        value = txn.refs.get(repo_id, "HEAD") or f"ref: {HEADS}{DEFAULT_BRANCH}"
        if value.startswith("ref: "):
            ref = value[5:]
            return ref.removeprefix(HEADS), txn.refs.get(repo_id, ref)
        return None, value

    def _set_head_commit(self, txn: Txn, repo_id: str, commit_id: str) -> None:
        branch, _ = self.head(txn, repo_id)
        if branch is None:
            txn.refs.put(repo_id, "HEAD", commit_id)
        else:
            txn.refs.put(repo_id, HEADS + branch, commit_id)

    def branch_tip(self, txn: Txn, repo_id: str, name: str) -> str | None:
        return txn.refs.get(repo_id, HEADS + name)

    def head_files(self, txn: Txn, repo_id: str) -> FileMap:
        _, commit_id = self.head(txn, repo_id)
        return self.commit_files(txn, repo_id, commit_id)

    def commit_files(self, txn: Txn, repo_id: str, commit_id: str | None) -> FileMap:
        if commit_id is None:
            return {}
        return self.objects.flatten(txn, repo_id, self.objects.commit(txn, repo_id, commit_id).tree)

    def _blob(self, txn: Txn, repo_id: str, oid: bytes) -> bytes:
        return self.objects.read_kind(txn, repo_id, oid, BLOB)

    def _store_blob(self, txn: Txn, repo_id: str, content: bytes) -> bytes:
        prepared = prepare_blob(content)
        txn.objects.put_prepared(repo_id, prepared)
        return prepared.oid

    # ---- revisions ----

    def resolve(self, txn: Txn, repo_id: str, rev: str, field: str = "revision") -> str:
        """A commit id for `rev` (HEAD, branch, full or abbreviated id, with ~N and ^N)."""
        base, steps = split_revision(rev, field)
        commit_id = self._resolve_base(txn, repo_id, base, field)
        for op, n in steps:
            if op == "~":
                for _ in range(n):
                    parents = self.objects.commit(txn, repo_id, commit_id).parents
                    if not parents:
                        raise NotFound(f"{field} {rev!r:.80}: the history is not that deep")
                    commit_id = parents[0]
            elif n > 0:
                parents = self.objects.commit(txn, repo_id, commit_id).parents
                if len(parents) < n:
                    raise NotFound(
                        f"{field} {rev!r:.80}: commit {commit_id[:12]} has no parent {n}"
                    )
                commit_id = parents[n - 1]
        return commit_id

    def _resolve_base(self, txn: Txn, repo_id: str, base: str, field: str) -> str:
        if base in ("HEAD", "@"):
            _, commit_id = self.head(txn, repo_id)
            if commit_id is None:
                raise FailedPrecondition(f"{field}: HEAD has no commits yet")
            return commit_id
        # git's order for a short name: a tag before a branch; a full ref name is taken as is.
        for ref in (base,) if base.startswith("refs/") else (TAGS + base, HEADS + base):
            target = txn.refs.get(repo_id, ref)
            if target is not None:
                return self._peel(txn, repo_id, target, f"{field} {base!r:.80}")
        if looks_like_hash(base):
            matches = self._commits_with_prefix(txn, repo_id, base.lower())
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(
                    f"{field} {base!r} is ambiguous: {len(matches)} commits match"
                )
        raise NotFound(f"{field} {base!r:.80} is not a branch or commit of repository {repo_id!r}")

    def _peel(self, txn: Txn, repo_id: str, oid: str, what: str) -> str:
        """The commit `oid` names, through any chain of tag objects."""
        for _ in range(32):
            info = txn.objects.info(repo_id, bytes.fromhex(oid))
            if info is None or info.kind != TAG:
                break
            oid = self.read_tag(txn, repo_id, oid).object
        info = txn.objects.info(repo_id, bytes.fromhex(oid))
        if info is None or info.kind != COMMIT:
            raise FailedPrecondition(f"{what} does not name a commit")
        return oid

    def _commits_with_prefix(self, txn: Txn, repo_id: str, hex_prefix: str) -> list[str]:
        store = txn.objects
        if len(hex_prefix) == 40:
            info = store.info(repo_id, bytes.fromhex(hex_prefix))
            return [hex_prefix] if info is not None and info.kind == COMMIT else []
        return [
            oid.hex()
            for oid in store.ids_with_prefix(repo_id, hex_prefix)
            if (info := store.info(repo_id, oid)) is not None and info.kind == COMMIT
        ]

    # ---- files ----

    def _check_file_dir_conflicts(self, txn: Txn, repo_id: str, path: str) -> None:
        worktree, index = txn.worktree, txn.index
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if worktree.get(repo_id, parent) or index.get(repo_id, parent):
                raise FailedPrecondition(f"path {path!r}: {parent!r} is a file, not a directory")
        for table in (worktree, index):
            if table.has_prefix(repo_id, path + "/"):
                raise FailedPrecondition(f"path {path!r} is a directory")

    def write_file(
        self, txn: Txn, repo_id: str, path: str, blob: PreparedObject | bytes, stage: bool
    ) -> Entry:
        """Write to the work tree (WriteFile) and, with `stage`, to the index too (AddFile).
        `blob` is new content prepared for storage, or the id of a blob already stored (of any
        size, e.g. sent by an upload stream)."""
        self._check_file_dir_conflicts(txn, repo_id, path)
        if isinstance(blob, bytes):
            info = txn.objects.info(repo_id, blob)
            if info is None or info.kind != BLOB:
                raise NotFound(f"blob_hash {blob.hex()} not found in repository {repo_id!r}")
            oid, size = blob, info.size
        else:
            txn.objects.put_prepared(repo_id, blob)
            oid, size = blob.oid, blob.size
        entry = Entry(oid, FILE_MODE, size, self._now_us())
        txn.worktree.put(repo_id, path, entry)
        if stage:
            txn.index.put(repo_id, path, entry)
            self._mark_resolved(txn, repo_id, [path])
        return entry

    def read_file(
        self, txn: Txn, repo_id: str, path: str, rev: str, field: str = "commit"
    ) -> FileContent:
        """A file of commit `rev`, or of the work tree when `rev` is empty (`field` names `rev`
        in errors)."""
        objects = self.objects
        if rev:
            commit_id = self.resolve(txn, repo_id, rev, field)
            found = objects.lookup(txn, repo_id, objects.commit(txn, repo_id, commit_id).tree, path)
            if found is None:
                raise NotFound(f"path {path!r} not found in commit {commit_id[:12]}")
            content = self._blob(txn, repo_id, found[1])
            return FileContent(
                content, found[1], self._last_change_us(txn, repo_id, commit_id, path)
            )
        entry = txn.worktree.get(repo_id, path) or txn.index.get(repo_id, path)
        _, head_id = self.head(txn, repo_id)
        head_tree = objects.commit(txn, repo_id, head_id).tree if head_id else None
        committed = objects.lookup(txn, repo_id, head_tree, path)
        if entry is None:
            if committed is None or head_id is None:
                raise NotFound(f"path {path!r} not found in repository {repo_id!r}")
            content = self._blob(txn, repo_id, committed[1])
            return FileContent(
                content, committed[1], self._last_change_us(txn, repo_id, head_id, path)
            )
        content = self._blob(txn, repo_id, entry.oid)
        if committed is not None and committed[1] == entry.oid and head_id is not None:
            return FileContent(
                content, entry.oid, self._last_change_us(txn, repo_id, head_id, path)
            )
        return FileContent(content, entry.oid, entry.modified_us)

    def _last_change_us(self, txn: Txn, repo_id: str, start: str, path: str) -> int:
        """Committer time of the newest commit reachable from `start` that changed `path`."""
        objects = self.objects
        for _, commit in self.walk(txn, repo_id, start):
            mine = objects.lookup(txn, repo_id, commit.tree, path)
            parents = [objects.commit(txn, repo_id, p) for p in commit.parents]
            if not parents or all(
                objects.lookup(txn, repo_id, p.tree, path) != mine for p in parents
            ):
                return commit.committer.time * 1_000_000
        return 0

    def remove_file(self, txn: Txn, repo_id: str, path: str) -> None:
        """`git rm -f`: the path leaves the index and the work tree (a directory: all below
        it); a file only written, never staged, is removed from the work tree."""
        index, worktree = txn.index, txn.worktree
        paths = index.under(repo_id, path).keys() | worktree.under(repo_id, path).keys()
        if not paths:
            raise NotFound(f"path {path!r} not found in repository {repo_id!r}")
        for p in paths:
            index.delete(repo_id, p)
            worktree.delete(repo_id, p)
        self._mark_resolved(txn, repo_id, paths)

    def _tracked_paths(self, txn: Txn, repo_id: str, path: str, field: str) -> list[str]:
        index = txn.index.all(repo_id)
        paths = [p for p in index if p == path or p.startswith(path + "/")]
        if not paths:
            raise NotFound(f"{field} {path!r} is not tracked in repository {repo_id!r}")
        return paths

    def move_file(self, txn: Txn, repo_id: str, source: str, target: str) -> None:
        """`git mv`: index and work tree entries move; a directory moves with its contents."""
        index, worktree = txn.index, txn.worktree
        paths = self._tracked_paths(txn, repo_id, source, "from_path")
        if source == target or target.startswith(source + "/"):
            raise InvalidArgument(f"to_path {target!r} is inside from_path {source!r}")
        occupied = worktree.get(repo_id, target) or index.get(repo_id, target)
        if (
            occupied
            or index.has_prefix(repo_id, target + "/")
            or worktree.has_prefix(repo_id, target + "/")
        ):
            raise AlreadyExists(f"to_path {target!r} already exists")
        # A directory moves whole, as on disk: its untracked files go with it.
        tracked = set(paths)
        untracked = [p for p in worktree.under(repo_id, source) if p != source and p not in tracked]
        moves = [(p, target + p[len(source) :]) for p in [*paths, *untracked]]
        entries = [(index.get(repo_id, old), worktree.get(repo_id, old)) for old, _ in moves]
        for old, _ in moves:
            index.delete(repo_id, old)
            worktree.delete(repo_id, old)
        for (_, new), (staged, working) in zip(moves, entries, strict=True):
            self._check_file_dir_conflicts(txn, repo_id, new)
            if staged is not None:
                index.put(repo_id, new, staged)
            if working is not None:
                worktree.put(repo_id, new, working)

    # ---- commits ----

    def signature(self, author: tuple[str, str] | None) -> Signature:
        name, email = author or self.identity
        return Signature(name, email, int(self._clock()))

    def commit(
        self,
        txn: Txn,
        repo_id: str,
        message: str,
        author: tuple[str, str] | None,
        files: list[str],
        message_field: str = "message",
    ) -> CommitInfo:
        cleaned = require_message(message, message_field)
        _, head_id = self.head(txn, repo_id)
        head_files = self.commit_files(txn, repo_id, head_id)
        merging = merge_in_progress(txn, repo_id)
        if merging is not None:
            if files:
                raise FailedPrecondition("cannot commit only some files during a merge")
            if merging["unresolved"]:
                shown = ", ".join(sorted(merging["unresolved"])[:10])
                raise FailedPrecondition(
                    f"cannot commit: unresolved merge conflicts in {shown} "
                    "(AddFile or RemoveFile each to resolve it, or AbortMerge)"
                )
        if files:
            tree_files = dict(head_files)
            worktree = txn.worktree.all(repo_id)
            known = head_files.keys() | txn.index.all(repo_id).keys()
            for spec in files:
                # Like `git commit -- paths`: only paths git knows (tracked or staged).
                matched = [p for p in known if p == spec or p.startswith(spec + "/")]
                if not matched:
                    raise NotFound(f"files: {spec!r} did not match any file known to git")
                for p in matched:
                    entry = worktree.get(p)
                    if entry is None:
                        tree_files.pop(p, None)
                        txn.index.delete(repo_id, p)
                    else:
                        tree_files[p] = (entry.mode, entry.oid)
                        txn.index.put(repo_id, p, entry)
        else:
            tree_files = {p: (e.mode, e.oid) for p, e in txn.index.all(repo_id).items()}
        if tree_files == head_files and merging is None:
            raise FailedPrecondition("nothing to commit: the index matches HEAD")
        tree_id = self.objects.write_tree(txn, repo_id, tree_files)
        signature = self.signature(author)
        parents = (head_id,) if head_id else ()
        if merging is not None:  # the merge commit of a merge left with conflicts
            parents += (merging["merge_head"],)
            txn.refs.delete(repo_id, MERGE_STATE)
        commit = Commit(tree_id, parents, signature, signature, cleaned)
        commit_id = self._put_commit(txn, repo_id, commit)
        self._set_head_commit(txn, repo_id, commit_id)
        return CommitInfo(commit_id, commit)

    def _put_commit(self, txn: Txn, repo_id: str, commit: Commit) -> str:
        prepared = prepare_object(COMMIT, commit.encode())
        txn.objects.put_prepared(repo_id, prepared)
        return prepared.hex

    def get_commit(self, txn: Txn, repo_id: str, rev: str, field: str = "hash") -> CommitInfo:
        return self._with_changes(txn, repo_id, self.resolve(txn, repo_id, rev, field))

    def _with_changes(self, txn: Txn, repo_id: str, commit_id: str) -> CommitInfo:
        commit = self.objects.commit(txn, repo_id, commit_id)
        parent = commit.parents[0] if commit.parents else None
        changes = diff_files(
            self.commit_files(txn, repo_id, parent),
            self.objects.flatten(txn, repo_id, commit.tree),
        )
        return CommitInfo(commit_id, commit, changes)

    def walk(self, txn: Txn, repo_id: str, start: str | list[str]) -> Iterator[tuple[str, Commit]]:
        """Every commit reachable from `start` (one commit or several) once, newest (committer
        time) first."""
        starts = [start] if isinstance(start, str) else list(dict.fromkeys(start))
        seen = set(starts)
        queue: list[tuple[int, int, str, Commit]] = []
        for order, commit_id in enumerate(starts):
            first = self.objects.commit(txn, repo_id, commit_id)
            queue.append((-first.committer.time, order, commit_id, first))
        heapq.heapify(queue)
        order = len(starts)
        while queue:
            _, _, commit_id, commit = heapq.heappop(queue)
            yield commit_id, commit
            for parent_id in commit.parents:
                if parent_id not in seen:
                    seen.add(parent_id)
                    parent = self.objects.commit(txn, repo_id, parent_id)
                    order += 1
                    heapq.heappush(queue, (-parent.committer.time, order, parent_id, parent))

    def list_commits(
        self,
        txn: Txn,
        repo_id: str,
        branch: str,
        author: str,
        limit: int,
        offset: int,
        branch_field: str = "branch",
    ) -> tuple[list[CommitInfo], int]:
        """A page of the history from `branch` (or HEAD), newest first, and how many commits
        match `author` (a substring of name or email) in all."""
        if branch:
            start: str | None = self.resolve(txn, repo_id, branch, branch_field)
        else:
            _, start = self.head(txn, repo_id)
        if start is None:
            return [], 0
        needle = author.lower()
        matches = [
            commit_id
            for commit_id, commit in self.walk(txn, repo_id, start)
            if not needle
            or needle in commit.author.name.lower()
            or needle in commit.author.email.lower()
        ]
        page = matches[offset:] if limit <= 0 else matches[offset : offset + limit]
        return [self._with_changes(txn, repo_id, c) for c in page], len(matches)

    # ---- branches ----

    def create_branch(self, txn: Txn, repo_id: str, name: str, from_rev: str) -> str:
        if self.branch_tip(txn, repo_id, name) is not None:
            raise AlreadyExists(f"branch {name!r} already exists")
        if txn.refs.list(repo_id, HEADS + name + "/") or any(
            self.branch_tip(txn, repo_id, "/".join(name.split("/")[:i]))
            for i in range(1, name.count("/") + 1)
        ):
            raise AlreadyExists(f"branch {name!r} conflicts with an existing branch path")
        commit_id = self.resolve(txn, repo_id, from_rev or "HEAD", "from_commit")
        txn.refs.put(repo_id, HEADS + name, commit_id)
        return commit_id

    def branch_tips(self, txn: Txn, repo_id: str) -> tuple[list[tuple[str, str]], str]:
        """(branch name, tip) sorted by name, and the current branch ("" when detached)."""
        tips = [(ref.removeprefix(HEADS), tip) for ref, tip in txn.refs.list(repo_id, HEADS)]
        current, _ = self.head(txn, repo_id)
        return tips, current or ""

    def list_branches(self, txn: Txn, repo_id: str) -> tuple[list[BranchInfo], str]:
        tips, current = self.branch_tips(txn, repo_id)
        branches = [
            BranchInfo(name, tip, self.objects.commit(txn, repo_id, tip)) for name, tip in tips
        ]
        return branches, current

    def delete_branch(self, txn: Txn, repo_id: str, name: str) -> None:
        if self.branch_tip(txn, repo_id, name) is None:
            raise NotFound(f"branch {name!r} not found in repository {repo_id!r}")
        current, _ = self.head(txn, repo_id)
        if current == name:
            raise FailedPrecondition(f"branch {name!r} is checked out; check out another first")
        txn.refs.delete(repo_id, HEADS + name)

    def checkout(self, txn: Txn, repo_id: str, name: str) -> None:
        tip = self.branch_tip(txn, repo_id, name)
        if tip is None:
            raise NotFound(f"branch {name!r} not found in repository {repo_id!r}")
        current, _ = self.head(txn, repo_id)
        if current == name:
            return
        if merge_in_progress(txn, repo_id):
            raise FailedPrecondition(MERGE_IN_PROGRESS)
        old, new = self.head_files(txn, repo_id), self.commit_files(txn, repo_id, tip)
        self._switch_tree(txn, repo_id, old, new, "check out")
        txn.refs.put(repo_id, "HEAD", f"ref: {HEADS}{name}")

    def _switch_tree(self, txn: Txn, repo_id: str, old: FileMap, new: FileMap, action: str) -> None:
        """Make index and work tree show `new`, carrying local changes git would carry.

        A local change (staged, unstaged or untracked) survives when `old` and `new` agree on
        that path; otherwise the switch would lose it and is refused with nothing changed.
        """
        index = txn.index.all(repo_id)
        worktree = txn.worktree.all(repo_id)
        blocked = []
        for path in sorted(index.keys() | worktree.keys() | old.keys()):
            staged, working = index.get(path), worktree.get(path)
            committed = old.get(path)
            staged_key = (staged.mode, staged.oid) if staged else None
            working_key = (working.mode, working.oid) if working else None
            if staged_key == committed and working_key == staged_key:
                continue  # clean
            if new.get(path) != committed:
                if staged_key == new.get(path) and working_key == staged_key:
                    continue  # the local change is the incoming version: nothing is lost
                if staged is None and committed is None and working_key == new.get(path):
                    continue  # untracked file identical to the incoming one
                blocked.append(path)
        if blocked:
            shown = ", ".join(blocked[:10]) + (" ..." if len(blocked) > 10 else "")
            raise FailedPrecondition(
                f"cannot {action}: uncommitted changes would be lost in {shown}"
            )
        now = self._now_us()
        new_index: dict[str, Entry] = {}
        new_worktree: dict[str, Entry] = {}
        for path, (mode, oid) in new.items():
            info = txn.objects.info(repo_id, oid)
            entry = Entry(oid, mode, info.size if info else 0, now)
            new_index[path] = new_worktree[path] = entry
        for path in index.keys() | worktree.keys() | old.keys():
            staged, working = index.get(path), worktree.get(path)
            if new.get(path) == old.get(path):
                # Unchanged between the trees: local state (clean, edited, staged, deleted)
                # carries over.
                if staged is not None:
                    new_index[path] = staged
                else:
                    new_index.pop(path, None)
                if working is not None:
                    new_worktree[path] = working
                else:
                    new_worktree.pop(path, None)
            elif staged is None and old.get(path) is None and working is not None:
                new_worktree[path] = working  # untracked, same as incoming
        txn.index.replace_all(repo_id, new_index)
        txn.worktree.replace_all(repo_id, new_worktree)

    # ---- tags ----

    def read_tag(self, txn: Txn, repo_id: str, oid: str) -> Tag:
        return Tag.decode(self.objects.read_kind(txn, repo_id, bytes.fromhex(oid), TAG))

    def create_tag(
        self,
        txn: Txn,
        repo_id: str,
        name: str,
        target: str,
        message: str,
        tagger: tuple[str, str] | None,
    ) -> TagInfo:
        """`git tag name target` (lightweight) or, with a message, `git tag -a -m message`."""
        if txn.refs.get(repo_id, TAGS + name) is not None:
            raise AlreadyExists(f"tag {name!r} already exists")
        if txn.refs.list(repo_id, TAGS + name + "/") or any(
            txn.refs.get(repo_id, TAGS + "/".join(name.split("/")[:i]))
            for i in range(1, name.count("/") + 1)
        ):
            raise AlreadyExists(f"tag {name!r} conflicts with an existing tag path")
        commit_id = self.resolve(txn, repo_id, target or "HEAD", "target")
        cleaned = clean_message(message)
        tag = None
        ref_target = commit_id
        if cleaned:
            tag = Tag(commit_id, COMMIT, name, self.signature(tagger), cleaned)
            prepared = prepare_object(TAG, tag.encode())
            txn.objects.put_prepared(repo_id, prepared)
            ref_target = prepared.hex
        txn.refs.put(repo_id, TAGS + name, ref_target)
        return TagInfo(name, ref_target, commit_id, tag)

    def list_tags(self, txn: Txn, repo_id: str) -> list[TagInfo]:
        tags = []
        for ref, target in txn.refs.list(repo_id, TAGS):
            info = txn.objects.info(repo_id, bytes.fromhex(target))
            tag = self.read_tag(txn, repo_id, target) if info and info.kind == TAG else None
            try:
                commit_id = self._peel(txn, repo_id, target, "tag")
            except FailedPrecondition:
                commit_id = ""  # a tag of a tree or a blob (imported)
            tags.append(TagInfo(ref.removeprefix(TAGS), target, commit_id, tag))
        return tags

    def delete_tag(self, txn: Txn, repo_id: str, name: str) -> None:
        if not txn.refs.delete(repo_id, TAGS + name):
            raise NotFound(f"tag {name!r} not found in repository {repo_id!r}")

    # ---- the work tree, as search and SQL read it ----

    def worktree_entries(self, txn: Txn, repo_id: str) -> dict[str, Entry]:
        return txn.worktree.all(repo_id)

    def worktree_under(self, txn: Txn, repo_id: str, path: str) -> dict[str, Entry]:
        """Work-tree entries at `path` or below it."""
        return txn.worktree.under(repo_id, path)

    def blob_rows(self, txn: Txn, repo_id: str) -> list[tuple[str, int, int]]:
        """(id, size, stored size) of every blob stored in the repository."""
        return [
            (oid.hex(), info.size, info.stored_size)
            for oid, info in txn.objects.all_objects(repo_id)
            if info.kind == BLOB
        ]

    def current_files(self, txn: Txn, repo_id: str) -> dict[str, tuple[bytes, int]]:
        """path -> (blob id, size) of the work tree: what a checkout shows now (the work tree
        holds every file, committed or not)."""
        return {p: (e.oid, e.size) for p, e in txn.worktree.all(repo_id).items()}

    # ---- status ----

    def status(self, txn: Txn, repo_id: str) -> Status:
        current, _ = self.head(txn, repo_id)
        head = self.head_files(txn, repo_id)
        index = {p: (e.mode, e.oid) for p, e in txn.index.all(repo_id).items()}
        worktree = {p: (e.mode, e.oid) for p, e in txn.worktree.all(repo_id).items()}
        merging = merge_in_progress(txn, repo_id)
        unresolved: dict[str, str] = merging["unresolved"] if merging else {}
        # Staged renames, found as git finds them (a deletion and an addition, similar).
        renamed: dict[str, str] = {}  # new path -> old path
        if any(p not in index for p in head) and any(p not in head for p in index):
            found = detect_renames(head, index, lambda oid: self._blob(txn, repo_id, oid))
            renamed = {new: old for old, new in found.items()}
        renamed_from = set(renamed.values())
        entries: list[tuple[str, str]] = []
        untracked: list[tuple[str, str]] = []  # git lists them after every tracked change
        for path in sorted(head.keys() | index.keys() | worktree.keys()):
            h, i, w = head.get(path), index.get(path), worktree.get(path)
            if path in unresolved:
                entries.append((unresolved[path], path))
            elif path in renamed:
                y = " " if w == i else "D" if w is None else "M"
                entries.append(("R" + y, f"{renamed[path]} -> {path}"))
            elif i is None and h is None:
                untracked.append(("??", path))
            else:
                x = " " if i == h else "A" if h is None else "D" if i is None else "M"
                y = " " if i is None or w == i else "D" if w is None else "M"
                if (x != " " or y != " ") and path not in renamed_from:
                    entries.append((x + y, path))
                if i is None and w is not None:
                    untracked.append(("??", path))  # staged deletion, a new file in its place
        return Status(current or "", entries + untracked)

    # ---- merge ----

    def merge_bases(self, txn: Txn, repo_id: str, a: str | list[str], b: str) -> list[str]:
        """The lowest common ancestors of `a` (a commit, or several: the parents of a virtual
        commit) and `b` (`git merge-base --all`), newest first: one, or several in a
        criss-cross history, or none for unrelated histories."""
        ancestors_a = {c for c, _ in self.walk(txn, repo_id, a)}
        covered: set[str] = set()  # proper ancestors of candidates found so far
        candidates: list[str] = []
        for commit_id, commit in self.walk(txn, repo_id, b):
            if commit_id not in ancestors_a or commit_id in covered:
                continue
            candidates.append(commit_id)
            stack = list(commit.parents)
            while stack:
                parent = stack.pop()
                if parent not in covered:
                    covered.add(parent)
                    stack.extend(self.objects.commit(txn, repo_id, parent).parents)
        if len(candidates) > 1:
            # Commits made within one second may come out of date order: drop any candidate
            # that is an ancestor of another.
            lower: set[str] = set()
            for candidate in candidates:
                lower.update(c for c, _ in self.walk(txn, repo_id, candidate) if c != candidate)
            candidates = [c for c in candidates if c not in lower]
        return candidates

    def merge_commits(
        self,
        txn: Txn,
        repo_id: str,
        ours: str,
        theirs: str,
        ours_label: str,
        theirs_label: str,
        strategy: Strategy = Strategy.ORT,
    ) -> tuple[TreeMerge, str]:
        """`git merge-tree --write-tree ours theirs`: the merge of two commits and the id of
        the tree it leaves (conflicted files with markers), stored in `txn`."""
        bases = self.merge_bases(txn, repo_id, ours, theirs)
        outcome = merge_trees(
            self._virtual_base(txn, repo_id, bases, 1),
            self.commit_files(txn, repo_id, ours),
            self.commit_files(txn, repo_id, theirs),
            lambda oid: self._blob(txn, repo_id, oid),
            lambda data: self._store_blob(txn, repo_id, data),
            ours_label=ours_label,
            theirs_label=theirs_label,
            strategy=strategy,
        )
        return outcome, self.objects.write_tree(txn, repo_id, outcome.files)

    def _virtual_base(self, txn: Txn, repo_id: str, bases: list[str], depth: int) -> FileMap:
        """The files of the merge base: the one base, an empty tree for unrelated histories,
        or, in a criss-cross history, the bases merged into one virtual commit the way git's
        recursive merge does (oldest first, conflicts kept as text with longer markers)."""
        order = list(reversed(bases))
        if not order:
            return {}
        merged = self.commit_files(txn, repo_id, order[0])
        parents = [order[0]]
        for following in order[1:]:
            inner = self.merge_bases(txn, repo_id, parents, following)
            merged = merge_trees(
                self._virtual_base(txn, repo_id, inner, depth + 1),
                merged,
                self.commit_files(txn, repo_id, following),
                lambda oid: self._blob(txn, repo_id, oid),
                lambda data: self._store_blob(txn, repo_id, data),
                ours_label="Temporary merge branch 1",
                theirs_label="Temporary merge branch 2",
                depth=depth,
            ).files
            parents.append(following)
        return merged

    def merge(
        self,
        txn: Txn,
        repo_id: str,
        source: str,
        target: str,
        message: str,
        strategy: Strategy = Strategy.ORT,
        leave_conflicts: bool = False,
    ) -> MergeResult:
        """Merge branch `source` into `target` (default: the current branch). On conflict,
        MergeConflict (raised inside the write, it leaves nothing behind), or with
        `leave_conflicts` the target left mid-merge as `git merge` leaves it."""
        current, _ = self.head(txn, repo_id)
        into = target or current
        if into is None:
            raise FailedPrecondition("HEAD is detached: name target_branch")
        source_tip = self.branch_tip(txn, repo_id, source)
        if source_tip is None:
            raise NotFound(f"source_branch {source!r} not found in repository {repo_id!r}")
        target_tip = self.branch_tip(txn, repo_id, into)
        if target_tip is None:
            raise NotFound(f"target_branch {into!r} not found in repository {repo_id!r}")
        if source == into:
            raise InvalidArgument(f"source_branch and target_branch are both {into!r}")
        if merge_in_progress(txn, repo_id):
            raise FailedPrecondition(MERGE_IN_PROGRESS)
        if leave_conflicts and into != current:
            raise FailedPrecondition(
                f"leave_conflicts needs target_branch {into!r} to be the checked-out branch"
            )
        bases = self.merge_bases(txn, repo_id, source_tip, target_tip)
        if source_tip in bases:
            return MergeResult(target_tip)  # already up to date
        old_files = self.commit_files(txn, repo_id, target_tip)
        if target_tip in bases:
            if into == current:
                new_files = self.commit_files(txn, repo_id, source_tip)
                self._switch_tree(txn, repo_id, old_files, new_files, "merge")
            txn.refs.put(repo_id, HEADS + into, source_tip)
            return MergeResult(source_tip, fast_forward=True)
        outcome, tree_id = self.merge_commits(
            txn, repo_id, target_tip, source_tip, into, source, strategy
        )
        default = f"Merge branch '{source}'" + (
            "" if into in ("main", "master") else f" into {into}"
        )
        if not outcome.clean:
            if not leave_conflicts:
                raise MergeConflict(outcome.conflicts, outcome.other_conflicts)
            self._leave_conflicts(txn, repo_id, old_files, outcome, source_tip, message or default)
            return MergeResult("", outcome.conflicts, outcome.other_conflicts)
        if into == current:
            self._switch_tree(txn, repo_id, old_files, outcome.files, "merge")
        signature = self.signature(None)
        commit = Commit(
            tree_id,
            (target_tip, source_tip),
            signature,
            signature,
            clean_message(message or default),
        )
        commit_id = self._put_commit(txn, repo_id, commit)
        txn.refs.put(repo_id, HEADS + into, commit_id)
        return MergeResult(commit_id)

    def _leave_conflicts(
        self,
        txn: Txn,
        repo_id: str,
        old_files: FileMap,
        outcome: TreeMerge,
        source_tip: str,
        message: str,
    ) -> None:
        """Leave the checked-out branch mid-merge: merged paths staged, conflicted paths with
        git's markers in the work tree and our version in the index, and what AbortMerge needs
        to put every touched path back."""
        conflicted = {c.path for c in outcome.conflicts}
        dirty = [
            path
            for path in sorted(conflicted)
            if _key(txn.index.get(repo_id, path)) != old_files.get(path)
            or _key(txn.worktree.get(repo_id, path)) != old_files.get(path)
        ]
        if dirty:
            shown = ", ".join(dirty[:10]) + (" ..." if len(dirty) > 10 else "")
            raise FailedPrecondition(
                f"cannot merge: local changes to {shown} would be overwritten by the merge"
            )
        staged = {p: v for p, v in outcome.files.items() if p not in conflicted}
        for path in conflicted:
            if path in old_files:
                staged[path] = old_files[path]
        touched = {p for p in staged.keys() | old_files.keys() if staged.get(p) != old_files.get(p)}
        touched |= conflicted
        saved = {
            path: [
                _hex(txn.index.get(repo_id, path)),
                _hex(txn.worktree.get(repo_id, path)),
            ]
            for path in sorted(touched)
        }
        self._switch_tree(txn, repo_id, old_files, staged, "merge")
        now = self._now_us()
        for path in conflicted:
            version = outcome.files.get(path)
            if version is None:
                txn.worktree.delete(repo_id, path)
                continue
            info = txn.objects.info(repo_id, version[1])
            txn.worktree.put(
                repo_id, path, Entry(version[1], version[0], info.size if info else 0, now)
            )
        state = {
            "merge_head": source_tip,
            "message": message,
            "unresolved": {c.path: c.code for c in outcome.conflicts},
            "saved": saved,
        }
        txn.refs.put(repo_id, MERGE_STATE, json.dumps(state, sort_keys=True))

    def abort_merge(self, txn: Txn, repo_id: str) -> None:
        """`git merge --abort`: every path the merge touched goes back to what it was."""
        state = merge_in_progress(txn, repo_id)
        if state is None:
            raise FailedPrecondition(f"no merge is in progress in repository {repo_id!r}")
        for path, (staged, working) in state["saved"].items():
            for table, value in ((txn.index, staged), (txn.worktree, working)):
                if value is None:
                    table.delete(repo_id, path)
                else:
                    table.put(repo_id, path, Entry.decode(bytes.fromhex(value)))
        txn.refs.delete(repo_id, MERGE_STATE)

    def _mark_resolved(self, txn: Txn, repo_id: str, paths: Iterable[str]) -> None:
        """AddFile or RemoveFile of a conflicted path resolves it (as `git add` / `git rm`)."""
        state = merge_in_progress(txn, repo_id)
        if state is None:
            return
        unresolved = state["unresolved"]
        if any(unresolved.pop(p, None) is not None for p in list(paths)):
            txn.refs.put(repo_id, MERGE_STATE, json.dumps(state, sort_keys=True))


MERGE_STATE = "MERGE_STATE"  # a ref-table key outside refs/: the merge left with conflicts
MERGE_IN_PROGRESS = "a merge is in progress: resolve and Commit, or AbortMerge"


def merge_in_progress(txn: Txn, repo_id: str) -> dict[str, Any] | None:
    """The state of a merge left with conflicts, or None."""
    value = txn.refs.get(repo_id, MERGE_STATE)
    return None if value is None else cast(dict[str, Any], json.loads(value))


def _key(entry: Entry | None) -> tuple[int, bytes] | None:
    return None if entry is None else (entry.mode, entry.oid)


def _hex(entry: Entry | None) -> str | None:
    return None if entry is None else entry.encode().hex()
