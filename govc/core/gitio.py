"""Export a repository to a bare git repository, and import one from git.

Export writes one pack with its index (git's formats, `govc.core.pack`) and every ref, so it
needs no git binary; import reads with the real git (`git cat-file --batch`), so whatever git
can read, govc can take in. Object ids are identical on both sides by construction, and every
ref is kept: branches, tags (tag objects byte for byte) and a clone's remote-tracking branches
(as branches named after them). A ref govc cannot keep is refused by name before anything is
written.
"""

import functools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from govc.core.database import Database
from govc.core.gitformat import BLOB, COMMIT, DIR_MODE, TAG, TREE, Tag, decode_tree
from govc.core.objects import prepare_object
from govc.core.pack import PackObject, write_pack
from govc.core.registry import HEADS, TAGS
from govc.core.validation import validate_branch_name
from govc.core.versioncontrol import VersionControl
from govc.errors import AlreadyExists, FailedPrecondition, GovcError, InvalidArgument
from govc.storage import Entry, Txn
from govc.storage.objectstore import PreparedObject

IMPORT_BATCH_BYTES = 64 * 1024 * 1024
REMOTES = "refs/remotes/"
GITLINK = "160000"  # a submodule's commit lives in another repository


def export_repository(db: Database, vc: VersionControl, repo_id: str, dest: Path) -> int:
    """Write `repo_id` as a bare git repository at `dest`: every ref, and one pack of every
    object reachable from them. Returns the number of objects."""
    if dest.exists() and any(dest.iterdir()):
        raise FailedPrecondition(f"destination {dest} exists and is not empty")

    def export(txn: Txn) -> tuple[list[tuple[str, str]], str, int]:
        refs = txn.refs.list(repo_id, HEADS) + txn.refs.list(repo_id, TAGS)
        head = txn.refs.get(repo_id, "HEAD") or f"ref: {HEADS}main"
        tips = [target for _, target in refs]
        if not head.startswith("ref: "):
            tips.append(head)
        for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags", "info"):
            (dest / sub).mkdir(parents=True, exist_ok=True)
        written = write_pack(dest / "objects" / "pack", _reachable(vc, txn, repo_id, tips))
        return refs, head, written.objects

    refs, head, count = db.read(repo_id, export)
    for name, target in refs:
        ref_path = dest / name
        ref_path.parent.mkdir(parents=True, exist_ok=True)
        ref_path.write_text(target + "\n")
    (dest / "HEAD").write_text(head + "\n")
    (dest / "config").write_text(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"
    )
    (dest / "description").write_text(f"govc repository {repo_id}\n")
    return count


def _reachable(vc: VersionControl, txn: Txn, repo_id: str, tips: list[str]) -> Iterator[PackObject]:
    """Every object reachable from `tips` (of any kind), each once, newest history first,
    with the path a tree or blob was found at (the pack writer's hint for deltas)."""
    seen: set[bytes] = set()
    store = txn.objects
    commits: list[str] = []
    for tip in tips:
        oid = bytes.fromhex(tip)
        while oid not in seen:  # peel tags, yielding each tag object
            info = store.info(repo_id, oid)
            kind = info.kind if info is not None else COMMIT  # absent: NotFound below
            if kind == TAG:
                seen.add(oid)
                content = store.read(repo_id, oid, TAG)
                yield PackObject(TAG, oid, content)
                oid = bytes.fromhex(Tag.decode(content).object)
            elif kind == COMMIT:
                commits.append(oid.hex())
                break
            elif kind == TREE:
                yield from _tree_objects(txn, repo_id, oid, "", seen)
                break
            else:
                seen.add(oid)
                yield PackObject(kind, oid, store.read(repo_id, oid, kind))
                break
    if not commits:
        return
    for commit_id, commit in vc.walk(txn, repo_id, commits):
        oid = bytes.fromhex(commit_id)
        if oid in seen:
            continue
        seen.add(oid)
        yield PackObject(COMMIT, oid, vc.objects.read_kind(txn, repo_id, oid, COMMIT))
        yield from _tree_objects(txn, repo_id, bytes.fromhex(commit.tree), "", seen)


def _tree_objects(
    txn: Txn, repo_id: str, root: bytes, root_path: str, seen: set[bytes]
) -> Iterator[PackObject]:
    store = txn.objects
    stack = [(root, root_path)]
    while stack:
        tree_oid, path = stack.pop()
        if tree_oid in seen:
            continue
        seen.add(tree_oid)
        content = store.read(repo_id, tree_oid, TREE)
        yield PackObject(TREE, tree_oid, content, path)
        for mode, name, child in decode_tree(content):
            child_path = f"{path}/{name}" if path else name
            if mode == DIR_MODE:
                stack.append((child, child_path))
            elif child not in seen and mode != GITLINK:
                seen.add(child)
                yield PackObject(BLOB, child, store.read(repo_id, child, BLOB), child_path)


@dataclass
class ImportResult:
    objects: int
    notes: list[str] = field(default_factory=list)  # what was kept differently, and why


def import_repository(db: Database, vc: VersionControl, source: Path, repo_id: str) -> ImportResult:
    """Create `repo_id` from the git repository at `source`: every object, every ref, HEAD."""
    git_dir = _git_dir(source)
    if db.read(None, lambda txn: txn.repos.exists(repo_id)):
        raise AlreadyExists(f"repository {repo_id!r} already exists")
    refs, notes = _import_refs(git_dir)
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
    head = _git(git_dir, "symbolic-ref", "-q", "HEAD", check=False).strip()
    if not head:
        head = _git(git_dir, "rev-parse", "-q", "--verify", "HEAD", check=False).strip()
    info = db.registry.new_info(repo_id, "", f"imported from {source.name}", {})

    def create(txn: Txn) -> None:
        db.registry.create(txn, info)
        for ref, target in refs.items():
            txn.refs.put(repo_id, ref, target)
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
    return ImportResult(count, notes)


def _import_refs(git_dir: Path) -> tuple[dict[str, str], list[str]]:
    """The refs to create (name -> object id) and notes on what was kept differently;
    FailedPrecondition naming every ref that cannot be kept."""
    listing = _git(git_dir, "for-each-ref", "--format=%(objectname) %(refname) %(symref)")
    refs: dict[str, str] = {}
    notes: list[str] = []
    refused: list[str] = []
    for line in listing.splitlines():
        target, ref, symref = line.split(" ", 2)  # symref is "" for an ordinary ref
        if ref.startswith(REMOTES):
            if symref:
                notes.append(f"{ref} is an alias of {symref}; not kept as a branch")
                continue
            name = HEADS + ref.removeprefix(REMOTES)
            notes.append(f"{ref} imported as branch {name.removeprefix(HEADS)}")
        elif ref.startswith((HEADS, TAGS)) and not symref:
            name = ref
        else:
            refused.append(f"{ref} (govc keeps branches, tags and remote-tracking branches)")
            continue
        try:
            validate_branch_name(name.split("/", 2)[2], "ref")
        except GovcError as exc:
            refused.append(f"{ref} ({exc.message})")
            continue
        if name in refs:
            refused.append(f"{ref} (its branch name {name} is taken by another ref)")
            continue
        refs[name] = target
    names = set(refs)
    for name in sorted(names):
        parts = name.split("/")
        for i in range(3, len(parts)):
            if "/".join(parts[:i]) in names:
                refused.append(f"{name} (a ref of that name is also a directory of {name})")
    if refused:
        raise FailedPrecondition("cannot import refs govc cannot keep: " + "; ".join(refused))
    return refs, notes


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
    """(kind, content) of every object in the repository, via git itself."""
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
            if kind in (BLOB, TREE, COMMIT, TAG):
                yield kind, content
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise FailedPrecondition(f"git cat-file failed reading {git_dir}")
