"""Tags (lightweight and annotated, byte-exact with git), revisions naming tags, the SQL tags
table, and import/export keeping every ref: the real git is the oracle."""

import subprocess
from pathlib import Path

import pytest

from govc.client import GovcClient, GovcRpcError
from govc.server import GovcServer
from tests.conftest import Clock
from tests.gitoracle import Git, govc_cli

REPO = "tagged"


def git_out(git_dir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), *args], capture_output=True, text=True, check=True
    ).stdout


def refs_and_tags(git_dir: Path) -> tuple[str, dict[str, str]]:
    """`git for-each-ref` of every ref, and `git cat-file -p` of every tag object."""
    refs = git_out(git_dir, "for-each-ref", "--format=%(objectname) %(objecttype) %(refname)")
    tags = {
        line.split()[0]: git_out(git_dir, "cat-file", "-p", line.split()[0])
        for line in refs.splitlines()
        if line.split()[1] == "tag"
    }
    return refs, tags


async def two_commits(c: GovcClient) -> tuple[str, str]:
    await c.create_repository(REPO)
    await c.add_file(REPO, "a.txt", b"one\n")
    first = await c.commit(REPO, "first")
    await c.add_file(REPO, "a.txt", b"two\n")
    second = await c.commit(REPO, "second")
    return first.hash, second.hash


async def test_create_list_delete_and_resolve(client: GovcClient, clock: Clock) -> None:
    c = client
    first, second = await two_commits(c)
    light = await c.create_tag(REPO, "v1", first)
    assert (light.name, light.commit_hash, light.tag_hash, light.message) == ("v1", first, "", "")
    annotated = await c.create_tag(REPO, "release/2", "", "Release two\n\nnotes", "Rel <r@x>")
    assert annotated.commit_hash == second and len(annotated.tag_hash) == 40
    assert annotated.message == "Release two\n\nnotes" and annotated.tagger == "Rel <r@x>"
    assert int(annotated.timestamp.timestamp()) == int(clock.now)
    listed = (await c.list_tags(REPO)).tags
    assert [(t.name, t.commit_hash) for t in listed] == [("release/2", second), ("v1", first)]
    # Revisions name tags: ReadFile, GetCommit, CreateBranch.
    assert (await c.read_file(REPO, "a.txt", commit="v1")).content == b"one\n"
    assert (await c.get_commit(REPO, "release/2")).hash == second
    assert (await c.get_commit(REPO, "v1~0")).hash == first
    assert (await c.create_branch(REPO, "from-tag", "v1")).commit_hash == first
    for name, status in [("v1", "ALREADY_EXISTS"), ("bad..name", "INVALID_ARGUMENT")]:
        with pytest.raises(GovcRpcError) as info:
            await c.create_tag(REPO, name)
        assert info.value.status.name == status
    with pytest.raises(GovcRpcError) as info:
        await c.create_tag(REPO, "v9", "no-such-rev")
    assert info.value.status.name == "NOT_FOUND"
    await c.delete_tag(REPO, "v1")
    assert [t.name for t in (await c.list_tags(REPO)).tags] == ["release/2"]
    with pytest.raises(GovcRpcError) as info:
        await c.delete_tag(REPO, "v1")
    assert info.value.status.name == "NOT_FOUND"
    rows = await c.execute_sql(REPO, 'SELECT name, "commit", tag_hash, message FROM tags')
    assert [dict(r.fields) for r in rows.rows] == [
        {
            "name": "release/2",
            "commit": second,
            "tag_hash": annotated.tag_hash,
            "message": "Release two\n\nnotes",
        }
    ]


async def test_annotated_tag_is_byte_exact_with_git(
    tmp_path: Path, server: GovcServer, client: GovcClient, clock: Clock
) -> None:
    _, second = await two_commits(client)
    made = await client.create_tag(REPO, "v2.0", "", "Version 2.0\n", "Tess Tagger <tess@x>")
    dest = tmp_path / "out.git"
    data_dir = server.storage.config.path  # type: ignore[union-attr]
    result = govc_cli("export", REPO, str(dest), "--data-dir", data_dir)
    assert result.returncode == 0, result.stderr
    assert git_out(dest, "rev-parse", "v2.0^{commit}").strip() == second
    assert git_out(dest, "rev-parse", "v2.0").strip() == made.tag_hash
    # git tag -a with the same tagger and time writes the same object.
    git = Git(tmp_path / "oracle")
    git.run("fetch", "-q", "--no-tags", str(dest), "refs/heads/main:refs/remotes/src/main")
    git.run(
        "tag",
        "-a",
        "v2.0",
        "-m",
        "Version 2.0",
        second,
        when=int(clock.now),
        who=("Tess Tagger", "tess@x"),
    )
    assert git.run("rev-parse", "v2.0").strip() == made.tag_hash
    fsck = subprocess.run(["git", "--git-dir", str(dest), "fsck", "--strict"], capture_output=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def tagged_history(path: Path) -> Git:
    """Branches, lightweight and annotated tags (one of a tag, one of a blob), and commits
    reachable only from a tag."""
    git = Git(path)
    t = 1_690_000_000
    git.write("a.txt", b"a\n")
    git.run("add", "-A")
    git.run("commit", "-qm", "root", when=t)
    git.run("tag", "light-root")
    git.run("tag", "-a", "v0.1", "-m", "first release\n\nwith notes", when=t + 1)
    git.run("checkout", "-q", "-b", "topic")
    git.write("b.txt", b"b\n")
    git.run("add", "-A")
    git.run("commit", "-qm", "topic", when=t + 2)
    git.run("checkout", "-q", "--detach")
    git.write("c.txt", b"only reachable from a tag\n")
    git.run("add", "-A")
    git.run("commit", "-qm", "detached work", when=t + 3)
    git.run("tag", "-a", "orphan-tag", "-m", "keeps a commit alive", when=t + 4)
    git.run("tag", "-a", "tag-of-tag", "-m", "nested", "v0.1", when=t + 5)
    blob = git.run("hash-object", "-w", "c.txt").strip()
    git.run("tag", "blob-tag", blob)
    git.run("checkout", "-q", "main")
    return git


async def test_import_export_keeps_every_ref(tmp_path: Path, server: GovcServer) -> None:
    source = tagged_history(tmp_path / "src")
    bare = tmp_path / "src.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(source.path), str(bare)], check=True)
    data_dir = server.storage.config.path  # type: ignore[union-attr]
    imported = govc_cli("import", str(bare), "bare-copy", "--data-dir", data_dir)
    assert imported.returncode == 0, imported.stderr
    dest = tmp_path / "out.git"
    exported = govc_cli("export", "bare-copy", str(dest), "--data-dir", data_dir)
    assert exported.returncode == 0, exported.stderr
    assert refs_and_tags(dest) == refs_and_tags(bare)
    assert git_out(dest, "rev-list", "--all", "--objects") == git_out(
        bare, "rev-list", "--all", "--objects"
    )
    fsck = subprocess.run(["git", "--git-dir", str(dest), "fsck", "--strict"], capture_output=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert list(dest.glob("objects/pack/pack-*.pack")) and not list(dest.glob("objects/??/*"))


async def test_import_of_a_clone_keeps_remote_tracking_branches(
    tmp_path: Path, server: GovcServer, client: GovcClient
) -> None:
    source = tagged_history(tmp_path / "src")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(source.path), str(clone)], check=True)
    data_dir = server.storage.config.path  # type: ignore[union-attr]
    imported = govc_cli("import", str(clone), "from-clone", "--data-dir", data_dir)
    assert imported.returncode == 0, imported.stderr
    assert "refs/remotes/origin/topic imported as branch origin/topic" in imported.stdout
    assert "refs/remotes/origin/HEAD is an alias" in imported.stdout
    branches = {b.name for b in (await client.list_branches("from-clone")).branches}
    assert branches == {"main", "origin/main", "origin/topic"}
    tags = {t.name for t in (await client.list_tags("from-clone")).tags}
    assert tags == {"light-root", "v0.1", "orphan-tag", "tag-of-tag", "blob-tag"}


async def test_import_refuses_refs_it_cannot_keep(tmp_path: Path, server: GovcServer) -> None:
    source = tagged_history(tmp_path / "src")
    source.run("notes", "add", "-m", "a note", "main")
    data_dir = server.storage.config.path  # type: ignore[union-attr]
    refused = govc_cli("import", str(source.path), "with-notes", "--data-dir", data_dir)
    assert refused.returncode == 1 and "refs/notes/commits" in refused.stderr
    listed = govc_cli("export", "with-notes", str(tmp_path / "x"), "--data-dir", data_dir)
    assert listed.returncode == 1  # nothing was created
