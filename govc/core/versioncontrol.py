"""Version control of one repository at a time: work tree, index, commits, branches, merges.

Every operation is a function of a transaction (`Txn`): a mutation runs as one writer operation,
so it is atomic and serialized with every other write; a read runs in a read transaction. The
caller chooses the transaction and the thread (see `govc.core.database.Database`); blob contents
are hashed and compressed by the caller before a write is queued.
"""

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from govc.core.gitformat import (
    BLOB,
    COMMIT,
    FILE_MODE,
    Commit,
    Signature,
    clean_message,
    require_message,
)
from govc.core.merge import merge_trees
from govc.core.objects import FileMap, ObjectReader, diff_files, prepare_blob, prepare_object
from govc.core.registry import DEFAULT_BRANCH, HEADS
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
class FileContent:
    content: bytes
    oid: bytes
    modified_us: int


@dataclass(frozen=True)
class Status:
    branch: str
    entries: list[tuple[str, str]]  # (two-letter code, path), sorted by path

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
    commit_id: str
    fast_forward: bool = False


class MergeConflict(FailedPrecondition):
    """The merge conflicts in `paths`; raised inside the write, so whatever it stored is
    rolled back with it."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(f"merge conflicts in {', '.join(paths)}")
        self.paths = paths


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
        tip = self.branch_tip(txn, repo_id, base.removeprefix(HEADS))
        if tip is not None:
            return tip
        if looks_like_hash(base):
            matches = self._commits_with_prefix(txn, repo_id, base.lower())
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(
                    f"{field} {base!r} is ambiguous: {len(matches)} commits match"
                )
        raise NotFound(f"{field} {base!r:.80} is not a branch or commit of repository {repo_id!r}")

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
        self, txn: Txn, repo_id: str, path: str, prepared: PreparedObject, stage: bool
    ) -> Entry:
        """Write to the work tree (WriteFile) and, with `stage`, to the index too (AddFile)."""
        self._check_file_dir_conflicts(txn, repo_id, path)
        txn.objects.put_prepared(repo_id, prepared)
        entry = Entry(prepared.oid, FILE_MODE, prepared.size, self._now_us())
        txn.worktree.put(repo_id, path, entry)
        if stage:
            txn.index.put(repo_id, path, entry)
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
        """`git rm`: the path leaves the index and the work tree (a directory: all below it)."""
        for p in self._tracked_paths(txn, repo_id, path, "path"):
            txn.index.delete(repo_id, p)
            txn.worktree.delete(repo_id, p)

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
        if tree_files == head_files:
            raise FailedPrecondition("nothing to commit: the index matches HEAD")
        tree_id = self.objects.write_tree(txn, repo_id, tree_files)
        signature = self.signature(author)
        commit = Commit(tree_id, (head_id,) if head_id else (), signature, signature, cleaned)
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

    def walk(self, txn: Txn, repo_id: str, start: str) -> Iterator[tuple[str, Commit]]:
        """Every commit reachable from `start` once, newest (committer time) first."""
        seen = {start}
        order = 0
        first = self.objects.commit(txn, repo_id, start)
        queue: list[tuple[int, int, str, Commit]] = [(-first.committer.time, order, start, first)]
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
        entries = []
        for path in sorted(head.keys() | index.keys() | worktree.keys()):
            h, i, w = head.get(path), index.get(path), worktree.get(path)
            if i is None and h is None:
                entries.append(("??", path))
                continue
            x = " " if i == h else "A" if h is None else "D" if i is None else "M"
            y = " " if i is None or w == i else "D" if w is None else "M"
            if x != " " or y != " ":
                entries.append((x + y, path))
            if i is None and w is not None:
                entries.append(("??", path))  # staged deletion, new untracked file in its place
        return Status(current or "", entries)

    # ---- merge ----

    def merge_bases(self, txn: Txn, repo_id: str, a: str, b: str) -> list[str]:
        """The lowest common ancestors of `a` and `b` (`git merge-base --all`), newest first:
        one, or several in a criss-cross history, or none for unrelated histories."""
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

    def merge(self, txn: Txn, repo_id: str, source: str, target: str, message: str) -> MergeResult:
        """Merge branch `source` into `target` (default: the current branch). MergeConflict
        when the trees conflict: raised inside the write, it leaves nothing behind."""
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
        merged = self._merge_files(txn, repo_id, bases, old_files, source_tip)
        if into == current:
            self._switch_tree(txn, repo_id, old_files, merged, "merge")
        tree_id = self.objects.write_tree(txn, repo_id, merged)
        default = f"Merge branch '{source}'" + (
            "" if into in ("main", "master") else f" into {into}"
        )
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

    def _merge_files(
        self, txn: Txn, repo_id: str, bases: list[str], ours: FileMap, source_tip: str
    ) -> FileMap:
        """The three-way merge of `ours` and the source's files; MergeConflict if they conflict.

        With several lowest common ancestors (a criss-cross history) git merges them into a
        virtual base. We merge against each and take the result only when they all agree;
        otherwise the paths where they differ are conflicts (never a silent choice).
        """
        theirs = self.commit_files(txn, repo_id, source_tip)
        base_files = [self.commit_files(txn, repo_id, base) for base in bases] or [{}]
        outcomes = [  # (unrelated histories: one empty base)
            merge_trees(
                files,
                ours,
                theirs,
                lambda oid: self._blob(txn, repo_id, oid),
                lambda data: self._store_blob(txn, repo_id, data),
            )
            for files in base_files
        ]
        conflicts = {path for _, found in outcomes for path in found}
        merged = outcomes[0][0]
        if not conflicts:
            conflicts = {
                path
                for other, _ in outcomes[1:]
                for path in merged.keys() | other.keys()
                if merged.get(path) != other.get(path)
            }
        if conflicts:
            raise MergeConflict(sorted(conflicts))
        return merged
