"""Search fixes: case-insensitive keyword fields, SQL refused before loading, no highlight work
for queries without words, and a truthful catch-up after the index is rebuilt."""

import asyncio
import shutil
import threading
from collections.abc import Awaitable
from pathlib import Path

import pytest
from grpclib.const import Status

from govc.client import GovcClient, GovcRpcError, search_request
from govc.core.gitformat import blob_id
from govc.search import fulltext
from govc.search.engine import SearchEngine
from govc.search.indexer import Indexer
from govc.search.sql import SqlEngine
from govc.server import GovcServer
from tests.conftest import Clock, server_config
from tests.polling import poll_until

R = "fixes"
FILES = {
    "Lib/test/decimaltestdata/abs.decTest": b"-- abs test cases\nabsx001 abs '1' -> '1'\n",
    "Lib/test/decimaltestdata/add.decTest": b"-- add test cases\naddx001 add 1 1 -> 2\n",
    "src/email/send.py": b"def send(message):\n    return deliver(message)\n",
    "src/email/README.md": b"# email\nSending email, one message at a time.\n",
    "tools/BUILD.PY": b"print('build')\n",
    "docs/Guide.Md": b"Guide to sending a message.\n",
}


async def _paths(c: GovcClient, query: str, **options: object) -> set[str]:
    response = await c.search(R, query, limit=100, **options)  # type: ignore[arg-type]
    assert response.total == len(response.results)
    return {r.document.path for r in response.results if r.document}


async def _error(call: Awaitable[object]) -> GovcRpcError:
    with pytest.raises(GovcRpcError) as info:
        await call
    return info.value


@pytest.fixture
async def c(client: GovcClient) -> GovcClient:
    await client.create_repository(R)
    for path, content in FILES.items():
        await client.add_file(R, path, content)
    await client.commit(R, "files", author="Ada <ada@example.com>")
    return client


# ---- 1. field queries on lower-cased keyword fields ----


async def test_keyword_fields_stored_in_lower_case_are_queried_in_any_case(c: GovcClient) -> None:
    dectest = {"Lib/test/decimaltestdata/abs.decTest", "Lib/test/decimaltestdata/add.decTest"}
    python = {"src/email/send.py", "tools/BUILD.PY"}
    # The file_types filter folds case; field queries on `extension` agree with it.
    assert await _paths(c, "", file_types=["decTest"]) == dectest
    for query in ("extension:decTest", "extension:DECTEST", "extension:dectest"):
        assert await _paths(c, query) == dectest, query
    assert await _paths(c, 'extension:"DecTest"') == dectest
    assert await _paths(c, "extension:PY") == python == await _paths(c, "extension:py")
    assert await _paths(c, "extension:Md") == {"src/email/README.md", "docs/Guide.Md"}
    assert await _paths(c, "extension: IN [PY DECTEST]") == python | dectest
    assert await _paths(c, "message AND extension:PY") == {"src/email/send.py"}
    # A hash is lower-case hex in the index: any case finds it.
    oid = blob_id(FILES["tools/BUILD.PY"])
    assert await _paths(c, f"hash:{oid.upper()}") == {"tools/BUILD.PY"}
    # Paths stay case-sensitive.
    assert await _paths(c, 'filepath:"tools/BUILD.PY"') == {"tools/BUILD.PY"}
    assert await _paths(c, 'filepath:"tools/build.py"') == set()


# ---- 2. SQL that does not compile is refused before any table is loaded ----

BAD_SQL = [
    "SELEC 1",
    "SELEC path FROM files",
    "DELETE FROM files",
    "UPDATE files SET size = 0",
    "INSERT INTO files (path) VALUES ('x')",
    "DROP TABLE files",
    "CREATE TABLE t (x)",
    "ATTACH DATABASE ':memory:' AS other",
    "PRAGMA table_info(files)",
    "SELECT 1; SELECT 2",
    "SELECT load_extension('x')",
    "SELECT * FROM nowhere",
    "SELECT content FROM files WHERE",
]


async def test_bad_sql_is_refused_before_the_tables_are_loaded(
    c: GovcClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What each statement gets with the tables loadable...
    refused = {}
    for sql in BAD_SQL:
        error = await _error(c.execute_sql(R, sql))
        assert error.status == Status.INVALID_ARGUMENT, (sql, error)
        refused[sql] = error.message

    loads = []

    def load(*args: object) -> None:
        loads.append(args)
        raise AssertionError("the tables were loaded")

    monkeypatch.setattr(SqlEngine, "_load", load)
    # ...it gets without any table loaded: the same answer.
    for sql in BAD_SQL:
        error = await _error(c.execute_sql(R, sql))
        assert (error.status, error.message) == (Status.INVALID_ARGUMENT, refused[sql]), sql
    assert loads == []
    # (A good statement does need the tables: the patch is in effect.)
    error = await _error(c.execute_sql(R, "SELECT path FROM files"))
    assert error.status != Status.INVALID_ARGUMENT and len(loads) == 1
    monkeypatch.undo()
    response = await c.execute_sql(R, "SELECT count(*) AS n FROM files")
    assert [dict(row.fields) for row in response.rows] == [{"n": str(len(FILES))}]


# ---- 3. no highlight work for a query without words on the text ----

NO_TEXT_QUERIES = [
    "path:email",
    "name:send",
    "extension:py",
    'filepath:"src/email/send.py"',
    "size:[0 TO 100000]",
    "path:email AND name:send",
    "",
]


async def test_highlights_are_not_made_for_queries_without_words_on_the_text(
    c: GovcClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = {q: await c.search(R, q, limit=100, sort_by="path") for q in NO_TEXT_QUERIES}
    assert all(plain[q].results for q in NO_TEXT_QUERIES)

    def refuse(*args: object) -> None:
        raise AssertionError("highlight work for a query that cannot have highlights")

    # Neither the snippet generators nor the texts are made.
    monkeypatch.setattr(fulltext.Highlighter, "__init__", refuse)
    monkeypatch.setattr(SearchEngine, "_texts_of", refuse)
    for query in NO_TEXT_QUERIES:
        highlighted = await c.search(R, query, limit=100, sort_by="path", highlight_length=100)
        assert highlighted.total == plain[query].total, query
        assert [(r.document, r.score, r.highlights) for r in highlighted.results] == [
            (r.document, r.score, []) for r in plain[query].results
        ], query
        # Aggregation samples are decorated the same way.
        request = search_request(R, query, highlight_length=100)
        aggregated = await c.search_with_aggregation(R, request, group_by=["extension"])
        samples = [s for group in aggregated.groups for s in group.sample_results]
        assert samples and all(not s.highlights for s in samples), query
    monkeypatch.undo()
    # Queries with words on the text still get them.
    words = await c.search(R, "path:email AND message", highlight_length=100, sort_by="path")
    assert [r.document.path for r in words.results if r.document] == [
        "src/email/README.md",
        "src/email/send.py",
    ]
    assert all("**message**" in r.highlights[0] for r in words.results)
    for query in NO_TEXT_QUERIES:  # and those without: empty highlights, as ever
        again = await c.search(R, query, limit=100, highlight_length=100)
        assert all(r.highlights == [] for r in again.results), query


def test_what_can_be_highlighted() -> None:
    for query in ["path:email", "name:x AND extension:py", "size:[1 TO 9]", "", "*", '"_"']:
        assert not fulltext.highlightable(query), query
    for query in [
        "message",
        "path:email message",
        "content:message",
        "parts:message",
        "path:email -message",  # excluded words count: under a negation they may match
        "content: IN [message]",
        '"sending email"',
        "émail",
        '"unclosed',  # (refused when parsed for the search; never skipped here)
        "(" * 200 + "x" + ")" * 200,
    ]:
        assert fulltext.highlightable(query), query


# ---- 4. catching up after the index was deleted ----

REPOSITORIES = ["a-0", "a-1", "a-2", "z-target"]  # the target comes last in id order
FILES_PER_REPOSITORY = 40


def _content(repo_id: str, i: int) -> str:
    word = "quokka" if repo_id == "z-target" and i % 4 == 0 else "wombat"
    return f"file {i} of {repo_id}: {word}\n"


async def _serve(data_dir: Path, clock: Clock, **config: float) -> GovcServer:
    server = GovcServer(server_config(data_dir, clock=clock, **config))
    await server.start()
    return server


@pytest.fixture
async def rebuilt(tmp_path: Path, clock: Clock) -> Path:
    """A data dir with a few repositories of many files, its search index deleted."""
    data_dir = tmp_path / "data"
    server = await _serve(data_dir, clock)
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as client:
            for repo_id in REPOSITORIES:
                await client.create_repository(repo_id)
                batch = client.batch(repo_id, transaction=True)
                for i in range(FILES_PER_REPOSITORY):
                    batch.write(f"dir{i % 5}/file{i}.txt", _content(repo_id, i))
                batch.commit("files", author="Ada <ada@example.com>")
                assert (await batch.run()).success
                assert (await client.search(repo_id, "")).total == FILES_PER_REPOSITORY
    finally:
        await server.stop()
    shutil.rmtree(data_dir / "search")
    return data_dir


def _gate(
    monkeypatch: pytest.MonkeyPatch, passes: set[str], first: threading.Event | None = None
) -> tuple[threading.Event, list[str]]:
    """Make the indexer hold every repository but those of `passes` before indexing it, until
    the event returned is set (the first one it holds, until `first` is set, if given); the
    list says which it held, in order."""
    release = threading.Event()
    held: list[str] = []
    apply_repo = Indexer._apply_repo

    def gated(self: Indexer, repo_id: str) -> int:
        if repo_id not in passes:
            gate = first if first is not None and not held else release
            held.append(repo_id)
            assert gate.wait(30), "the test never released the indexer"
        return apply_repo(self, repo_id)

    monkeypatch.setattr(Indexer, "_apply_repo", gated)
    return release, held


async def _catch_up(client: GovcClient) -> str:
    """The health check's search_catch_up once every repository has been compared."""

    async def compared() -> str | None:
        state = (await client.health()).checks["search_catch_up"]
        return None if state.startswith("comparing") else state

    return await poll_until(compared, message="the repositories were never all compared")


async def test_health_says_done_only_once_the_rebuilt_index_is_complete(
    rebuilt: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, held = _gate(monkeypatch, passes=set())
    server = await _serve(rebuilt, clock)
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as client:
            # Every repository is compared (and found missing from the index); the first one
            # to index is held: nothing is indexed yet.
            assert await _catch_up(client) == f"rebuilding: 0 of {len(REPOSITORIES)} repositories"
            health = await client.health()
            assert health.checks["search_documents"] == "0" and health.status == "healthy"
            release.set()
            seen = []
            for _ in range(3000):
                health = await client.health()
                state = health.checks["search_catch_up"]
                if state == "done":
                    break
                seen.append(state)
                await asyncio.sleep(0.01)
            assert state == "done", seen
            assert health.checks["search_documents"] == str(
                len(REPOSITORIES) * FILES_PER_REPOSITORY
            )
            counts = [int(s.split(": ")[1].split(" of ")[0]) for s in seen]
            assert counts == sorted(counts) and all(
                s.endswith(f" of {len(REPOSITORIES)} repositories") for s in seen
            ), seen
            assert sorted(held) == REPOSITORIES
            for repo_id in REPOSITORIES:
                assert (await client.search(repo_id, "")).total == FILES_PER_REPOSITORY
    finally:
        release.set()
        await server.stop()


async def test_a_search_during_the_rebuild_has_its_repository_indexed_first(
    rebuilt: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The repository being indexed when the search comes goes on once the search waits; the
    # others are held until the search has its answer.
    first = threading.Event()
    release, held = _gate(monkeypatch, passes={"z-target"}, first=first)
    server = await _serve(rebuilt, clock, index_wait_seconds=5.0)
    try:
        indexer = server.indexer
        assert indexer is not None
        async with GovcClient(f"127.0.0.1:{server.port}") as client:
            await _catch_up(client)  # every repository queued, the target last
            search = asyncio.create_task(client.search("z-target", "quokka", limit=100))
            await poll_until(
                lambda: indexer._waiting or search.done(), message="the search never waited"
            )
            first.set()
            found = await search
            assert {r.document.path for r in found.results if r.document} == {
                f"dir{i % 5}/file{i}.txt" for i in range(0, FILES_PER_REPOSITORY, 4)
            }
            assert found.total == FILES_PER_REPOSITORY // 4
            # Indexed before a-1 and a-2 (held until now: the one after may be in progress).
            assert held in (["a-0"], ["a-0", "a-1"])
            health = await client.health()
            assert health.checks["search_catch_up"] == (
                f"rebuilding: 2 of {len(REPOSITORIES)} repositories"
            )
            release.set()
            for repo_id in REPOSITORIES:
                assert (await client.search(repo_id, "")).total == FILES_PER_REPOSITORY
    finally:
        first.set()
        release.set()
        await server.stop()


async def test_health_is_not_ok_once_the_indexer_has_stopped(
    c: GovcClient, server: GovcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await c.health()).checks["search_index"] == "ok"
    indexer = server.indexer
    assert indexer is not None

    def broken(versions: dict[str, int]) -> None:
        raise RuntimeError("a bug in the indexer")

    monkeypatch.setattr(indexer, "_publish_versions", broken)
    await c.add_file(R, "new.txt", b"lemur\n")
    # The indexer survives its failures and keeps retrying; health tells.
    await poll_until(lambda: indexer.trouble is not None, message="no trouble reported")
    assert indexer._thread is not None and indexer._thread.is_alive()
    health = await c.health()
    assert health.status != "healthy"
    assert health.checks["search_index"].startswith("failed"), health.checks
    error = await _error(c.search(R, "lemur"))
    assert error.status == Status.UNAVAILABLE
