"""Stateful model test: random add/write/rm/mv/commit/branch/checkout sequences against a
small pure-Python model of git's HEAD/index/work-tree semantics.

After every step the status entries, the file reads and the branch tips must equal the model;
operations the model rejects must fail with the same error and change nothing. At the end the
repository is exported and checked with `git fsck --strict`, and `git log --all` must list
exactly the commits (with their trees and parents) that the model made.
"""

import hashlib
import itertools
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from govc.core.database import Database
from govc.core.gitio import export_repository
from govc.core.objects import prepare_blob
from govc.core.registry import Registry
from govc.core.versioncontrol import VersionControl
from govc.errors import AlreadyExists, FailedPrecondition, GovcError, NotFound
from govc.storage import Storage, StorageConfig, Txn

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")

T = TypeVar("T")
REPO = "model"
# No file path is a directory of another, so file/directory conflicts cannot arise.
FILES = ("a", "b", "d/c", "d/e/f", "g/e/f")
DIRS = ("d", "d/e", "g", "g/e")
CONTENTS = (b"", b"one\n", b"two\n", b"three\n")
BRANCHES = ("main", "topic", "fix")
# git mv pairs: any file onto any other file, plus a directory move within the alphabet.
MOVES = [(s, t) for s in FILES for t in FILES if s != t] + [("d/e", "g/e"), ("g/e", "d/e")]

Files = dict[str, bytes]

# Known difference from git, kept on purpose: checkout over an untracked work-tree file whose
# content equals the incoming file succeeds (the file becomes tracked; nothing is lost); git
# refuses ("untracked working tree files would be overwritten").
CHECKOUT_ADOPTS_IDENTICAL_UNTRACKED = True


def without_renames(entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Status entries with each staged rename shown as git shows it without rename
    detection: a deletion of the old path and an addition of the new one (rename detection
    itself is checked against git in test_renames and test_merge_workflow)."""
    changes = []
    for code, path in entries:
        if code[0] == "R":
            old, new = path.split(" -> ")
            changes += [("D ", old), ("A" + code[1], new)]
        elif code != "??":
            changes.append((code, path))
    untracked = [entry for entry in entries if entry[0] == "??"]
    return sorted(changes, key=lambda entry: entry[1]) + untracked


class ModelError(Exception):
    def __init__(self, kind: type[GovcError]) -> None:
        super().__init__(kind.__name__)
        self.kind = kind


def under(path: str, spec: str) -> bool:
    return path == spec or path.startswith(spec + "/")


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def git_tree_id(files: Files) -> str:
    """The id git gives the tree of `files` (all mode 100644), computed independently."""
    children: dict[str, Files] = {}
    entries: list[tuple[bytes, bytes]] = []
    for path, content in files.items():
        head, _, rest = path.partition("/")
        if rest:
            children.setdefault(head, {})[rest] = content
        else:
            entry = b"100644 " + head.encode() + b"\0" + bytes.fromhex(git_blob_id(content))
            entries.append((head.encode(), entry))
    for name, sub in children.items():
        entry = b"40000 " + name.encode() + b"\0" + bytes.fromhex(git_tree_id(sub))
        entries.append((name.encode() + b"/", entry))
    body = b"".join(entry for _, entry in sorted(entries))
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


@dataclass
class Model:
    """git's view of one repository: HEAD, branch tips, commits, index and work tree."""

    head: str = "main"
    branches: dict[str, str] = field(default_factory=dict)  # born branches only
    commits: dict[str, tuple[Files, str | None]] = field(default_factory=dict)
    index: Files = field(default_factory=dict)
    work: Files = field(default_factory=dict)

    def tree(self, commit_id: str | None) -> Files:
        return dict(self.commits[commit_id][0]) if commit_id else {}

    def head_tree(self) -> Files:
        return self.tree(self.branches.get(self.head))

    def status(self) -> list[tuple[str, str]]:
        """`git status --porcelain` v1 without rename detection: changes sorted by path,
        then untracked files."""
        head, entries, untracked = self.head_tree(), [], []
        for path in sorted(head.keys() | self.index.keys() | self.work.keys()):
            h, i, w = head.get(path), self.index.get(path), self.work.get(path)
            if i is not None or h is not None:
                x = " " if i == h else "A" if h is None else "D" if i is None else "M"
                y = " " if i is None or w == i else "D" if w is None else "M"
                if x + y != "  ":
                    entries.append((x + y, path))
            if i is None and w is not None:
                untracked.append(("??", path))
        return entries + untracked

    def read(self, path: str) -> bytes | None:
        for files in (self.work, self.index, self.head_tree()):
            if path in files:
                return files[path]
        return None

    # ---- operations: each raises ModelError before changing anything ----

    def remove(self, path: str) -> None:
        """`git rm -f`, and a file only in the work tree is removed from it."""
        paths = [p for p in self.index.keys() | self.work.keys() if under(p, path)]
        if not paths:
            raise ModelError(NotFound)
        for p in paths:
            self.index.pop(p, None)
            self.work.pop(p, None)

    def move(self, source: str, target: str) -> None:
        paths = [p for p in self.index if under(p, source)]
        if not paths:
            raise ModelError(NotFound)
        if any(under(p, target) for p in self.index.keys() | self.work.keys()):
            raise ModelError(AlreadyExists)
        # A directory moves whole, as on disk: its untracked files go with it.
        untracked = [p for p in self.work if under(p, source) and p != source and p not in paths]
        for p in paths:
            new = target + p[len(source) :]
            self.index[new] = self.index.pop(p)
            if p in self.work:
                self.work[new] = self.work.pop(p)
        for p in untracked:
            self.work[target + p[len(source) :]] = self.work.pop(p)

    def commit_tree(self, files: list[str]) -> tuple[Files, Files]:
        """(tree to commit, index afterwards) for `git commit [-- files]`."""
        head = self.head_tree()
        if not files:
            tree, index = dict(self.index), dict(self.index)
        else:
            tree, index = dict(head), dict(self.index)
            # git matches the pathspecs against the files it knows: the index and HEAD.
            known = self.index.keys() | head.keys()
            for spec in files:
                matched = [p for p in known if under(p, spec)]
                if not matched:
                    raise ModelError(NotFound)
                for p in matched:
                    if p in self.work:
                        tree[p] = index[p] = self.work[p]
                    else:
                        tree.pop(p, None)
                        index.pop(p, None)
        if tree == head:
            raise ModelError(FailedPrecondition)
        return tree, index

    def create_branch(self, name: str, start: str) -> str:
        if name in self.branches:
            raise ModelError(AlreadyExists)
        tip = self.branches.get(start or self.head)
        if tip is None:
            # An unborn HEAD, or a start that names no commit.
            raise ModelError(NotFound if start else FailedPrecondition)
        return tip

    def checkout(self, name: str) -> None:
        """Carry local changes where HEAD's and the target's trees agree; refuse otherwise."""
        if name not in self.branches:
            raise ModelError(NotFound)
        if name == self.head:
            return
        old, new = self.head_tree(), self.tree(self.branches[name])
        for path in self.index.keys() | self.work.keys() | old.keys():
            i, w, o = self.index.get(path), self.work.get(path), old.get(path)
            if i == o and w == i:
                continue  # clean
            if new.get(path) != o:
                if i == new.get(path) and w == i:
                    continue  # the local change is the incoming version: nothing is lost
                adopt = i is None and o is None and w == new.get(path)
                if CHECKOUT_ADOPTS_IDENTICAL_UNTRACKED and adopt:
                    continue
                raise ModelError(FailedPrecondition)
        index, work = dict(new), dict(new)
        for path in self.index.keys() | self.work.keys() | old.keys() | new.keys():
            if new.get(path) == old.get(path):
                for mine, result in ((self.index, index), (self.work, work)):
                    if path in mine:
                        result[path] = mine[path]
                    else:
                        result.pop(path, None)
        self.index, self.work, self.head = index, work, name


class VcsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="govc-model-"))
        self.storage = Storage(StorageConfig(path=str(self.tmp / "data"), durable=False))
        self.db = Database(self.storage, Registry())
        info = self.db.registry.new_info(REPO, "", "", {})
        self.db.write(None, lambda txn: self.db.registry.create(txn, info)).result()
        seconds = itertools.count(1_700_000_000)
        self.vc = VersionControl(clock=lambda: float(next(seconds)))
        self.model = Model()
        self.messages = itertools.count(1)

    def teardown(self) -> None:
        try:
            if self.model.commits:
                self.check_export()
        finally:
            self.storage.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- helpers ----

    def in_write(self, fn: Callable[[Txn], T]) -> T:
        return self.db.write(REPO, fn).result()

    def in_read(self, fn: Callable[[Txn], T]) -> T:
        return self.db.read(REPO, fn)

    def read_file(self, path: str, rev: str) -> bytes:
        return self.in_read(lambda txn: self.vc.read_file(txn, REPO, path, rev)).content

    def expect(self, name: str, model_op: Callable[[], Any], real_op: Callable[[], Any]) -> Any:
        """Run the model's operation and the real one; both fail alike or both succeed."""
        try:
            expected = model_op()
        except ModelError as err:
            event(f"{name}: {err.kind.__name__}")
            with pytest.raises(err.kind):
                real_op()
            return None
        event(f"{name}: ok")
        return expected, real_op()

    # ---- rules ----

    @initialize(
        files=st.dictionaries(st.sampled_from(FILES), st.sampled_from(CONTENTS)),
        branch=st.booleans(),
    )
    def first_commit(self, files: Files, branch: bool) -> None:
        """Usually start from a first commit (and a second branch), where most things happen;
        with no files, start on the unborn `main`."""
        for path, content in files.items():
            self.add(path, content)
        if files:
            self.commit([])
        if branch:
            self.create_branch("topic", "")

    @rule(path=st.sampled_from(FILES), content=st.sampled_from(CONTENTS))
    def add(self, path: str, content: bytes) -> None:
        entry = self.in_write(
            lambda txn: self.vc.write_file(txn, REPO, path, prepare_blob(content), True)
        )
        assert entry.oid.hex() == git_blob_id(content)
        self.model.index[path] = self.model.work[path] = content

    @rule(path=st.sampled_from(FILES), content=st.sampled_from(CONTENTS))
    def write(self, path: str, content: bytes) -> None:
        self.in_write(lambda txn: self.vc.write_file(txn, REPO, path, prepare_blob(content), False))
        self.model.work[path] = content

    @rule(path=st.sampled_from(FILES + DIRS))
    def remove(self, path: str) -> None:
        self.expect(
            "remove",
            lambda: self.model.remove(path),
            lambda: self.in_write(lambda txn: self.vc.remove_file(txn, REPO, path)),
        )

    @rule(pair=st.sampled_from(MOVES))
    def move(self, pair: tuple[str, str]) -> None:
        source, target = pair
        self.expect(
            "move",
            lambda: self.model.move(source, target),
            lambda: self.in_write(lambda txn: self.vc.move_file(txn, REPO, source, target)),
        )

    @rule(
        files=st.one_of(
            st.just([]),
            st.lists(st.sampled_from(FILES + DIRS), min_size=1, max_size=2, unique=True),
        )
    )
    def commit(self, files: list[str]) -> None:
        message = f"change {next(self.messages)}"
        outcome = self.expect(
            "commit" if files else "commit -a",
            lambda: self.model.commit_tree(files),
            lambda: self.in_write(
                lambda txn: self.vc.commit(txn, REPO, message, ("T", "t@x"), files)
            ),
        )
        if outcome is None:
            return
        (tree, index), info = outcome
        parent = self.model.branches.get(self.model.head)
        assert info.commit.parents == ((parent,) if parent else ())
        assert info.commit.tree == git_tree_id(tree)
        self.model.commits[info.id] = (tree, parent)
        self.model.branches[self.model.head] = info.id
        self.model.index = index

    @rule(name=st.sampled_from(BRANCHES), start=st.sampled_from(("", *BRANCHES)))
    def create_branch(self, name: str, start: str) -> None:
        outcome = self.expect(
            "create_branch",
            lambda: self.model.create_branch(name, start),
            lambda: self.in_write(lambda txn: self.vc.create_branch(txn, REPO, name, start)),
        )
        if outcome is not None:
            tip, real_tip = outcome
            assert real_tip == tip
            self.model.branches[name] = tip

    @rule(name=st.sampled_from(BRANCHES))
    def checkout(self, name: str) -> None:
        dirty = bool(self.model.status())
        self.expect(
            "checkout with local changes" if dirty else "checkout",
            lambda: self.model.checkout(name),
            lambda: self.in_write(lambda txn: self.vc.checkout(txn, REPO, name)),
        )

    # ---- invariants ----

    @invariant()
    def status_matches(self) -> None:
        status = self.in_read(lambda txn: self.vc.status(txn, REPO))
        assert status.branch == self.model.head
        assert without_renames(status.entries) == self.model.status()

    @invariant()
    def reads_match(self) -> None:
        for path in FILES:
            expected = self.model.read(path)
            if expected is None:
                with pytest.raises(NotFound):
                    self.read_file(path, "")
            else:
                assert self.read_file(path, "") == expected, path

    @invariant()
    def branches_match(self) -> None:
        branches, current = self.in_read(lambda txn: self.vc.list_branches(txn, REPO))
        assert current == self.model.head
        assert {b.name: b.commit_id for b in branches} == self.model.branches

    @precondition(lambda self: self.model.head in self.model.branches)
    @invariant()
    def head_tree_matches(self) -> None:
        tree = self.model.head_tree()
        for path in FILES:
            if path in tree:
                assert self.read_file(path, "HEAD") == tree[path], path
            else:
                with pytest.raises(NotFound):
                    self.read_file(path, "HEAD")

    # ---- export ----

    def check_export(self) -> None:
        dest = self.tmp / "export.git"
        export_repository(self.db, self.vc, REPO, dest)

        def git(*args: str) -> str:
            done = subprocess.run(
                ["git", "--git-dir", str(dest), *args], capture_output=True, text=True
            )
            assert done.returncode == 0, f"git {' '.join(args)}: {done.stdout}{done.stderr}"
            return done.stdout

        git("fsck", "--strict", "--no-progress")
        logged = {}
        for line in git("log", "--all", "--format=%H %T %P").splitlines():
            commit_id, tree_id, *parents = line.split()
            logged[commit_id] = (tree_id, parents)
        expected = {
            commit_id: (git_tree_id(tree), [parent] if parent else [])
            for commit_id, (tree, parent) in self.model.commits.items()
        }
        assert logged == expected
        refs = git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")
        assert dict(line.split() for line in refs.splitlines()) == self.model.branches


VcsMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_vcs_model = VcsMachine.TestCase
