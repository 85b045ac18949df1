"""Merges: line-level unit cases, and whole merges through the RPCs."""

import pytest

from govc.client import GovcClient
from govc.core.xdiff import merge_file

BASE = b"".join(b"line %d\n" % i for i in range(30))


def edit(text: bytes, line: int, new: bytes) -> bytes:
    lines = text.splitlines(keepends=True)
    lines[line] = new
    return b"".join(lines)


def merge_lines(base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """git's merge of three texts (as `git merge` makes it), or None when it conflicts."""
    result = merge_file(base, ours, theirs)
    return None if result.conflicts else result.content


class TestMergeLines:
    def test_non_overlapping_edits_merge(self) -> None:
        ours, theirs = edit(BASE, 2, b"ours\n"), edit(BASE, 20, b"theirs\n")
        assert merge_lines(BASE, ours, theirs) == edit(edit(BASE, 2, b"ours\n"), 20, b"theirs\n")

    def test_overlapping_edits_conflict(self) -> None:
        assert merge_lines(BASE, edit(BASE, 5, b"a\n"), edit(BASE, 5, b"b\n")) is None

    def test_adjacent_edits_conflict_like_git(self) -> None:
        assert merge_lines(BASE, edit(BASE, 5, b"a\n"), edit(BASE, 6, b"b\n")) is None

    def test_identical_edits_merge(self) -> None:
        ours = edit(BASE, 5, b"same\n")
        assert merge_lines(BASE, ours, ours) == ours

    def test_insertions_at_both_ends(self) -> None:
        assert merge_lines(BASE, b"top\n" + BASE, BASE + b"end\n") == b"top\n" + BASE + b"end\n"

    def test_both_append_differently_conflicts(self) -> None:
        assert merge_lines(BASE, BASE + b"x\n", BASE + b"y\n") is None

    def test_deletion_and_distant_edit(self) -> None:
        lines = BASE.splitlines(keepends=True)
        ours = b"".join(lines[:3] + lines[6:])
        theirs = edit(BASE, 25, b"theirs\n")
        merged = merge_lines(BASE, ours, theirs)
        assert merged == b"".join(lines[:3] + lines[6:25]) + b"theirs\n" + b"".join(lines[26:])

    def test_lines_end_at_newlines_only(self) -> None:
        # For git a lone \r does not end a line: this file is one line, changed on both sides.
        base = b"a\rb\rc\r\n"
        assert merge_lines(base, b"A\rb\rc\r\n", b"a\rb\rC\r\n") is None
        # CRLF lines are lines.
        crlf = b"a\r\nb\r\nc\r\nd\r\ne\r\n"
        ours, theirs = crlf.replace(b"a\r", b"A\r"), crlf.replace(b"e\r", b"E\r")
        assert merge_lines(crlf, ours, theirs) == b"A\r\nb\r\nc\r\nd\r\nE\r\n"
        # No newline at the end on either side.
        assert merge_lines(b"x\ny", b"X\ny", b"x\ny") == b"X\ny"

    def test_one_side_unchanged(self) -> None:
        ours = edit(BASE, 9, b"x\n")
        assert merge_lines(BASE, ours, BASE) == ours
        assert merge_lines(BASE, BASE, ours) == ours


REPO = "m"


async def setup_branches(c: GovcClient, main_text: bytes, feature_text: bytes) -> None:
    await c.create_repository(REPO)
    await c.add_file(REPO, "f.txt", BASE)
    await c.add_file(REPO, "other.txt", b"other\n")
    await c.commit(REPO, "base")
    await c.create_branch(REPO, "feature")
    await c.checkout_branch(REPO, "feature")
    await c.add_file(REPO, "f.txt", feature_text)
    await c.commit(REPO, "feature edit")
    await c.checkout_branch(REPO, "main")
    if main_text != BASE:
        await c.add_file(REPO, "f.txt", main_text)
        await c.commit(REPO, "main edit")


async def test_fast_forward(client: GovcClient) -> None:
    await setup_branches(client, BASE, edit(BASE, 1, b"ff\n"))
    feature_tip = (await client.list_branches(REPO)).branches[0].commit_hash
    result = await client.merge_branch(REPO, "feature")
    assert not result.conflicts and result.commit_hash == feature_tip
    branches = {b.name: b.commit_hash for b in (await client.list_branches(REPO)).branches}
    assert branches["main"] == feature_tip
    assert (await client.read_file(REPO, "f.txt")).content == edit(BASE, 1, b"ff\n")
    assert (await client.status(REPO)).status_entries == []
    # Merging again: already up to date, nothing changes.
    again = await client.merge_branch(REPO, "feature")
    assert again.commit_hash == feature_tip and not again.conflicts


async def test_clean_three_way_and_parent_order(client: GovcClient) -> None:
    await setup_branches(client, edit(BASE, 2, b"main\n"), edit(BASE, 25, b"feature\n"))
    branches = {b.name: b.commit_hash for b in (await client.list_branches(REPO)).branches}
    result = await client.merge_branch(REPO, "feature")
    assert not result.conflicts and result.conflict_files == []
    merge = await client.get_commit(REPO, result.commit_hash)
    assert merge.parent_hashes == [branches["main"], branches["feature"]]
    assert merge.message == "Merge branch 'feature'"
    content = (await client.read_file(REPO, "f.txt")).content
    assert content == edit(edit(BASE, 2, b"main\n"), 25, b"feature\n")
    assert (await client.read_file(REPO, "f.txt", commit="HEAD")).content == content
    assert (await client.status(REPO)).status_entries == []
    assert (await client.list_commits(REPO)).commits[0].hash == result.commit_hash


async def test_overlapping_edits_conflict_and_change_nothing(client: GovcClient) -> None:
    await setup_branches(client, edit(BASE, 5, b"main\n"), edit(BASE, 5, b"feature\n"))
    await client.write_file(REPO, "untracked.txt", b"keep me\n")
    before_branches = await client.list_branches(REPO)
    before_status = await client.status(REPO)
    before_log = await client.list_commits(REPO)
    result = await client.merge_branch(REPO, "feature")
    assert result.conflicts and result.conflict_files == ["f.txt"] and result.commit_hash == ""
    assert await client.list_branches(REPO) == before_branches
    assert await client.status(REPO) == before_status
    assert (await client.list_commits(REPO)).total == before_log.total
    assert (await client.read_file(REPO, "f.txt")).content == edit(BASE, 5, b"main\n")


async def test_delete_vs_modify_conflicts(client: GovcClient) -> None:
    await client.create_repository(REPO)
    await client.add_file(REPO, "f.txt", BASE)
    await client.add_file(REPO, "g.txt", b"g\n")
    await client.commit(REPO, "base")
    await client.create_branch(REPO, "feature")
    await client.remove_file(REPO, "f.txt")
    await client.commit(REPO, "delete f")
    await client.checkout_branch(REPO, "feature")
    await client.add_file(REPO, "f.txt", edit(BASE, 3, b"modified\n"))
    await client.add_file(REPO, "both.txt", b"feature version\n")
    await client.commit(REPO, "modify f")
    await client.checkout_branch(REPO, "main")
    await client.add_file(REPO, "both.txt", b"main version\n")
    await client.commit(REPO, "add both")
    result = await client.merge_branch(REPO, "feature")
    assert result.conflicts and result.conflict_files == ["both.txt", "f.txt"]


async def test_binary_changed_on_both_sides_conflicts(client: GovcClient) -> None:
    await client.create_repository(REPO)
    await client.add_file(REPO, "bin", b"\0\1\2" * 100)
    await client.commit(REPO, "base")
    await client.create_branch(REPO, "feature")
    await client.add_file(REPO, "bin", b"\0\1\3" * 100)
    await client.commit(REPO, "main bin")
    await client.checkout_branch(REPO, "feature")
    await client.add_file(REPO, "bin", b"\0\1\4" * 100)
    await client.commit(REPO, "feature bin")
    result = await client.merge_branch(REPO, "main", target_branch="feature")
    assert result.conflicts and result.conflict_files == ["bin"]


async def test_criss_cross_history_merges(client: GovcClient) -> None:
    c = client
    await c.create_repository(REPO)
    await c.add_file(REPO, "a.txt", BASE)
    await c.add_file(REPO, "b.txt", BASE)
    await c.commit(REPO, "base")
    await c.create_branch(REPO, "side")
    await c.add_file(REPO, "a.txt", edit(BASE, 1, b"main 1\n"))
    await c.commit(REPO, "main 1")
    await c.checkout_branch(REPO, "side")
    await c.add_file(REPO, "b.txt", edit(BASE, 1, b"side 1\n"))
    await c.commit(REPO, "side 1")
    # Cross merges: each branch merges the other's first commit.
    await c.create_branch(REPO, "side-snapshot")
    into_side = await c.merge_branch(REPO, "main", target_branch="side")
    assert not into_side.conflicts
    await c.checkout_branch(REPO, "main")
    into_main = await c.merge_branch(REPO, "side-snapshot", target_branch="main")
    assert not into_main.conflicts
    # Both branches move on, then merge again: two merge bases exist.
    await c.add_file(REPO, "a.txt", edit(edit(BASE, 1, b"main 1\n"), 20, b"main 20\n"))
    await c.commit(REPO, "main 20")
    await c.checkout_branch(REPO, "side")
    await c.add_file(REPO, "b.txt", edit(edit(BASE, 1, b"side 1\n"), 20, b"side 20\n"))
    await c.commit(REPO, "side 20")
    await c.checkout_branch(REPO, "main")
    final = await c.merge_branch(REPO, "side")
    assert not final.conflicts
    assert (await c.read_file(REPO, "a.txt")).content == edit(
        edit(BASE, 1, b"main 1\n"), 20, b"main 20\n"
    )
    assert (await c.read_file(REPO, "b.txt")).content == edit(
        edit(BASE, 1, b"side 1\n"), 20, b"side 20\n"
    )
    assert len((await c.get_commit(REPO, final.commit_hash)).parent_hashes) == 2


async def test_criss_cross_bases_that_disagree_merge_through_a_virtual_base(
    client: GovcClient,
) -> None:
    """Two lowest common ancestors that merge differently: git merges them into a virtual base
    ("a 2 c"), against which C's later revert of line 1 is C's change, so the merge is clean
    and keeps the revert (as `git merge` does with this history)."""
    c = client
    await c.create_repository(REPO)
    await c.add_file(REPO, "f", b"1\n2\n3\n")
    await c.commit(REPO, "base")
    await c.create_branch(REPO, "A")
    await c.create_branch(REPO, "C")
    await c.checkout_branch(REPO, "A")
    await c.add_file(REPO, "f", b"a\n2\n3\n")
    await c.commit(REPO, "A1")
    await c.checkout_branch(REPO, "C")
    await c.add_file(REPO, "f", b"1\n2\nc\n")
    await c.commit(REPO, "C1")
    await c.create_branch(REPO, "c1", "C")
    await c.create_branch(REPO, "a1", "A")
    await c.checkout_branch(REPO, "A")
    assert not (await c.merge_branch(REPO, "c1")).conflicts
    await c.checkout_branch(REPO, "C")
    assert not (await c.merge_branch(REPO, "a1")).conflicts
    await c.add_file(REPO, "f", b"1\n2\nc\n")  # C reverts line 1
    await c.commit(REPO, "C3")
    await c.checkout_branch(REPO, "A")
    final = await c.merge_branch(REPO, "C")
    assert not final.conflicts
    assert (await c.read_file(REPO, "f")).content == b"1\n2\nc\n"


async def test_merge_into_other_branch_leaves_work_tree(client: GovcClient) -> None:
    await setup_branches(client, edit(BASE, 2, b"main\n"), edit(BASE, 25, b"feature\n"))
    result = await client.merge_branch(REPO, "main", target_branch="feature")
    assert not result.conflicts
    assert (await client.status(REPO)).current_branch == "main"
    assert (await client.read_file(REPO, "f.txt")).content == edit(BASE, 2, b"main\n")
    merged = await client.read_file(REPO, "f.txt", commit="feature")
    assert merged.content == edit(edit(BASE, 2, b"main\n"), 25, b"feature\n")


@pytest.mark.parametrize(
    ("source", "target", "status"),
    [
        ("nope", "", "NOT_FOUND"),
        ("feature", "nope", "NOT_FOUND"),
        ("main", "main", "INVALID_ARGUMENT"),
        ("bad..name", "", "INVALID_ARGUMENT"),
    ],
)
async def test_merge_errors(client: GovcClient, source: str, target: str, status: str) -> None:
    from govc.client import GovcRpcError

    await setup_branches(client, BASE, edit(BASE, 1, b"x\n"))
    with pytest.raises(GovcRpcError) as info:
        await client.merge_branch(REPO, source, target)
    assert info.value.status.name == status
