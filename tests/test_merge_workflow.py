"""Merges as git makes them, through the RPCs: strategies, conflicts left for the client to
resolve (markers, UU status, the two-parent commit), AbortMerge, and renames; the real git
is the oracle for contents and for what an exported history looks like."""

import subprocess
from pathlib import Path

import pytest

from govc.client import GovcClient, GovcRpcError
from govc.server import GovcServer
from tests.gitoracle import Git, export_checked

REPO = "mw"
BASE = b"".join(b"line %d\n" % i for i in range(12))


def edit(text: bytes, line: int, new: bytes) -> bytes:
    lines = text.splitlines(keepends=True)
    lines[line] = new
    return b"".join(lines)


async def diverge(c: GovcClient, ours: bytes, theirs: bytes, path: str = "f.txt") -> None:
    """main and feature each change `path` from BASE; main is checked out."""
    await c.create_repository(REPO)
    await c.add_file(REPO, path, BASE)
    await c.add_file(REPO, "keep.txt", b"keep\n")
    await c.commit(REPO, "base")
    await c.create_branch(REPO, "feature")
    await c.add_file(REPO, path, ours)
    await c.commit(REPO, "ours")
    await c.checkout_branch(REPO, "feature")
    await c.add_file(REPO, path, theirs)
    await c.commit(REPO, "theirs")
    await c.checkout_branch(REPO, "main")


def git_merge(tmp_path: Path, ours: bytes, theirs: bytes, *options: str) -> tuple[int, bytes]:
    """What `git merge [options] feature` leaves in f.txt, and its exit code."""
    git = Git(tmp_path / "oracle")
    git.write("f.txt", BASE)
    git.run("add", "f.txt")
    git.run("commit", "-qm", "base")
    git.run("branch", "feature")
    git.write("f.txt", ours)
    git.run("commit", "-qam", "ours")
    git.run("checkout", "-q", "feature")
    git.write("f.txt", theirs)
    git.run("commit", "-qam", "theirs")
    git.run("checkout", "-q", "main")
    try:
        git.run("merge", "-q", "--no-edit", *options, "feature")
        code = 0
    except subprocess.CalledProcessError as exc:
        code = exc.returncode
    return code, (git.path / "f.txt").read_bytes()


OURS = edit(BASE, 5, b"ours five\n")
THEIRS = edit(edit(BASE, 5, b"theirs five\n"), 10, b"theirs ten\n")


async def test_conflict_detail_has_gits_markers(tmp_path: Path, client: GovcClient) -> None:
    await diverge(client, OURS, THEIRS)
    result = await client.merge_branch(REPO, "feature")
    assert result.conflicts and list(result.conflict_files) == ["f.txt"]
    [detail] = result.conflicts_detail
    code, expected = git_merge(tmp_path, OURS, THEIRS)
    assert code == 1
    # git labels our side HEAD when merging into the checked-out branch; govc names branches.
    assert detail.merged == expected.replace(b"<<<<<<< HEAD", b"<<<<<<< main")
    assert (detail.path, detail.ours_hash != detail.theirs_hash) == ("f.txt", True)
    assert detail.base_hash and detail.ours_hash and detail.theirs_hash
    # Without leave_conflicts nothing changed.
    assert (await client.read_file(REPO, "f.txt")).content == OURS
    assert (await client.status(REPO)).status_entries == []


@pytest.mark.parametrize(("strategy", "option"), [("ours", "-Xours"), ("theirs", "-Xtheirs")])
async def test_strategies_agree_with_git(
    tmp_path: Path, client: GovcClient, strategy: str, option: str
) -> None:
    await diverge(client, OURS, THEIRS)
    result = await client.merge_branch(REPO, "feature", strategy=strategy)
    code, expected = git_merge(tmp_path, OURS, THEIRS, option)
    assert code == 0 and not result.conflicts
    assert (await client.read_file(REPO, "f.txt")).content == expected
    commit = await client.get_commit(REPO, result.commit_hash)
    assert len(commit.parent_hashes) == 2


async def test_union_strategy_keeps_both_sides(client: GovcClient) -> None:
    await diverge(client, OURS, THEIRS)
    result = await client.merge_branch(REPO, "feature", strategy="union")
    assert not result.conflicts
    merged = (await client.read_file(REPO, "f.txt")).content
    assert b"ours five\n" in merged and b"theirs five\n" in merged and b"<<<" not in merged


async def test_unknown_strategy_is_invalid(client: GovcClient) -> None:
    await diverge(client, OURS, THEIRS)
    with pytest.raises(GovcRpcError) as info:
        await client.merge_branch(REPO, "feature", strategy="octopus")
    assert info.value.status.name == "INVALID_ARGUMENT" and "strategy" in info.value.message


async def test_leave_conflicts_resolve_commit_export(
    tmp_path: Path, server: GovcServer, client: GovcClient
) -> None:
    c = client
    await diverge(c, OURS, THEIRS)
    main_tip = (await c.list_branches(REPO)).branches[1].commit_hash
    left = await c.merge_branch(REPO, "feature", leave_conflicts=True)
    assert left.conflicts and not left.commit_hash
    status = await c.status(REPO)
    assert "UU f.txt" in status.status_entries
    worktree = (await c.read_file(REPO, "f.txt")).content
    assert worktree == left.conflicts_detail[0].merged and b"=======\n" in worktree
    # Committing, checking out or merging again before the conflict is resolved: refused.
    for attempt in (
        c.commit(REPO, "too early"),
        c.checkout_branch(REPO, "feature"),
        c.merge_branch(REPO, "feature"),
    ):
        with pytest.raises(GovcRpcError) as info:
            await attempt
        assert info.value.status.name == "FAILED_PRECONDITION"
    with pytest.raises(GovcRpcError) as info:
        await c.commit(REPO, "too early")
    assert "f.txt" in info.value.message
    # Resolve, then commit: the merge commit has both parents.
    resolved = edit(edit(BASE, 5, b"both five\n"), 10, b"theirs ten\n")
    await c.add_file(REPO, "f.txt", resolved)
    assert "UU f.txt" not in (await c.status(REPO)).status_entries
    made = await c.commit(REPO, "Merge branch 'feature'")
    commit = await c.get_commit(REPO, made.hash)
    feature_tip = (await c.list_branches(REPO)).branches[0].commit_hash
    assert list(commit.parent_hashes) == [main_tip, feature_tip]
    assert (await c.read_file(REPO, "f.txt", commit=made.hash)).content == resolved
    # The history git sees: fsck-clean, a merge in the graph.
    dest = tmp_path / "out.git"
    export_checked(server.storage.config.path, REPO, dest)  # type: ignore[union-attr]
    git = ["git", "--git-dir", str(dest)]
    graph = subprocess.run(
        [*git, "log", "--graph", "--format=%s", "main"], capture_output=True, text=True, check=True
    ).stdout
    assert graph.splitlines()[0] == "*   Merge branch 'feature'"
    assert "|\\" in graph.splitlines()[1]


async def test_abort_merge_restores_exactly(client: GovcClient) -> None:
    c = client
    await diverge(c, OURS, THEIRS)
    await c.checkout_branch(REPO, "feature")
    await c.add_file(REPO, "new-on-feature.txt", b"new\n")
    await c.commit(REPO, "feature adds a file")
    await c.checkout_branch(REPO, "main")
    await c.write_file(REPO, "scratch.txt", b"untracked, unrelated\n")
    await c.add_file(REPO, "keep.txt", b"keep, staged edit\n")
    before_status = (await c.status(REPO)).status_entries
    before_files = {p: (await c.read_file(REPO, p)).content for p in ("f.txt", "keep.txt")}
    before_branches = (await c.list_branches(REPO)).branches
    left = await c.merge_branch(REPO, "feature", leave_conflicts=True)
    assert left.conflicts
    assert (await c.read_file(REPO, "new-on-feature.txt")).content == b"new\n"
    await c.abort_merge(REPO)
    assert (await c.status(REPO)).status_entries == before_status
    for path, content in before_files.items():
        assert (await c.read_file(REPO, path)).content == content
    assert (await c.read_file(REPO, "scratch.txt")).content == b"untracked, unrelated\n"
    with pytest.raises(GovcRpcError) as info:
        await c.read_file(REPO, "new-on-feature.txt")
    assert info.value.status.name == "NOT_FOUND"
    assert (await c.list_branches(REPO)).branches == before_branches
    with pytest.raises(GovcRpcError) as info:
        await c.abort_merge(REPO)
    assert info.value.status.name == "FAILED_PRECONDITION"


async def test_leave_conflicts_refuses_local_changes_to_conflicted_files(
    client: GovcClient,
) -> None:
    await diverge(client, OURS, THEIRS)
    await client.write_file(REPO, "f.txt", OURS + b"local edit\n")
    with pytest.raises(GovcRpcError) as info:
        await client.merge_branch(REPO, "feature", leave_conflicts=True)
    assert info.value.status.name == "FAILED_PRECONDITION" and "f.txt" in info.value.message
    assert (await client.read_file(REPO, "f.txt")).content == OURS + b"local edit\n"


async def test_conflict_kinds_in_status(client: GovcClient) -> None:
    c = client
    await c.create_repository(REPO)
    await c.add_file(REPO, "gone-here.txt", BASE)
    await c.add_file(REPO, "gone-there.txt", BASE)
    await c.commit(REPO, "base")
    await c.create_branch(REPO, "feature")
    await c.remove_file(REPO, "gone-here.txt")
    await c.add_file(REPO, "gone-there.txt", edit(BASE, 1, b"ours\n"))
    await c.add_file(REPO, "both.txt", b"ours\n")
    await c.commit(REPO, "ours")
    await c.checkout_branch(REPO, "feature")
    await c.add_file(REPO, "gone-here.txt", edit(BASE, 1, b"theirs\n"))
    await c.remove_file(REPO, "gone-there.txt")
    await c.add_file(REPO, "both.txt", b"theirs\n")
    await c.commit(REPO, "theirs")
    await c.checkout_branch(REPO, "main")
    left = await c.merge_branch(REPO, "feature", leave_conflicts=True)
    assert sorted(left.conflict_files) == ["both.txt", "gone-here.txt", "gone-there.txt"]
    entries = (await c.status(REPO)).status_entries
    assert {"AA both.txt", "DU gone-here.txt", "UD gone-there.txt"} <= set(entries)
    # Resolving: git rm of one, git add of the others.
    await c.remove_file(REPO, "gone-here.txt")
    await c.add_file(REPO, "gone-there.txt", edit(BASE, 1, b"ours\n"))
    await c.add_file(REPO, "both.txt", b"both\n")
    made = await c.commit(REPO, "merged")
    assert len((await c.get_commit(REPO, made.hash)).parent_hashes) == 2


async def test_rename_on_one_side_edit_on_the_other_merges(client: GovcClient) -> None:
    c = client
    await c.create_repository(REPO)
    await c.add_file(REPO, "old/name.py", BASE)
    await c.commit(REPO, "base")
    await c.create_branch(REPO, "feature")
    await c.move_file(REPO, "old/name.py", "new/name.py")
    await c.commit(REPO, "move")
    await c.checkout_branch(REPO, "feature")
    await c.add_file(REPO, "old/name.py", edit(BASE, 3, b"edited\n"))
    await c.commit(REPO, "edit")
    await c.checkout_branch(REPO, "main")
    result = await c.merge_branch(REPO, "feature")
    assert not result.conflicts
    assert (await c.read_file(REPO, "new/name.py")).content == edit(BASE, 3, b"edited\n")
    with pytest.raises(GovcRpcError):
        await c.read_file(REPO, "old/name.py")


async def test_status_shows_staged_renames(client: GovcClient) -> None:
    c = client
    await c.create_repository(REPO)
    await c.add_file(REPO, "a.txt", BASE)
    await c.add_file(REPO, "b.txt", b"short\n")
    await c.commit(REPO, "base")
    await c.move_file(REPO, "a.txt", "moved/a.txt")
    await c.remove_file(REPO, "b.txt")
    await c.add_file(REPO, "c.txt", b"entirely different\n")
    entries = (await c.status(REPO)).status_entries
    assert entries == ["D  b.txt", "A  c.txt", "R  a.txt -> moved/a.txt"]


async def test_remove_file_of_an_unstaged_file(client: GovcClient) -> None:
    await client.create_repository(REPO)
    await client.write_file(REPO, "draft.txt", b"never staged\n")
    await client.remove_file(REPO, "draft.txt")
    assert (await client.status(REPO)).status_entries == []
    with pytest.raises(GovcRpcError) as info:
        await client.remove_file(REPO, "draft.txt")
    assert info.value.status.name == "NOT_FOUND"


def test_a_file_git_cannot_merge_is_a_clear_error() -> None:
    """At 65 distinct lines in one bucket of its histogram, xdiff gives up and `git merge`
    fails ("failure to merge"); govc refuses the merge naming the file, never INTERNAL."""
    from govc.core.gitformat import blob_id
    from govc.core.merge import merge_trees
    from govc.errors import FailedPrecondition

    unique = [b"u%d\n" % i for i in range(8400)]
    same_bucket = [v for v in range(8400) if (v + (v >> 7)) & 127 == 5][:65]
    base = b"".join(unique + [unique[v] for v in same_bucket])
    ours, theirs = b"".join([*unique, b"x\n"]), b"t\n" + base
    blobs = {bytes.fromhex(blob_id(data)): data for data in (base, ours, theirs)}

    def version(data: bytes) -> dict[str, tuple[int, bytes]]:
        return {"big.txt": (0o100644, bytes.fromhex(blob_id(data)))}

    with pytest.raises(FailedPrecondition, match=r"big\.txt"):
        merge_trees(version(base), version(ours), version(theirs), blobs.__getitem__, lambda d: b"")
