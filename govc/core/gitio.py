"""Export a repository to a bare git repository, and import one from git.

Export writes loose objects and refs directly (the format is simple and stable), so it needs
no git binary; import reads with the real git (`git cat-file --batch`), so whatever git can
read, govc can take in. Object ids are identical on both sides by construction.
"""

import functools
import os
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

from govc.core.database import Database
from govc.core.gitformat import BLOB, COMMIT, DIR_MODE, TREE, object_header
from govc.core.objects import prepare_object
from govc.core.registry import HEADS
from govc.core.versioncontrol import VersionControl
from govc.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from govc.storage import Entry, Txn
from govc.storage.objectstore import PreparedObject

IMPORT_BATCH_BYTES = 64 * 1024 * 1024


def export_repository(db: Database, vc: VersionControl, repo_id: str, dest: Path) -> int:
    """Write `repo_id` as a bare git repository at `dest`; returns the number of objects."""
    if dest.exists() and any(dest.iterdir()):
        raise FailedPrecondition(f"destination {dest} exists and is not empty")

    def export(txn: Txn) -> tuple[list[tuple[str, str]], str, int]:
        branches = txn.refs.list(repo_id, HEADS)
        head = txn.refs.get(repo_id, "HEAD") or f"ref: {HEADS}main"
        tips = [tip for _, tip in branches]
        if not head.startswith("ref: "):
            tips.append(head)
        for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags", "info"):
            (dest / sub).mkdir(parents=True, exist_ok=True)
        count = 0
        for kind, oid, content in _reachable(vc, txn, repo_id, tips):
            _write_loose(dest, kind, oid, content)
            count += 1
        return branches, head, count

    branches, head, count = db.read(repo_id, export)
    for name, tip in branches:
        ref_path = dest / name
        ref_path.parent.mkdir(parents=True, exist_ok=True)
        ref_path.write_text(tip + "\n")
    (dest / "HEAD").write_text(head + "\n")
    (dest / "config").write_text(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"
    )
    (dest / "description").write_text(f"govc repository {repo_id}\n")
    return count


def _reachable(
    vc: VersionControl, txn: Txn, repo_id: str, tips: list[str]
) -> Iterator[tuple[str, bytes, bytes]]:
    """(kind, id, content) of every object reachable from `tips`, each once."""
    seen: set[bytes] = set()
    store = txn.objects
    for tip in tips:
        for commit_id, _ in vc.walk(txn, repo_id, tip):
            oid = bytes.fromhex(commit_id)
            if oid in seen:
                continue
            seen.add(oid)
            content = vc.objects.read_kind(txn, repo_id, oid, COMMIT)
            yield COMMIT, oid, content
            tree = bytes.fromhex(vc.objects.commit(txn, repo_id, commit_id).tree)
            stack = [tree]
            while stack:
                tree_oid = stack.pop()
                if tree_oid in seen:
                    continue
                seen.add(tree_oid)
                yield TREE, tree_oid, store.read(repo_id, tree_oid)
                for mode, _, child in vc.objects.tree(txn, repo_id, tree_oid):
                    if mode == DIR_MODE:
                        stack.append(child)
                    elif child not in seen and mode != "160000":  # submodules point elsewhere
                        seen.add(child)
                        yield BLOB, child, store.read(repo_id, child)


def _write_loose(dest: Path, kind: str, oid: bytes, content: bytes) -> None:
    hex_id = oid.hex()
    directory = dest / "objects" / hex_id[:2]
    directory.mkdir(exist_ok=True)
    path = directory / hex_id[2:]
    if not path.exists():
        path.write_bytes(zlib.compress(object_header(kind, len(content)) + content, 1))


def import_repository(db: Database, vc: VersionControl, source: Path, repo_id: str) -> int:
    """Create `repo_id` from the git repository at `source` (all objects, branches, HEAD)."""
    git_dir = _git_dir(source)
    if db.read(None, lambda txn: txn.repos.exists(repo_id)):
        raise AlreadyExists(f"repository {repo_id!r} already exists")
    # Objects first, into a repository that does not exist yet: invisible until it is created.
    count = 0
    batch: list[PreparedObject] = []
    batch_bytes = 0
    try:
        for kind, content in _git_objects(git_dir):
            batch.append(prepare_object(kind, content))
            batch_bytes += len(content)
            count += 1
            if batch_bytes >= IMPORT_BATCH_BYTES:
                db.write(None, functools.partial(_put_all, repo_id, batch)).result()
                batch, batch_bytes = [], 0
        if batch:
            db.write(None, functools.partial(_put_all, repo_id, batch)).result()
    except BaseException:
        # A failed import must not leave objects that a later repository of this id would see.
        def discard(txn: Txn) -> None:
            if not txn.repos.exists(repo_id):
                txn.objects.delete_repo(repo_id)

        db.write(None, discard).result()
        raise
    branches = _git(git_dir, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
    head = _git(git_dir, "symbolic-ref", "-q", "HEAD", check=False).strip()
    if not head:
        head = _git(git_dir, "rev-parse", "-q", "--verify", "HEAD", check=False).strip()
    info = db.registry.new_info(repo_id, "", f"imported from {source.name}", {})

    def create(txn: Txn) -> None:
        db.registry.create(txn, info)
        for line in branches.splitlines():
            tip, ref = line.split(" ", 1)
            txn.refs.put(repo_id, ref, tip)
        if head.startswith("refs/"):
            txn.refs.put(repo_id, "HEAD", f"ref: {head}")
        elif head:
            txn.refs.put(repo_id, "HEAD", head)
        entries = {}
        for path, (mode, oid) in vc.head_files(txn, repo_id).items():
            found = txn.objects.info(repo_id, oid)
            entries[path] = Entry(oid, mode, found.size if found else 0, 0)
        txn.index.replace_all(repo_id, entries)
        txn.worktree.replace_all(repo_id, entries)

    db.write(None, create).result()
    return count


def _put_all(repo_id: str, batch: list[PreparedObject], txn: Txn) -> None:
    for prepared in batch:
        txn.objects.put_prepared(repo_id, prepared)


def _git_dir(source: Path) -> Path:
    result = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--absolute-git-dir"], capture_output=True
    )
    if result.returncode != 0:
        raise InvalidArgument(f"{source} is not a git repository")
    return Path(result.stdout.decode().strip())


def _git(git_dir: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, "GIT_DIR": str(git_dir)}
    result = subprocess.run(["git", *args], env=env, capture_output=True, check=check)
    return result.stdout.decode()


def _git_objects(git_dir: Path) -> Iterator[tuple[str, bytes]]:
    """(kind, content) of every blob, tree and commit in the repository, via git itself."""
    proc = subprocess.Popen(
        ["git", "cat-file", "--batch-all-objects", "--batch", "--unordered"],
        env={**os.environ, "GIT_DIR": str(git_dir)},
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        while True:
            header = proc.stdout.readline()
            if not header:
                break
            _, kind, size = header.decode().split()
            content = proc.stdout.read(int(size))
            proc.stdout.read(1)  # the newline after each object
            if kind in (BLOB, TREE, COMMIT):
                yield kind, content
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise FailedPrecondition(f"git cat-file failed reading {git_dir}")
