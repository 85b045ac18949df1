"""Files, commits, branches and status over a real server: semantics and every error."""

import pytest
from grpclib.const import Status

from govc.client import GovcClient, GovcRpcError
from govc.core.gitformat import blob_id
from govc.server import GovcServer
from tests.conftest import Clock

R = "vc"


async def error(coro: object) -> GovcRpcError:
    with pytest.raises(GovcRpcError) as info:
        await coro  # type: ignore[misc]
    return info.value


@pytest.fixture
async def c(client: GovcClient) -> GovcClient:
    await client.create_repository(R)
    return client


BAD_PATHS = [
    ("", "required"),
    ("/etc/passwd", "relative"),
    ("a/../b", "segment"),
    ("../up", "segment"),
    ("./here", "segment"),
    ("a//b", "segment"),
    ("dir/", "segment"),
    (".git/config", ".git"),
    ("sub/.git/x", ".git"),
    ("sub/.GIT", ".git"),
    # What git's fsck --strict reports as .git (HFS+ and NTFS spellings of it).
    ("x/.git./y", ".git"),
    ("x/.git /y", ".git"),
    ("git~1/y", ".git"),
    ("x/GIT~1", ".git"),
    ("x/.git::$INDEX_ALLOCATION/y", ".git"),
    ("x/.g\u200cit/y", ".git"),
    ("x/\ufeff.GIT", ".git"),
    ("nul\0byte", "NUL"),
    ("x" * 4097, "4096"),
    ("long/" + "y" * 256, "255"),
]


@pytest.mark.parametrize(
    ("path", "why"), BAD_PATHS, ids=[w + str(i) for i, (_, w) in enumerate(BAD_PATHS)]
)
async def test_bad_paths_rejected_and_nothing_written(c: GovcClient, path: str, why: str) -> None:
    for call in (c.add_file(R, path, b"x"), c.write_file(R, path, b"x")):
        err = await error(call)
        assert (
            err.status == Status.INVALID_ARGUMENT and "path" in err.message and why in err.message
        )
    err = await error(c.move_file(R, "a", path) if path else c.move_file(R, path, "a"))
    assert err.status == Status.INVALID_ARGUMENT
    err = await error(c.commit(R, "m", files=[path]))
    assert err.status == Status.INVALID_ARGUMENT and "files" in err.message
    status = await c.status(R)
    assert status.status_entries == []


async def test_add_write_read_status(c: GovcClient, clock: Clock) -> None:
    added = await c.add_file(R, "a.txt", b"hello\n")
    assert added.hash == blob_id(b"hello\n") and added.size == 6
    written = await c.write_file(R, "dir/b.txt", b"b\n")
    assert written.hash == blob_id(b"b\n")
    status = await c.status(R)
    assert status.status_entries == ["A  a.txt", "?? dir/b.txt"]
    assert (status.staged_files, status.unstaged_files, status.untracked_files) == (1, 0, 1)
    assert status.current_branch == "main" and status.repository_id == R
    await c.commit(R, "first")
    await c.write_file(R, "a.txt", b"changed\n")
    await c.add_file(R, "c.txt", b"c\n")
    await c.write_file(R, "c.txt", b"c2\n")
    status = await c.status(R)
    assert status.status_entries == [" M a.txt", "AM c.txt", "?? dir/b.txt"]
    assert (status.staged_files, status.unstaged_files, status.untracked_files) == (1, 2, 1)
    # ReadFile: work tree first, then the index, then HEAD.
    assert (await c.read_file(R, "a.txt")).content == b"changed\n"
    assert (await c.read_file(R, "a.txt", commit="HEAD")).content == b"hello\n"
    await c.remove_file(R, "a.txt")
    assert (await c.status(R)).status_entries == ["D  a.txt", "AM c.txt", "?? dir/b.txt"]
    # Gone from the work tree and the index, so ReadFile falls back to HEAD (API.md's order).
    assert (await c.read_file(R, "a.txt")).content == b"hello\n"
    err = await error(c.read_file(R, "never.txt"))
    assert err.status == Status.NOT_FOUND and "never.txt" in err.message


async def test_last_modified(c: GovcClient, clock: Clock) -> None:
    clock.now = 1_700_000_000
    await c.add_file(R, "a.txt", b"one\n")
    await c.add_file(R, "b.txt", b"b\n")
    await c.commit(R, "one")
    clock.now = 1_700_000_100
    await c.add_file(R, "b.txt", b"b2\n")
    await c.commit(R, "two")
    a = await c.read_file(R, "a.txt")
    assert a.last_modified is not None and a.last_modified.timestamp() == 1_700_000_000
    b = await c.read_file(R, "b.txt", commit="HEAD")
    assert b.last_modified is not None and b.last_modified.timestamp() == 1_700_000_100
    old_b = await c.read_file(R, "b.txt", commit="HEAD~1")
    assert old_b.content == b"b\n" and old_b.last_modified.timestamp() == 1_700_000_000
    clock.now = 1_700_000_200
    await c.write_file(R, "a.txt", b"uncommitted\n")
    assert (await c.read_file(R, "a.txt")).last_modified.timestamp() == 1_700_000_200


async def test_commit_semantics(c: GovcClient, clock: Clock) -> None:
    err = await error(c.commit(R, "nothing"))
    assert err.status == Status.FAILED_PRECONDITION and "nothing to commit" in err.message
    await c.add_file(R, "a.txt", b"a\n")
    err = await error(c.commit(R, "   \n\n"))
    assert err.status == Status.INVALID_ARGUMENT and "message" in err.message
    first = await c.commit(
        R, "  first line  \n\nbody\n\n\n", author="Grace Hopper <grace@navy.mil>"
    )
    assert (
        first.message == "  first line\n\nbody" and first.author == "Grace Hopper <grace@navy.mil>"
    )
    assert first.timestamp is not None and first.timestamp.timestamp() == clock.now
    got = await c.get_commit(R, first.hash)
    assert got.parent_hashes == [] and got.author == first.author and got.message == first.message
    assert [(x.path, x.type, x.hash) for x in got.changes] == [("a.txt", "added", blob_id(b"a\n"))]
    err = await error(c.commit(R, "again"))
    assert err.status == Status.FAILED_PRECONDITION
    # A bare name; the default identity; a malformed author.
    await c.add_file(R, "b.txt", b"b\n")
    bare = await c.commit(R, "bare", author="Linus")
    assert bare.author == "Linus"
    await c.add_file(R, "c.txt", b"c\n")
    default = await c.commit(R, "default")
    assert default.author == "govc <govc@localhost>"
    await c.add_file(R, "d.txt", b"d\n")
    err = await error(c.commit(R, "x", author="a <b> <c>"))
    assert err.status == Status.INVALID_ARGUMENT and "author" in err.message


async def test_partial_commit_with_files(c: GovcClient) -> None:
    await c.add_file(R, "a.txt", b"a\n")
    await c.add_file(R, "b.txt", b"b\n")
    await c.commit(R, "base")
    await c.write_file(R, "a.txt", b"a2\n")  # unstaged
    await c.add_file(R, "b.txt", b"b2\n")  # staged
    made = await c.commit(R, "only a", files=["a.txt"])
    got = await c.get_commit(R, made.hash)
    assert [(x.path, x.type) for x in got.changes] == [("a.txt", "modified")]
    assert (await c.status(R)).status_entries == ["M  b.txt"]
    err = await error(c.commit(R, "x", files=["missing.txt"]))
    assert err.status == Status.NOT_FOUND and "missing.txt" in err.message
    # A deleted file named in `files` is committed as deleted.
    await c.remove_file(R, "b.txt")
    made = await c.commit(R, "drop b", files=["b.txt"])
    assert [(x.path, x.type) for x in (await c.get_commit(R, made.hash)).changes] == [
        ("b.txt", "deleted")
    ]


async def test_move_and_remove(c: GovcClient) -> None:
    await c.add_file(R, "d/x.txt", b"x\n")
    await c.add_file(R, "d/y.txt", b"y\n")
    await c.add_file(R, "z.txt", b"z\n")
    await c.commit(R, "base")
    await c.move_file(R, "z.txt", "w.txt")
    assert (await c.read_file(R, "w.txt")).content == b"z\n"
    await c.write_file(R, "d/untracked.txt", b"u\n")  # moves with its directory, as git mv does
    await c.move_file(R, "d", "e")
    status = await c.status(R)
    assert status.status_entries == [  # as `git status --porcelain` shows it
        "R  d/x.txt -> e/x.txt",
        "R  d/y.txt -> e/y.txt",
        "R  z.txt -> w.txt",
        "?? e/untracked.txt",
    ]
    assert (await c.read_file(R, "e/untracked.txt")).content == b"u\n"
    assert (await error(c.read_file(R, "d/untracked.txt"))).status == Status.NOT_FOUND
    err = await error(c.move_file(R, "e/x.txt", "w.txt"))
    assert err.status == Status.ALREADY_EXISTS and "w.txt" in err.message
    err = await error(c.move_file(R, "nope.txt", "n.txt"))
    assert err.status == Status.NOT_FOUND and "nope.txt" in err.message
    err = await error(c.remove_file(R, "nope.txt"))
    assert err.status == Status.NOT_FOUND
    await c.write_file(R, "untracked.txt", b"u\n")
    await c.remove_file(R, "untracked.txt")  # only in the work tree: it is removed
    assert (await error(c.read_file(R, "untracked.txt"))).status == Status.NOT_FOUND
    before = await c.status(R)
    err = await error(c.add_file(R, "w.txt/inside", b"x"))
    assert err.status == Status.FAILED_PRECONDITION and "w.txt" in err.message
    err = await error(c.add_file(R, "e", b"x"))
    assert err.status == Status.FAILED_PRECONDITION and "directory" in err.message
    assert await c.status(R) == before


async def test_revisions(c: GovcClient, clock: Clock) -> None:
    hashes = []
    for i in range(4):
        clock.now += 10
        await c.add_file(R, "f.txt", f"v{i}\n".encode())
        hashes.append((await c.commit(R, f"c{i}")).hash)
    for rev, expected in [
        ("HEAD", hashes[3]),
        ("main", hashes[3]),
        ("refs/heads/main~1", hashes[2]),
        (hashes[0][:7].upper(), hashes[0]),
        ("HEAD~2", hashes[1]),
        ("main^", hashes[2]),
        ("HEAD^^", hashes[1]),
        ("HEAD~1^", hashes[1]),
        (hashes[0], hashes[0]),
        (hashes[0][:7], hashes[0]),
        (hashes[2][:4], hashes[2]),
    ]:
        assert (await c.get_commit(R, rev)).hash == expected, rev
    assert (await error(c.get_commit(R, "HEAD~9"))).status == Status.NOT_FOUND
    assert (await error(c.get_commit(R, "nosuch"))).status == Status.NOT_FOUND
    assert (await error(c.get_commit(R, "HEAD~x"))).status == Status.INVALID_ARGUMENT
    assert (await error(c.get_commit(R, ""))).status == Status.INVALID_ARGUMENT
    assert (await error(c.get_commit(R, "0000000"))).status == Status.NOT_FOUND
    assert (await error(c.get_commit(R, "HEAD~999999999"))).status == Status.NOT_FOUND
    # A count too long for any history (and for Python's int()): named, not INTERNAL.
    huge = await error(c.get_commit(R, "HEAD~" + "9" * 5000))
    assert huge.status == Status.INVALID_ARGUMENT and "at most 9 digits" in huge.message
    assert len(huge.message) < 200  # the revision is not echoed whole
    log = await c.list_commits(R, limit=2, offset=1)
    assert [x.hash for x in log.commits] == [hashes[2], hashes[1]] and log.total == 4


async def test_list_commits_author_filter(c: GovcClient) -> None:
    for i, author in enumerate(["Ada <ada@x.org>", "Bob <bob@y.org>", "ada junior <aj@z.org>"]):
        await c.add_file(R, "f", str(i).encode())
        await c.commit(R, f"c{i}", author=author)
    assert (await c.list_commits(R, author="ADA")).total == 2
    assert (await c.list_commits(R, author="y.org")).total == 1
    assert (await c.list_commits(R, author="nobody")).total == 0
    assert (await error(c.list_commits(R, branch="nope"))).status == Status.NOT_FOUND


async def test_empty_repository(c: GovcClient) -> None:
    assert (await c.list_commits(R)).total == 0
    branches = await c.list_branches(R)
    assert branches.branches == [] and branches.current_branch == "main"
    err = await error(c.create_branch(R, "x"))
    assert err.status == Status.FAILED_PRECONDITION
    assert (await error(c.get_commit(R, "HEAD"))).status == Status.FAILED_PRECONDITION


async def test_branches(c: GovcClient, clock: Clock) -> None:
    await c.add_file(R, "a", b"a")
    first = await c.commit(R, "first", author="Ada <ada@x.org>")
    clock.now += 60
    await c.add_file(R, "a", b"b")
    second = await c.commit(R, "second")
    made = await c.create_branch(R, "topic/one", from_commit="HEAD~1")
    assert made.commit_hash == first.hash and made.name == "topic/one"
    await c.create_branch(R, "alpha")
    listing = await c.list_branches(R)
    assert [b.name for b in listing.branches] == ["alpha", "main", "topic/one"]
    assert listing.current_branch == "main"
    by_name = {b.name: b for b in listing.branches}
    assert by_name["alpha"].commit_hash == second.hash
    assert by_name["topic/one"].author == "Ada <ada@x.org>"
    assert by_name["topic/one"].last_commit.timestamp() == first.timestamp.timestamp()
    assert (await error(c.create_branch(R, "alpha"))).status == Status.ALREADY_EXISTS
    assert (await error(c.create_branch(R, "topic"))).status == Status.ALREADY_EXISTS
    for bad in [
        "a..b",
        "x.lock",
        "-x",
        "has space",
        "a~1",
        "q?",
        "a//b",
        "trailing.",
        ".hidden",
        "@{x",
        "back\\slash",
        "a:b",
    ]:
        err = await error(c.create_branch(R, bad))
        assert err.status == Status.INVALID_ARGUMENT and "name" in err.message, bad
    assert (await error(c.create_branch(R, "new", from_commit="nope"))).status == Status.NOT_FOUND
    assert (await error(c.delete_branch(R, "main"))).status == Status.FAILED_PRECONDITION
    assert (await error(c.delete_branch(R, "nope"))).status == Status.NOT_FOUND
    await c.delete_branch(R, "alpha")
    assert [b.name for b in (await c.list_branches(R)).branches] == ["main", "topic/one"]
    assert (await error(c.checkout_branch(R, "alpha"))).status == Status.NOT_FOUND


async def test_checkout_refuses_to_lose_work(c: GovcClient) -> None:
    await c.add_file(R, "shared.txt", b"base\n")
    await c.add_file(R, "same.txt", b"same\n")
    await c.commit(R, "base")
    await c.create_branch(R, "other")
    await c.checkout_branch(R, "other")
    await c.add_file(R, "shared.txt", b"other\n")
    await c.add_file(R, "only-other.txt", b"o\n")
    await c.commit(R, "other work")
    await c.checkout_branch(R, "main")
    assert (await c.read_file(R, "shared.txt")).content == b"base\n"
    assert (await error(c.read_file(R, "only-other.txt"))).status == Status.NOT_FOUND

    # An uncommitted change to a file the switch would overwrite: refused, nothing changes.
    await c.write_file(R, "shared.txt", b"local edit\n")
    before = await c.status(R)
    err = await error(c.checkout_branch(R, "other"))
    assert err.status == Status.FAILED_PRECONDITION and "shared.txt" in err.message
    assert await c.status(R) == before
    assert (await c.read_file(R, "shared.txt")).content == b"local edit\n"

    # An untracked file in the way is refused too.
    await c.write_file(R, "shared.txt", b"base\n")
    await c.write_file(R, "only-other.txt", b"mine\n")
    err = await error(c.checkout_branch(R, "other"))
    assert err.status == Status.FAILED_PRECONDITION and "only-other.txt" in err.message

    # Changes to paths both branches agree on are carried over, like git.
    await c.write_file(R, "only-other.txt", b"o\n")  # identical to the incoming file
    await c.write_file(R, "same.txt", b"carried\n")
    await c.write_file(R, "notes.txt", b"untracked\n")
    await c.checkout_branch(R, "other")
    status = await c.status(R)
    assert status.current_branch == "other"
    assert status.status_entries == [" M same.txt", "?? notes.txt"]  # git: untracked last
    assert (await c.read_file(R, "shared.txt")).content == b"other\n"
    assert (await c.read_file(R, "same.txt")).content == b"carried\n"

    # A change that is exactly the incoming version loses nothing: allowed, and then clean.
    await c.write_file(R, "same.txt", b"same\n")
    await c.checkout_branch(R, "main")
    await c.add_file(R, "shared.txt", b"other\n")  # staged: other's version
    await c.checkout_branch(R, "other")
    assert (await c.status(R)).status_entries == ["?? notes.txt"]


async def test_unknown_repository(c: GovcClient) -> None:
    for call in (
        c.add_file("nope", "a", b""),
        c.status("nope"),
        c.commit("nope", "m"),
        c.list_commits("nope"),
        c.list_branches("nope"),
        c.read_file("nope", "a"),
    ):
        err = await error(call)
        assert err.status == Status.NOT_FOUND and "nope" in err.message


async def test_checkout_keeps_a_staged_deletion(c: GovcClient) -> None:
    await c.add_file(R, "a", b"a\n")
    await c.commit(R, "a")
    await c.create_branch(R, "topic")
    await c.remove_file(R, "a")
    await c.checkout_branch(R, "topic")
    assert (await c.status(R)).status_entries == ["D  a"]


async def test_commit_files_refuses_untracked_paths(c: GovcClient) -> None:
    await c.add_file(R, "a", b"a\n")
    await c.commit(R, "a")
    await c.write_file(R, "b", b"untracked\n")
    await c.write_file(R, "d/x", b"untracked\n")
    for spec in ("b", "d"):
        err = await error(c.commit(R, "m", files=[spec]))
        assert err.status == Status.NOT_FOUND and "known" in err.message
    assert (await c.list_commits(R)).total == 1


async def test_status_shows_untracked_file_over_staged_deletion(c: GovcClient) -> None:
    await c.add_file(R, "a", b"a\n")
    await c.commit(R, "a")
    await c.move_file(R, "a", "b")
    await c.write_file(R, "a", b"new\n")
    status = await c.status(R)
    assert status.status_entries == ["R  a -> b", "?? a"]  # as git shows it
    assert (status.staged_files, status.untracked_files) == (1, 1)


@pytest.mark.parametrize("message", ["", "  \n ", "a\0b"])
async def test_a_bad_commit_message_is_refused_before_the_repository_is_looked_up(
    c: GovcClient, server: GovcServer, message: str
) -> None:
    """INVALID_ARGUMENT whether or not the repository exists, and no write is spent on it."""
    commits_before = (await c.health()).checks["writer_operations"]
    for repo in (R, "no-such-repository"):
        with pytest.raises(GovcRpcError) as info:
            await c.commit(repo, message)
        assert info.value.status == Status.INVALID_ARGUMENT, (repo, info.value.message)
        assert "message" in info.value.message
    assert (await c.health()).checks["writer_operations"] == commits_before
