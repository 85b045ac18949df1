"""Export to and import from real git: fsck-clean, same history, identical ids."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from generated.govc import GetCommitResponse
from govc.client import GovcClient
from govc.server import GovcServer
from tests.gitoracle import Git
from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def govc_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "govc.cli", *args], cwd=ROOT, capture_output=True, text=True
    )


async def build_history(c: GovcClient, repo: str) -> None:
    await c.create_repository(repo)
    await c.add_file(repo, "README.md", b"# r\n")
    await c.add_file(repo, "src/a/b.py", b"b = 1\n")
    # Names close to .git that are not .git on any file system (fsck --strict accepts them).
    for near in (".gitignore", ".github/ci.yml", "git~10/x", "notes/.git.bak", "x/.git-y"):
        await c.add_file(repo, near, b"near\n")
    await c.commit(repo, "one", author="Ada <ada@example.com>")
    await c.create_branch(repo, "feature")
    await c.add_file(repo, "src/main.py", b"main\n")
    await c.commit(repo, "two", author="Bob Builder <bob@example.com>")
    await c.checkout_branch(repo, "feature")
    await c.add_file(repo, "src/a/c.py", b"c = 2\n")
    await c.add_file(repo, "bin.dat", bytes(range(256)))
    await c.commit(repo, "feature: add c")
    await c.checkout_branch(repo, "main")
    merged = await c.merge_branch(repo, "feature")
    assert not merged.conflicts
    await c.remove_file(repo, "README.md")
    await c.commit(repo, "drop readme\n\nwith a body")


def git_log(git_dir: Path) -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(git_dir), "log", "--format=%H %P|%an <%ae>|%at|%s", "--all"],
        check=True,
        capture_output=True,
        text=True,
    )
    return sorted(out.stdout.strip().splitlines())


async def test_export_passes_fsck_and_matches_history(
    tmp_path: Path, server: GovcServer, client: GovcClient
) -> None:
    await build_history(client, "exp")
    dest = tmp_path / "exp.git"
    # The server keeps running on the data dir: export is a second process beside it.
    result = govc_cli("export", "exp", str(dest), "--data-dir", server.storage.config.path)  # type: ignore[union-attr]
    assert result.returncode == 0, result.stderr
    fsck = subprocess.run(
        ["git", "--git-dir", str(dest), "fsck", "--strict"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    log = await client.list_commits("exp")

    def line(x: GetCommitResponse) -> str:
        author = x.author if "<" in x.author else f"{x.author} <>"
        parents = " ".join(x.parent_hashes)  # git prints "%H %P" with a trailing space for roots
        when = int(x.timestamp.timestamp()) if x.timestamp else 0
        return f"{x.hash} {parents}|{author}|{when}|{x.message.splitlines()[0]}"

    ours = sorted(line(x) for x in log.commits)
    assert ours == git_log(dest)
    branches = subprocess.run(
        ["git", "--git-dir", str(dest), "for-each-ref", "--format=%(refname) %(objectname)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    listing = await client.list_branches("exp")
    assert sorted(filter(None, branches)) == sorted(
        f"refs/heads/{b.name} {b.commit_hash}" for b in listing.branches
    )
    head = subprocess.run(
        ["git", "--git-dir", str(dest), "symbolic-ref", "HEAD"], capture_output=True, text=True
    )
    assert head.stdout.strip() == "refs/heads/main"
    # A clone checks out the same files.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(dest), str(clone)], check=True)
    assert (clone / "src/a/c.py").read_bytes() == b"c = 2\n" and not (clone / "README.md").exists()


async def test_export_errors(tmp_path: Path, server: GovcServer) -> None:
    data_dir = server.storage.config.path  # type: ignore[union-attr]
    missing = govc_cli("export", "nope", str(tmp_path / "x"), "--data-dir", data_dir)
    assert missing.returncode == 1 and "nope" in missing.stderr
    bad = govc_cli("export", "bad id", str(tmp_path / "x"), "--data-dir", data_dir)
    assert bad.returncode == 1 and "REPO_ID" in bad.stderr


def make_git_repo(path: Path) -> Git:
    git = Git(path)
    t = 1_690_000_000
    git.write("a.txt", b"a\n")
    git.write("dir/sub/x.txt", b"x\n")
    git.run("add", "-A")
    git.run("commit", "-q", "-m", "root", when=t)
    git.run("checkout", "-q", "-b", "topic")
    git.write("dir/sub/x.txt", b"x topic\n")
    git.run("commit", "-q", "-am", "topic change", when=t + 10)
    git.run("checkout", "-q", "main")
    git.write("a.txt", b"a main\n")
    git.run("commit", "-q", "-am", "main change", when=t + 20)
    git.run("merge", "-q", "--no-ff", "topic", "-m", "merge topic", when=t + 30)
    git.write("exec.sh", b"#!/bin/sh\n")
    (path / "exec.sh").chmod(0o755)
    git.run("add", "exec.sh")
    git.run("commit", "-q", "-m", "executable", when=t + 40)
    return git


async def test_import_while_server_runs_and_round_trip(tmp_path: Path) -> None:
    source = make_git_repo(tmp_path / "src")
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir) as server:
        result = govc_cli("import", str(source.path), "imported", "--data-dir", str(data_dir))
        assert result.returncode == 0, result.stderr
        async with GovcClient(server.target) as c:
            # The running server sees the repository the other process created.
            assert (await c.get_repository("imported")).id == "imported"
            log = await c.list_commits("imported")
            git_ids = source.run("log", "--format=%H", "--all").split()
            assert sorted(x.hash for x in log.commits) == sorted(git_ids)
            merge = next(x for x in log.commits if x.message == "merge topic")
            assert len(merge.parent_hashes) == 2
            branches = {b.name: b.commit_hash for b in (await c.list_branches("imported")).branches}
            assert branches == {
                "main": source.run("rev-parse", "main").strip(),
                "topic": source.run("rev-parse", "topic").strip(),
            }
            assert (await c.status("imported")).status_entries == []
            assert (await c.read_file("imported", "dir/sub/x.txt")).content == b"x topic\n"
            # Work continues on top of the imported history.
            await c.add_file("imported", "new.txt", b"new\n")
            await c.commit("imported", "after import")
        again = govc_cli("import", str(source.path), "imported", "--data-dir", str(data_dir))
        assert again.returncode == 1 and "already exists" in again.stderr
        notgit = govc_cli("import", str(tmp_path), "other", "--data-dir", str(data_dir))
        assert notgit.returncode == 1 and "not a git repository" in notgit.stderr
    dest = tmp_path / "out.git"
    result = govc_cli("export", "imported", str(dest), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    exported = subprocess.run(
        ["git", "--git-dir", str(dest), "log", "--format=%H", "main~1", "topic"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(exported) == sorted(source.run("log", "--format=%H", "--all").split())
    fsck = subprocess.run(
        ["git", "--git-dir", str(dest), "fsck", "--strict"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr


def test_failed_import_leaves_no_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import govc.core.gitio
    from govc.core.database import Database
    from govc.core.registry import Registry
    from govc.core.versioncontrol import VersionControl
    from govc.storage import Storage, StorageConfig

    source = make_git_repo(tmp_path / "src")

    def broken(git_dir: Path) -> Iterator[tuple[str, bytes]]:
        yield "blob", b"one\n"
        yield "blob", b"two\n"
        raise RuntimeError("git died")

    monkeypatch.setattr(govc.core.gitio, "_git_objects", broken)
    monkeypatch.setattr(govc.core.gitio, "IMPORT_BATCH_BYTES", 1)  # the first objects are committed
    storage = Storage(StorageConfig(path=str(tmp_path / "data"), durable=False))
    try:
        with pytest.raises(RuntimeError):
            govc.core.gitio.import_repository(
                Database(storage, Registry()), VersionControl(), source.path, "broken"
            )
        assert storage.stats()["objects"] == 0
        with storage.read() as txn:
            assert not txn.repos.exists("broken")
    finally:
        storage.close()
