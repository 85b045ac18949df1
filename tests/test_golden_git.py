"""The same history built through the RPCs and with the real git gives identical ids."""

from pathlib import Path

import pytest
from grpclib.const import Status

from govc.client import GovcClient, GovcRpcError
from tests.conftest import Clock
from tests.gitoracle import Git

ADA = ("Ada Lovelace", "ada@example.com")
GOVC = ("govc", "govc@localhost")


def text(lines: int, tag: str) -> bytes:
    return "".join(f"{tag} line {i}\n" for i in range(lines)).encode()


async def test_history_with_branch_and_merge_matches_git(
    tmp_path: Path, client: GovcClient, clock: Clock
) -> None:
    c = client
    git = Git(tmp_path / "oracle")
    await c.create_repository("golden")
    author = f"{ADA[0]} <{ADA[1]}>"
    t = 1_700_000_000

    async def both_add(path: str, content: bytes) -> None:
        await c.add_file("golden", path, content)
        git.write(path, content)
        git.run("add", path)

    async def both_commit(message: str, when: int) -> str:
        clock.now = when
        ours = await c.commit("golden", message, author=author)
        git.run("commit", "-q", "-m", message, when=when, who=ADA)
        theirs = git.run("rev-parse", "HEAD").strip()
        assert ours.hash == theirs, message
        return ours.hash

    # Nested directories, names that sort differently as files and as directories.
    await both_add("README.md", b"# golden\n")
    await both_add("src/app.py", text(30, "app"))
    await both_add("src/lib/util.py", text(10, "util"))
    await both_add("src-extra.txt", b"sorts between src and src/\n")
    await both_add("docs/guide/intro.md", b"intro\n")
    base = await both_commit("initial import", t)

    await both_add("src/app.py", text(30, "app").replace(b"app line 3\n", b"changed 3\n"))
    await both_add("a.txt", b"a\n")
    await both_commit("second\n\nwith a body paragraph", t + 60)

    await c.create_branch("golden", "feature")
    git.run("branch", "feature")
    await c.checkout_branch("golden", "feature")
    git.run("checkout", "-q", "feature")
    await both_add(
        "src/app.py",
        text(30, "app")
        .replace(b"app line 3\n", b"changed 3\n")
        .replace(b"app line 25\n", b"feature 25\n"),
    )
    await both_add("src/lib/new.py", b"print('new')\n")
    feature = await both_commit("feature work", t + 120)

    await c.checkout_branch("golden", "main")
    git.run("checkout", "-q", "main")
    await both_add("src/app.py", text(30, "app").replace(b"app line 3\n", b"main 3\n"))
    main_tip = await both_commit("main work", t + 180)

    clock.now = t + 240
    merged = await c.merge_branch("golden", "feature", message="Merge branch 'feature'")
    assert not merged.conflicts
    git.run(
        "merge", "-q", "--no-ff", "feature", "-m", "Merge branch 'feature'", when=t + 240, who=GOVC
    )
    assert merged.commit_hash == git.run("rev-parse", "HEAD").strip()

    commit = await c.get_commit("golden", merged.commit_hash)
    assert commit.parent_hashes == [main_tip, feature]
    assert git.run("rev-parse", "HEAD^{tree}") == git.run(
        "rev-parse", f"{merged.commit_hash}^{{tree}}"
    )
    merged_app = (await c.read_file("golden", "src/app.py")).content
    assert merged_app == (git.path / "src/app.py").read_bytes()
    assert b"main 3" in merged_app and b"feature 25" in merged_app

    log = await c.list_commits("golden")
    git_log = git.run("log", "--format=%H %P").strip().splitlines()
    assert sorted(f"{x.hash} {' '.join(x.parent_hashes)}".strip() for x in log.commits) == sorted(
        line.strip() for line in git_log
    )
    assert log.total == 5 and base in {x.hash for x in log.commits}
    status = await c.status("golden")
    assert status.status_entries == [] and status.current_branch == "main"


MESSAGES = [
    "plain",
    "  leading blanks and trailing ones \t ",
    "\n\nsubject\n\n\n\nbody after blank lines\n\n",
    "windows\r\nline ends\r\n",
    "a lone \r inside",
    "no-break space at the end\u00a0",
    "form feed at the end\f",
    "vertical tab at the end\v",
    "line separator at the end\u2028",
    "\u00a0",
    "# not a comment for git commit -m",
]


async def test_commit_messages_are_cleaned_as_git_cleans_them(
    tmp_path: Path, client: GovcClient, clock: Clock
) -> None:
    c = client
    await c.create_repository("messages")
    git = Git(tmp_path / "oracle")
    author = f"{ADA[0]} <{ADA[1]}>"
    clock.now = 1_700_000_000
    for n, message in enumerate(MESSAGES):
        content = f"version {n}\n".encode()
        await c.add_file("messages", "a.txt", content)
        git.write("a.txt", content)
        git.run("add", "a.txt")
        ours = await c.commit("messages", message, author=author)
        git.run("commit", "-q", "-m", message, when=1_700_000_000, who=ADA)
        assert ours.hash == git.run("rev-parse", "HEAD").strip(), repr(message)
    with pytest.raises(GovcRpcError) as refused:
        await c.commit("messages", "nul\0inside", author=author)
    assert refused.value.status == Status.INVALID_ARGUMENT and "NUL" in refused.value.message
