"""FullTextSearch and SearchWithAggregation over a real server and a real tantivy index."""

import asyncio
import json
import logging
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpclib.const import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generated.govc import FullTextSearchResponse
from govc.client import GovcClient, GovcRpcError
from govc.core.gitformat import blob_id
from govc.search.fulltext import FORMAT
from govc.search.indexer import Indexer
from govc.server import GovcServer
from tests.conftest import Clock, server_config
from tests.polling import poll_until
from tests.test_gitio import govc_cli

R = "search"
T1 = 1_700_000_000  # first commit (Ada)
T2 = T1 + 25 * 3600  # second commit (Bob), a day and an hour later
T3 = T2 + 3 * 3600  # the uncommitted README is written; "now" for the searches

FIRST = {
    "src/cli.py": b"import argparse\n\ndef parse_args(argv):\n"
    b"    parser = argparse.ArgumentParser()\n    return parser.parse_args(argv)\n",
    "src/server.py": b"class HttpServer:\n    def run(self):\n        pass\n",
    "docs/guide.md": b"# Guide\n\nThe quick brown fox jumps over the lazy dog.\n"
    b"Run the server with make serve.\n",
    "Makefile": b"serve:\n\tpython -m server\n",
    "assets/logo.png": b"\x89PNG\r\n\x1a\n\0\0\0brown fox lazy",
}
SECOND = {
    "web/app.js": b"function parseArgs(argv) {\n  return argv.slice(2);\n}\n"
    b"const serverPort = 8080;\n",
    "web/style.css": b"body { color: red; }\n",
    "docs/notes.txt": b"brown bread and lazy mornings\n",
    "src/server.py": b"class HttpServer:\n    def serve_forever(self):\n"
    b"        while True:\n            self.handle_request()\n",
}
UNCOMMITTED = {"README.md": b"quick start: parse the arguments, then run the server\n"}
ALL = {**FIRST, **SECOND, **UNCOMMITTED}
ADA, BOB = "Ada <ada@example.com>", "Bob <bob@example.com>"


async def build_corpus(client: GovcClient, clock: Clock) -> None:
    await client.create_repository(R)
    clock.now = T1
    for path, content in FIRST.items():
        await client.add_file(R, path, content)
    await client.commit(R, "first", author=ADA)
    clock.now = T2
    for path, content in SECOND.items():
        await client.add_file(R, path, content)
    await client.commit(R, "second", author=BOB)
    clock.now = T3
    for path, content in UNCOMMITTED.items():
        await client.write_file(R, path, content)


@pytest.fixture
async def c(client: GovcClient, clock: Clock) -> GovcClient:
    await build_corpus(client, clock)
    return client


async def paths(c: GovcClient, query: str, **options: object) -> set[str]:
    response = await c.search(R, query, limit=1000, **options)  # type: ignore[arg-type]
    assert response.total == len(response.results)
    return {r.document.path for r in response.results if r.document}


async def status_of(coro: object) -> GovcRpcError:
    with pytest.raises(GovcRpcError) as info:
        await coro  # type: ignore[misc]
    return info.value


# ---- matching ----


async def test_terms(c: GovcClient) -> None:
    assert await paths(c, "brown") == {"docs/guide.md", "docs/notes.txt"}  # not the binary
    assert await paths(c, "BROWN") == {"docs/guide.md", "docs/notes.txt"}
    assert await paths(c, "quick") == {"docs/guide.md", "README.md"}
    assert await paths(c, "nothing_like_this") == set()


async def test_phrases(c: GovcClient) -> None:
    assert await paths(c, '"lazy dog"') == {"docs/guide.md"}
    assert await paths(c, '"brown bread"') == {"docs/notes.txt"}
    assert await paths(c, '"dog lazy"') == set()


async def test_booleans(c: GovcClient) -> None:
    assert await paths(c, "brown AND bread") == {"docs/notes.txt"}
    assert await paths(c, "brown NOT bread") == {"docs/guide.md"}
    assert await paths(c, "brown -bread") == {"docs/guide.md"}
    assert await paths(c, "+lazy -mornings") == {"docs/guide.md"}
    assert await paths(c, "bread OR argparse") == {"docs/notes.txt", "src/cli.py"}
    assert await paths(c, "(bread OR argparse) AND parser") == {"src/cli.py"}


async def test_paths_names_and_extensions(c: GovcClient) -> None:
    assert await paths(c, "path:web") == {"web/app.js", "web/style.css"}
    assert await paths(c, "path:docs AND lazy") == {"docs/guide.md", "docs/notes.txt"}
    assert await paths(c, 'filepath:"src/cli.py"') == {"src/cli.py"}
    assert await paths(c, "name:app") == {"web/app.js"}
    assert await paths(c, "name:makefile") == {"Makefile"}
    assert await paths(c, "extension:md") == {"docs/guide.md", "README.md"}
    # A binary file is found by its path only.
    assert await paths(c, "name:logo") == {"assets/logo.png"}
    assert await paths(c, "fox") == {"docs/guide.md"}


async def test_identifier_splitting(c: GovcClient) -> None:
    # Parts of snake_case and camelCase identifiers are words of their own...
    assert await paths(c, "args") == {"src/cli.py", "web/app.js"}
    assert await paths(c, "forever") == {"src/server.py"}
    assert await paths(c, "port") == {"web/app.js"}
    assert await paths(c, "http") == {"src/server.py"}  # HttpServer
    # ...an identifier matches itself (content keeps camelCase whole; snake_case is the phrase
    # of its parts), and in `parts` both spellings match...
    assert await paths(c, "content:parse_args") == {"src/cli.py"}
    assert await paths(c, "content:parseargs") == {"web/app.js"}
    assert await paths(c, "parts:parse_args") == {"src/cli.py", "web/app.js"}
    assert await paths(c, "parse_args") == {"src/cli.py", "web/app.js"}
    # ...and the exact spelling ranks first.
    exact = await c.search(R, "parse_args")
    assert next(r.document.path for r in exact.results if r.document) == "src/cli.py"
    camel = await c.search(R, "parseArgs")
    assert next(r.document.path for r in camel.results if r.document) == "web/app.js"


# ---- filters ----


async def test_file_types_filter(c: GovcClient) -> None:
    assert await paths(c, "", file_types=[".py"]) == {"src/cli.py", "src/server.py"}
    assert await paths(c, "", file_types=["PY", "js"]) == {
        "src/cli.py",
        "src/server.py",
        "web/app.js",
    }
    assert await paths(c, "lazy", file_types=["txt"]) == {"docs/notes.txt"}


async def test_max_size_filter(c: GovcClient) -> None:
    limit = len(ALL["docs/notes.txt"])
    expected = {p for p, data in ALL.items() if len(data) <= limit}
    assert await paths(c, "", max_size=limit) == expected
    assert "docs/notes.txt" in expected and "docs/guide.md" not in expected


async def test_min_score_filter(c: GovcClient) -> None:
    everything = await c.search(R, "lazy OR brown OR server", limit=100)
    scores = sorted({r.score for r in everything.results})
    assert len(scores) >= 3
    threshold = scores[len(scores) // 2]
    expected = {r.document.path for r in everything.results if r.score >= threshold and r.document}
    kept = await c.search(R, "lazy OR brown OR server", min_score=threshold, limit=100)
    assert {r.document.path for r in kept.results if r.document} == expected
    assert kept.total == len(expected) < everything.total
    paged = await c.search(R, "lazy OR brown OR server", min_score=threshold, limit=1)
    assert paged.total == len(expected) and len(paged.results) == 1


# ---- ordering and paging ----


def _ordered(response: FullTextSearchResponse) -> list[str]:
    return [r.document.path for r in response.results if r.document]


async def test_sort_orders(c: GovcClient) -> None:
    by_path = await c.search(R, "", sort_by="path", limit=100)
    assert _ordered(by_path) == sorted(ALL)
    by_size = await c.search(R, "", sort_by="size", limit=100)
    assert _ordered(by_size) == sorted(ALL, key=lambda p: (-len(ALL[p]), p))
    by_date = await c.search(R, "", sort_by="date", limit=100)
    modified = {p: T1 for p in FIRST} | {p: T2 for p in SECOND} | {p: T3 for p in UNCOMMITTED}
    assert _ordered(by_date) == sorted(ALL, key=lambda p: (-modified[p], p))
    by_score = await c.search(R, "lazy OR brown", limit=100)
    scores = [r.score for r in by_score.results]
    assert scores == sorted(scores, reverse=True) and len(scores) == 2
    # Field sorts also apply to a filtered subset, and keep real scores.
    scored = await c.search(R, "lazy OR brown", sort_by="path", limit=100)
    assert _ordered(scored) == ["docs/guide.md", "docs/notes.txt"]
    assert all(r.score > 0 for r in scored.results)


async def test_paging_totals(c: GovcClient) -> None:
    pages = []
    for offset in range(0, len(ALL) + 3, 3):
        page = await c.search(R, "", sort_by="path", limit=3, offset=offset)
        assert page.total == len(ALL)
        pages += _ordered(page)
    assert pages == sorted(ALL)
    beyond = await c.search(R, "", limit=5, offset=100)
    assert beyond.results == [] and beyond.total == len(ALL)
    # The largest offset the wire allows, in every sort order (it once made tantivy reserve
    # room for 2^31 hits and abort the server).
    for sort in ("score", "path", "size", "date"):
        far = await c.search(R, "lazy", limit=1000, offset=2**31 - 1, sort_by=sort)
        assert far.results == [] and far.total == 2
    default = await c.search(R, "")
    assert len(default.results) == min(10, len(ALL))


# ---- documents, highlights, content ----


async def test_documents_are_exact(c: GovcClient) -> None:
    response = await c.search(R, "", limit=100)
    documents = {r.document.path: r.document for r in response.results if r.document}
    modified = {p: T1 for p in FIRST} | {p: T2 for p in SECOND} | {p: T3 for p in UNCOMMITTED}
    for path, data in ALL.items():
        doc = documents[path]
        assert doc.hash == blob_id(data) and doc.size == len(data)
        assert doc.last_modified is not None
        assert doc.last_modified.timestamp() == modified[path], path
        assert doc.content == b""  # not asked for
    assert documents["src/cli.py"].content_type == "text/x-python"
    assert documents["docs/guide.md"].content_type == "text/markdown"
    assert documents["assets/logo.png"].content_type == "image/png"


async def test_include_content(c: GovcClient) -> None:
    response = await c.search(R, "brown", include_content=True)
    assert {r.document.path: r.document.content for r in response.results if r.document} == {
        "docs/guide.md": ALL["docs/guide.md"],
        "docs/notes.txt": ALL["docs/notes.txt"],
    }


async def test_highlights(c: GovcClient) -> None:
    plain = await c.search(R, "lazy")
    assert all(r.highlights == [] for r in plain.results)
    response = await c.search(R, "lazy", highlight_length=30)
    for result in response.results:
        assert len(result.highlights) == 1, result
        snippet = result.highlights[0]
        assert "**lazy**" in snippet
        assert len(snippet.replace("**", "")) <= 30
    # A limit shorter than the matched word: the word is cut, the limit holds.
    for length in (1, 3):
        tiny = await c.search(R, "lazy", highlight_length=length)
        for result in tiny.results:
            assert result.highlights == ["**" + "lazy"[:length] + "**"], result
    parts = await c.search(R, "args", highlight_length=60, file_types=["py"])
    assert "**args**" in parts.results[0].highlights[0]  # inside parse_args
    camel = await c.search(R, "port", highlight_length=60)
    assert "server**Port**" in camel.results[0].highlights[0]  # a part of serverPort
    # Asked again (the texts are kept in memory now): the same snippets; a binary file has none.
    again = await c.search(R, "lazy", highlight_length=30)
    assert [r.highlights for r in again.results] == [r.highlights for r in response.results]
    for _ in range(2):
        binary = await c.search(R, "name:logo", highlight_length=30)
        assert [(r.document.path, r.highlights) for r in binary.results if r.document] == [
            ("assets/logo.png", [])
        ]


# ---- bad input ----


async def test_bad_requests(c: GovcClient) -> None:
    for query in ['"unclosed', "a AND (", "nosuchfield:x", "size:[1 TO", "path:*"]:
        error = await status_of(c.search(R, query))
        assert error.status == Status.INVALID_ARGUMENT and "query" in error.message, query
    error = await status_of(c.search(R, "x", sort_by="colour"))
    assert error.status == Status.INVALID_ARGUMENT and "sort_by" in error.message
    error = await status_of(c.search(R, "x", limit=-1))
    assert error.status == Status.INVALID_ARGUMENT and "limit" in error.message
    error = await status_of(c.search(R, "x", file_types=[""]))
    assert error.status == Status.INVALID_ARGUMENT and "file_types" in error.message
    error = await status_of(c.search("no-such-repo", "x"))
    assert error.status == Status.NOT_FOUND
    error = await status_of(c.search("bad/id", "x"))
    assert error.status == Status.INVALID_ARGUMENT and "repository_id" in error.message
    assert await paths(c, "brown") == {"docs/guide.md", "docs/notes.txt"}  # still serving


async def test_deeply_nested_queries_are_refused_not_crashing(c: GovcClient) -> None:
    # tantivy's parser overflows its stack (and kills the process) on a few thousand open
    # parentheses, well within the query size limit.
    for query in ("(" * 16000 + "brown", "(a" * 5000 + ")" * 5000):
        for highlight_length in (0, 40):
            with pytest.raises(GovcRpcError) as info:
                await c.search(R, query, highlight_length=highlight_length)
            assert info.value.status == Status.INVALID_ARGUMENT
            assert "nested deeper than 100" in str(info.value)
    with pytest.raises(GovcRpcError) as info:
        await c.search_with_aggregation(R, "(" * 16000 + "brown", group_by=["extension"])
    assert info.value.status == Status.INVALID_ARGUMENT
    # Quotes do not hide parentheses from the guard (tantivy reads '"(((' as a phrase holding
    # a double quote, and then parses the parentheses).
    for query in ("'\"" + "(" * 16000 + "a" + ")" * 100, '"' + "(" * 16000 + '"'):
        with pytest.raises(GovcRpcError) as info:
            await c.search(R, query)
        assert info.value.status == Status.INVALID_ARGUMENT
    # 100 levels are fine.
    assert await paths(c, "(" * 100 + "brown" + ")" * 100) == await paths(c, "brown")


# ---- read-your-writes ----


async def test_read_your_writes(c: GovcClient) -> None:
    await c.add_file(R, "src/new.py", b"def zebra_crossing():\n    pass\n")
    assert await paths(c, "zebra") == {"src/new.py"}  # uncommitted: in the work tree
    await c.commit(R, "zebra")
    assert await paths(c, "zebra") == {"src/new.py"}
    await c.add_file(R, "src/new.py", b"def giraffe():\n    pass\n")
    assert await paths(c, "zebra") == set()
    assert await paths(c, "giraffe") == {"src/new.py"}
    await c.remove_file(R, "src/new.py")
    assert await paths(c, "giraffe") == set()
    await c.move_file(R, "docs/notes.txt", "archive/notes.txt")
    assert await paths(c, "bread") == {"archive/notes.txt"}


async def test_batch_writes_are_searchable(c: GovcClient) -> None:
    batch = c.batch(R, transaction=True)
    batch.write("batch/one.txt", "okapi")
    batch.write("batch/two.txt", "okapi and lemur")
    await batch.run()
    assert await paths(c, "okapi") == {"batch/one.txt", "batch/two.txt"}


async def test_a_file_a_merge_brings_keeps_the_time_of_its_own_commit(
    client: GovcClient, clock: Clock
) -> None:
    """As `git log -1 -- a.txt` says: the feature commit changed a.txt, not the merge that brought
    it; ReadFile, search, aggregation by author and SQL all agree."""
    c, repo = client, "merged"
    await c.create_repository(repo)
    await c.add_file(repo, "a.txt", b"needle a1\n")
    await c.add_file(repo, "b.txt", b"needle b1\n")
    clock.now = T1
    await c.commit(repo, "base", author=ADA)
    await c.create_branch(repo, "feature")
    await c.checkout_branch(repo, "feature")
    await c.add_file(repo, "a.txt", b"needle a2\n")
    clock.now = T1 + 10
    await c.commit(repo, "feature edits a", author=BOB)
    await c.checkout_branch(repo, "main")
    await c.add_file(repo, "b.txt", b"needle b2\n")
    clock.now = T1 + 20
    await c.commit(repo, "main edits b", author=ADA)
    clock.now = T1 + 30
    assert not (await c.merge_branch(repo, "feature")).conflicts

    read = await c.read_file(repo, "a.txt")
    assert read.last_modified is not None and read.last_modified.timestamp() == T1 + 10
    found = await c.search(repo, "needle", sort_by="path")
    assert [
        (r.document.path, r.document.last_modified.timestamp())
        for r in found.results
        if r.document and r.document.last_modified
    ] == [("a.txt", T1 + 10), ("b.txt", T1 + 20)]
    by_author = await c.search_with_aggregation(repo, "needle", ["author"])
    assert sorted((g.group_value, g.count) for g in by_author.groups) == [(ADA, 1), (BOB, 1)]
    rows = await c.execute_sql(repo, "SELECT last_modified FROM files WHERE path = 'a.txt'")
    assert [dict(r.fields) for r in rows.rows] == [{"last_modified": "2023-11-14T22:13:30Z"}]


async def test_checkout_changes_results(c: GovcClient, clock: Clock) -> None:
    await c.add_file(R, "README.md", UNCOMMITTED["README.md"])
    await c.commit(R, "readme")
    await c.create_branch(R, "feature")
    await c.checkout_branch(R, "feature")
    await c.add_file(R, "feature.txt", b"narwhal\n")
    await c.remove_file(R, "docs/notes.txt")
    await c.commit(R, "feature work")
    assert await paths(c, "narwhal") == {"feature.txt"}
    assert await paths(c, "bread") == set()
    await c.checkout_branch(R, "main")
    assert await paths(c, "narwhal") == set()
    assert await paths(c, "bread") == {"docs/notes.txt"}
    merged = await c.merge_branch(R, "feature", "main")
    assert not merged.conflicts
    assert await paths(c, "narwhal") == {"feature.txt"}


async def indexed_documents(c: GovcClient) -> int:
    """Documents in the (committed) search index of the whole server, as GetHealth reports."""
    return int((await c.health()).checks["search_documents"])


async def test_deleting_a_repository_removes_its_documents(c: GovcClient) -> None:
    await c.create_repository("other")
    await c.add_file("other", "other.txt", b"brown owl\n")
    assert await c.search("other", "brown") is not None
    before = await indexed_documents(c)
    await c.delete_repository(R)
    await c.create_repository(R)
    assert await paths(c, "") == set()
    assert await paths(c, "brown") == set()
    assert await indexed_documents(c) == before - len(ALL)
    assert {r.document.path for r in (await c.search("other", "brown")).results if r.document} == {
        "other.txt"
    }


async def test_a_repository_re_created_at_once_is_indexed_whole(
    c: GovcClient, server: GovcServer
) -> None:
    # Deleted and re-created with the same file before the delete was committed: the index must
    # not take the old, about-to-be-deleted document for the new one's.
    await c.create_repository("again")
    await c.add_file("again", "a.txt", b"hello world\n")
    assert (await c.search("again", "hello")).total == 1
    await c.delete_repository("again")
    await c.create_repository("again")
    await c.add_file("again", "a.txt", b"hello world\n")
    assert (await c.search("again", "hello")).total == 1
    # The delete is committed by now: a search returns once the index has committed the writes
    # before it. Whatever else a commit after the commit interval would have brought, a commit
    # brings: a waited search of another repository commits everything applied (one commit
    # covers the whole index).
    await c.add_file(R, "later.txt", b"afterwards\n")
    assert await paths(c, "afterwards") == {"later.txt"}
    assert (await c.search("again", "hello")).total == 1


async def test_a_document_is_never_added_twice(c: GovcClient, server: GovcServer) -> None:
    # What the indexer keeps of a repository is dropped while its changes are uncommitted (as
    # when it is evicted): re-read from the committed index, it lacks them, and the same
    # changes are applied again; each file must still be one document.
    indexer = server.indexer
    assert indexer is not None
    await c.create_repository("once")
    await c.add_file("once", "a.txt", b"unique words here\n")
    await poll_until(  # applied, not yet committed
        lambda: "a.txt" in (indexer._docs.get("once") or {}),
        interval=0.001,
        message="a.txt was never applied",
    )
    indexer._docs.pop("once")  # as an eviction would
    indexer.touch("once")
    await c.add_file("once", "b.txt", b"other words\n")
    assert (await c.search("once", "unique")).total == 1
    assert (await c.search("once", "")).total == 2


async def test_a_failed_batch_is_retried_by_the_next_search(
    c: GovcClient, server: GovcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer = server.indexer
    assert indexer is not None
    await c.create_repository("flaky")
    await c.add_file("flaky", "a.txt", b"first file\n")
    assert (await c.search("flaky", "first")).total == 1
    real = indexer._replace_documents
    failures = []

    def fail_once(*args: object) -> bool:
        if not failures:
            failures.append(args)
            raise RuntimeError("disk trouble")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(indexer, "_replace_documents", fail_once)
    await c.add_file("flaky", "b.txt", b"second file\n")
    # The batch that failed was rolled back and is applied again while the search waits.
    assert (await c.search("flaky", "second")).total == 1
    assert len(failures) == 1

    def fail(*args: object) -> bool:
        failures.append(args)
        raise RuntimeError("disk trouble")

    # Failing for good: the search is answered (from what the index has), not left waiting...
    monkeypatch.setattr(indexer, "_replace_documents", fail)
    await c.add_file("flaky", "c.txt", b"third file\n")
    assert (await c.search("flaky", "third")).total == 0
    assert len(failures) == 3  # the first attempt and one retry
    # ...and once indexing works again, the next search compares the repository with storage
    # and finds the file.
    monkeypatch.setattr(indexer, "_replace_documents", real)
    assert (await c.search("flaky", "third")).total == 1


async def test_a_failing_repository_does_not_take_others_down_with_it(
    c: GovcClient, server: GovcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer = server.indexer
    assert indexer is not None
    for repo_id in ("slow", "bad", "good"):
        await c.create_repository(repo_id)
    real = indexer._replace_documents
    busy, written = threading.Event(), threading.Event()

    def patched(repo_id: str, *args: object) -> bool:
        if repo_id == "slow":
            busy.set()
            # Holds the indexer until bad and good are written, so they form one batch.
            assert written.wait(30), "the test never wrote bad and good"
        if repo_id == "bad":
            raise RuntimeError("disk trouble")
        return real(repo_id, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(indexer, "_replace_documents", patched)
    try:
        await c.add_file("slow", "s.txt", b"slow\n")
        await poll_until(busy.is_set, message="the indexer never took up slow")
        await c.add_file("bad", "b.txt", b"bad\n")
        await c.add_file("good", "g.txt", b"healthy words\n")
    finally:
        written.set()
    # bad and good are indexed in one batch, which fails because of bad every time: good is
    # applied again without it.
    assert (await c.search("good", "healthy")).total == 1


async def test_uncommitted_changes_are_never_dropped_from_memory(
    c: GovcClient, server: GovcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What is kept of a repository with uncommitted changes must not be evicted: re-read from
    # the committed index, it would lack them. A file changed A -> B -> A would then keep B.
    from govc.core.cache import LruCache
    from govc.search import indexer as indexer_module

    indexer = server.indexer
    assert indexer is not None
    await c.create_repository("alpha")
    await c.add_file("alpha", "f.txt", b"apple pie\n")
    assert (await c.search("alpha", "apple")).total == 1  # committed
    monkeypatch.setattr(indexer_module, "COMMIT_INTERVAL", 30.0)  # only a waiting search commits
    monkeypatch.setattr(indexer_module, "UNCOMMITTED_MAX", 1)
    monkeypatch.setattr(indexer, "_docs", LruCache(2))  # as if 2 repositories were kept

    async def applied(repo_id: str, path: str, content: bytes) -> None:
        await poll_until(
            lambda: (indexer._docs.get(repo_id) or {}).get(path) == fulltext_doc(content),
            interval=0.001,
            message=f"{repo_id}/{path} was never applied",
        )

    await c.add_file("alpha", "f.txt", b"banana split\n")
    await applied("alpha", "f.txt", b"banana split\n")
    for repo_id in ("beta", "gamma"):
        await c.create_repository(repo_id)
        await c.add_file(repo_id, "x.txt", b"x\n")
        await applied(repo_id, "x.txt", b"x\n")
    await c.add_file("alpha", "f.txt", b"apple pie\n")
    assert (await c.search("alpha", "apple")).total == 1
    assert (await c.search("alpha", "banana")).total == 0


def fulltext_doc(content: bytes) -> object:
    from govc.search.fulltext import FileDoc

    return FileDoc(blob_id(content), len(content))


def test_only_the_indexer_reloads_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A search waits for a version, and the indexer publishes it once the commit holding it is
    # committed and reloaded. tantivy's default reader also reloads itself, from a thread
    # watching meta.json (every 0.5 s): a reload there that read the previous meta.json can
    # store its searcher after the indexer's, so a search sees the index as it was before a
    # write it was told is indexed (a file's older blob). That thread cannot be held from
    # here, so this checks the reader is configured so that it never reloads by itself.
    from govc.search import fulltext

    open_index = fulltext.open_index
    policies: list[str] = []

    class Recording:
        def __init__(self, index: object) -> None:
            self.index = index

        def config_reader(self, reload_policy: str = "commit", num_warmers: int = 0) -> None:
            policies.append(reload_policy.lower())
            self.index.config_reader(reload_policy, num_warmers)  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            return getattr(self.index, name)

    def recording(directory: str, reuse: bool) -> tuple[object, bool]:
        index, reused = open_index(directory, reuse)
        return Recording(index), reused

    monkeypatch.setattr(fulltext, "open_index", recording)
    for _ in range(2):  # created, then reused
        indexer = Indexer(None, None, None, None, str(tmp_path / "search"))  # type: ignore[arg-type]
        indexer._save_state()
        indexer.close()
        assert policies == ["manual"]
        policies.clear()


async def test_repositories_do_not_see_each_other(c: GovcClient) -> None:
    await c.create_repository("twin")
    await c.add_file("twin", "docs/guide.md", b"brown twin\n")
    assert await paths(c, "twin") == set()
    twin = await c.search("twin", "brown")
    assert [(r.document.path, r.document.hash) for r in twin.results if r.document] == [
        ("docs/guide.md", blob_id(b"brown twin\n"))
    ]


# ---- restart ----


@pytest.fixture
async def data_dir(tmp_path: Path) -> AsyncIterator[Path]:
    yield tmp_path / "data"


async def _serve(data_dir: Path, clock: Clock) -> GovcServer:
    server = GovcServer(server_config(data_dir, clock=clock))
    await server.start()
    return server


async def _build_corpus_and_stop(data_dir: Path, clock: Clock) -> None:
    """A server on `data_dir` with the corpus, indexed, then stopped."""
    server = await _serve(data_dir, clock)
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as client:
            await build_corpus(client, clock)
            await paths(client, "")  # the index has caught up: state.json matches storage
    finally:
        await server.stop()


QUERIES = ["brown", '"lazy dog"', "args", "", "path:web", "lazy OR server"]


async def _answers(server: GovcServer) -> list[list[tuple[str, str, float]]]:
    async with GovcClient(f"127.0.0.1:{server.port}") as client:
        answers = []
        for query in QUERIES:
            response = await client.search(R, query, limit=100, sort_by="path")
            answers.append(
                [
                    (r.document.path, r.document.hash, r.score)
                    for r in response.results
                    if r.document
                ]
            )
        return answers


async def test_restart_reuses_and_rebuilds_the_index(
    data_dir: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    server = await _serve(data_dir, clock)
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as client:
            await build_corpus(client, clock)
        first = await _answers(server)
    finally:
        await server.stop()
    caplog.set_level(logging.INFO)
    assert first[0] and all(isinstance(a, list) for a in first)

    server = await _serve(data_dir, clock)
    try:
        assert server.indexer is not None
        assert await _answers(server) == first
        assert server.indexer.batches == 0  # nothing to catch up: the index was reused
    finally:
        await server.stop()

    shutil.rmtree(data_dir / "search")
    server = await _serve(data_dir, clock)
    try:
        rebuilt = await _answers(server)
    finally:
        await server.stop()
    # The same documents in the same order; scores may differ, because BM25's statistics in the
    # incrementally built index still count replaced documents until segments merge.
    assert [[hit[:2] for hit in answer] for answer in rebuilt] == [
        [hit[:2] for hit in answer] for answer in first
    ]
    messages = [record.getMessage() for record in caplog.records]
    assert not any("catching up" in m for m in messages[: messages.index("govc stopped")])
    assert any("building it from storage" in m for m in messages)


async def test_restart_catches_up_on_missed_writes(
    data_dir: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    await _build_corpus_and_stop(data_dir, clock)
    # Writes the index never saw: the state file says the index is older than storage.
    state = data_dir / "search" / "state.json"
    state.write_text(
        json.dumps({"format": FORMAT, "repositories": {"search": "stale", "gone": "x"}})
    )
    caplog.set_level(logging.INFO)
    server = await _serve(data_dir, clock)
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as client:
            found = await client.search(R, "brown", limit=100)
            assert {r.document.path for r in found.results if r.document} == {
                "docs/guide.md",
                "docs/notes.txt",
            }
    finally:
        await server.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert "search index: catching up 1 repositories, dropping 1" in messages
    assert not any("rebuilding" in m or "building it" in m for m in messages)


async def _paths_after_start(data_dir: Path, clock: Clock, query: str) -> set[str]:
    """What a server started on `data_dir` finds for `query` (then it stops)."""
    server = await _serve(data_dir, clock)
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as client:
            return await paths(client, query)
    finally:
        await server.stop()


class _CatchUpHold:
    """`held` is set once the catch-up is stopped at its first repository; it goes on once
    `release` is set."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()


def _hold_catch_up(monkeypatch: pytest.MonkeyPatch) -> _CatchUpHold:
    """Make the start-up catch-up stop at its first repository until released (other threads,
    such as a search's own comparison, pass)."""
    hold = _CatchUpHold()
    fingerprint = Indexer._fingerprint

    def held(self: Indexer, txn: object, repo_id: str) -> str:
        if threading.current_thread().name == "govc-index-catch-up":
            hold.held.set()
            assert hold.release.wait(30), "the test never released the catch-up"
        return fingerprint(self, txn, repo_id)

    monkeypatch.setattr(Indexer, "_fingerprint", held)
    return hold


def _thread_running(name: str) -> bool:
    return any(t.name == name for t in threading.enumerate())


async def _catch_up_status(client: GovcClient) -> str:
    return (await client.health()).checks["search_catch_up"]


async def test_the_server_serves_while_it_catches_up(
    data_dir: Path, clock: Clock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _build_corpus_and_stop(data_dir, clock)
    state = data_dir / "search" / "state.json"
    state.write_text(json.dumps({"format": FORMAT, "repositories": {R: "stale", "gone": "x"}}))
    hold = _hold_catch_up(monkeypatch)
    caplog.set_level(logging.INFO)
    server = await _serve(data_dir, clock)  # returns although the catch-up is held
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as client:
            # (It lists the repositories first, then it is held at the first.)
            await poll_until(hold.held.is_set, message="the catch-up never reached R")
            assert await _catch_up_status(client) == "comparing: 0 of 1"
            # The catch-up has not reached R: the search compares R itself, finds it out of
            # step, and waits for it to be indexed.
            assert await paths(client, "brown") == {"docs/guide.md", "docs/notes.txt"}
            hold.release.set()

            async def done() -> bool:
                return await _catch_up_status(client) == "done"

            await poll_until(done, message="the catch-up never finished")
            assert await paths(client, "lazy") == {"docs/guide.md", "docs/notes.txt"}
    finally:
        hold.release.set()
        await server.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert "search index: catching up 1 repositories, dropping 1" in messages


async def test_stop_waits_for_a_catch_up_in_progress(
    data_dir: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _build_corpus_and_stop(data_dir, clock)
    (data_dir / "search" / "state.json").write_text(
        json.dumps({"format": FORMAT, "repositories": {}})
    )
    hold = _hold_catch_up(monkeypatch)
    server = await _serve(data_dir, clock)
    storage = server.storage
    assert storage is not None
    closed_while_held: list[bool] = []
    close_storage = storage.close

    def close() -> None:
        closed_while_held.append(not hold.release.is_set())
        close_storage()

    monkeypatch.setattr(storage, "close", close)
    try:
        # Stop only once the catch-up is reading storage (it is held at its first repository).
        await poll_until(hold.held.is_set, message="the catch-up never started comparing")
        stopping = asyncio.create_task(server.stop())
        # Stop gets as far as closing the index: the indexer thread ends, and closing then waits
        # for the catch-up. (That it waits is not observable; a stop that did not would close
        # storage next, which `close` above records.)
        await poll_until(
            lambda: stopping.done() or not _thread_running("govc-indexer"),
            message="stop never reached the index",
        )
        assert not stopping.done()
    finally:
        hold.release.set()
    await asyncio.wait_for(stopping, 30)
    assert closed_while_held == [False], "storage was closed while the catch-up still read it"
    assert not any(t.name == "govc-index-catch-up" for t in threading.enumerate())
    monkeypatch.undo()
    assert await _paths_after_start(data_dir, clock, "brown") == {
        "docs/guide.md",
        "docs/notes.txt",
    }


async def test_corrupt_index_is_rebuilt(
    data_dir: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    await _build_corpus_and_stop(data_dir, clock)
    (data_dir / "search" / "meta.json").write_text("{ not json")
    caplog.set_level(logging.WARNING)
    assert await _paths_after_start(data_dir, clock, "brown") == {
        "docs/guide.md",
        "docs/notes.txt",
    }
    assert any("rebuilding" in record.getMessage() for record in caplog.records)


# ---- aggregation ----


async def _all_hits(c: GovcClient, query: str) -> list[tuple[str, float, int, float]]:
    response = await c.search(R, query, limit=1000)
    return [
        (r.document.path, r.score, r.document.size, r.document.last_modified.timestamp())
        for r in response.results
        if r.document and r.document.last_modified
    ]


def _brute_metrics(hits: list[tuple[str, float, int, float]]) -> dict[str, float]:
    scores = [h[1] for h in hits]
    sizes = [h[2] for h in hits]
    return {
        "count": float(len(hits)),
        "avg_score": sum(scores) / len(scores),
        "max_score": max(scores),
        "min_score": min(scores),
        "avg_size": sum(sizes) / len(sizes),
        "total_size": float(sum(sizes)),
        "min_size": float(min(sizes)),
        "max_size": float(max(sizes)),
    }


def _extension(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1] if "." in name.strip(".") else ""


async def test_aggregation_matches_brute_force(c: GovcClient) -> None:
    for query in ["", "lazy OR brown OR server OR args"]:
        hits = await _all_hits(c, query)
        response = await c.search_with_aggregation(R, query, ["extension"])
        expected: dict[str, list[tuple[str, float, int, float]]] = {}
        for hit in hits:
            expected.setdefault(_extension(hit[0]), []).append(hit)
        assert [(g.group_value, g.count) for g in response.groups] == sorted(
            ((k, len(v)) for k, v in expected.items()), key=lambda kv: (-kv[1], kv[0])
        )
        for group in response.groups:
            assert group.metrics == pytest.approx(_brute_metrics(expected[group.group_value]))
            samples = [s.document.path for s in group.sample_results if s.document]
            assert len(samples) == min(5, group.count)
            assert set(samples) <= {h[0] for h in expected[group.group_value]}
        assert response.summary is not None
        assert response.summary.total_documents == len(hits)
        assert response.summary.total_groups == len(expected)
        assert response.summary.metrics == pytest.approx(_brute_metrics(hits))


async def test_aggregation_keys(c: GovcClient) -> None:
    by_author = await c.search_with_aggregation(R, "", ["author"], aggregations=["count"])
    assert {g.group_value: g.count for g in by_author.groups} == {
        ADA: 4,  # src/server.py changed again by Bob
        BOB: 4,
        "": 1,  # the uncommitted README
    }
    assert all(set(g.metrics) == {"count"} for g in by_author.groups)
    by_dir = await c.search_with_aggregation(R, "", ["path"], aggregations=["total_size"])
    directories: dict[str, int] = {}
    for path, data in ALL.items():
        directory = path.rsplit("/", 1)[0] if "/" in path else "/"
        directories[directory] = directories.get(directory, 0) + len(data)
    assert {g.group_value: g.metrics["total_size"] for g in by_dir.groups} == directories
    by_date = await c.search_with_aggregation(R, "", ["date_range", "extension"])
    # "now" is T3: the README is minutes old, the second commit 3 hours, the first 28 hours.
    assert {g.group_value: g.count for g in by_date.groups} == {
        "last_hour|md": 1,
        "last_day|css": 1,
        "last_day|js": 1,
        "last_day|py": 1,
        "last_day|txt": 1,
        "last_week|": 1,
        "last_week|md": 1,
        "last_week|png": 1,
        "last_week|py": 1,
    }
    assert [g.group_value for g in by_date.groups][:2] == ["last_day|css", "last_day|js"]
    by_size = await c.search_with_aggregation(R, "", ["size_range"])
    assert {g.group_value: g.count for g in by_size.groups} == {"0-1KB": len(ALL)}


async def test_aggregation_time_range(c: GovcClient) -> None:
    day = await c.search_with_aggregation(R, "", ["extension"], time_range="day")
    assert day.summary is not None
    assert day.summary.total_documents == len(SECOND) + len(UNCOMMITTED)
    hour = await c.search_with_aggregation(R, "", ["extension"], time_range="hour")
    assert hour.summary is not None and hour.summary.total_documents == len(UNCOMMITTED)
    year = await c.search_with_aggregation(R, "", [], time_range="year")
    assert year.summary is not None and year.summary.total_documents == len(ALL)
    assert [g.count for g in year.groups] == [len(ALL)]


async def test_aggregation_bad_requests(c: GovcClient) -> None:
    error = await status_of(c.search_with_aggregation(R, "", ["colour"]))
    assert error.status == Status.INVALID_ARGUMENT and "group_by" in error.message
    error = await status_of(c.search_with_aggregation(R, "", ["extension"], aggregations=["p99"]))
    assert error.status == Status.INVALID_ARGUMENT and "aggregations" in error.message
    error = await status_of(c.search_with_aggregation(R, "", ["extension"], time_range="decade"))
    assert error.status == Status.INVALID_ARGUMENT and "time_range" in error.message
    error = await status_of(c.search_with_aggregation(R, '"open', ["extension"]))
    assert error.status == Status.INVALID_ARGUMENT and "query" in error.message


# ---- outside writers and the command line ----


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


async def test_import_beside_a_running_server_becomes_searchable(
    tmp_path: Path, server: GovcServer, client: GovcClient
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "zoo.txt").write_text("the wombat sleeps\n")
    _git(work, "add", ".")
    _git(work, "-c", "user.name=A", "-c", "user.email=a@x", "commit", "-q", "-m", "one")
    assert server.storage is not None
    imported = govc_cli(
        "import", str(work / ".git"), "zoo", "--data-dir", server.storage.config.path
    )
    assert imported.returncode == 0, imported.stderr
    found = await client.search("zoo", "wombat")
    assert [r.document.path for r in found.results if r.document] == ["zoo.txt"]


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line in a thread: it talks to the server on this test's event loop."""
    return await asyncio.to_thread(govc_cli, *args)


async def test_cli_search_and_sql(c: GovcClient, server: GovcServer) -> None:
    address = f"127.0.0.1:{server.port}"
    out = await cli("--server", address, "search", R, "lazy", "--highlight", "40")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["score", "path", "size", "modified"]
    assert any("docs/guide.md" in line for line in lines)
    assert any("**lazy**" in line for line in lines)
    assert lines[-1].startswith("(1-2 of 2 matches")
    grouped = await cli("--server", address, "-r", R, "search", "", "--group-by", "extension")
    assert grouped.returncode == 0, grouped.stderr
    assert (
        grouped.stdout.splitlines()[-1] == f"({len(ALL)} files in 7 groups)"
    )  # py md png js css txt and none
    sql = await cli("--server", address, "sql", R, "SELECT count(*) AS n FROM files")
    assert sql.returncode == 0, sql.stderr
    assert sql.stdout.splitlines()[:3] == ["n", "-", str(len(ALL))]
    bad = await cli("--server", address, "search", R, '"open')
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query=st.lists(
        st.sampled_from([*'ab:"()[]{}+-*^~!?\\/ 01.,', " AND ", " OR ", " NOT ", "path:", "size:"]),
        max_size=20,
    ).map("".join)
    | st.text(max_size=40)
)
async def test_garbage_queries_never_yield_internal(c: GovcClient, query: str) -> None:
    try:
        await c.search(R, query, highlight_length=50)
    except GovcRpcError as exc:
        assert exc.status == Status.INVALID_ARGUMENT, exc


async def test_a_search_waits_a_bounded_time_for_the_index(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from govc.search.indexer import Indexer

    release = threading.Event()
    apply_repo = Indexer._apply_repo

    def stalled(self: Indexer, repo_id: str) -> int:
        assert release.wait(30)
        return apply_repo(self, repo_id)

    monkeypatch.setattr(Indexer, "_apply_repo", stalled)
    server = GovcServer(server_config(tmp_path / "data", clock=clock, index_wait_seconds=0.3))
    await server.start()
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as client:
            await client.create_repository(R)
            await client.add_file(R, "a.txt", b"quokka\n")
            error = await status_of(client.search(R, "quokka"))
            assert error.status == Status.UNAVAILABLE and "caught up" in error.message
            release.set()
            assert await paths(client, "quokka") == {"a.txt"}
    finally:
        release.set()
        await server.stop()


async def test_highlights_in_big_files(c: GovcClient) -> None:
    filler = "".join(f"line {i} nothing to see\n" for i in range(5000)).encode()
    await c.add_file(R, "big/deep.txt", filler + b"here is the wombat\n" + filler)
    # The first find of "thread" is inside "threading"; the word itself comes much later.
    await c.add_file(R, "big/later.py", b"import threading\n" + filler + b"thread = None\n")
    deep = await c.search(R, "wombat", highlight_length=40)
    assert len(deep.results) == 1 and "**wombat**" in deep.results[0].highlights[0]
    later = await c.search(R, "thread", highlight_length=40, file_types=["py"])
    assert [r.document.path for r in later.results if r.document] == ["big/later.py"]
    assert "**thread** = None" in later.results[0].highlights[0]


def test_highlight_windows_keep_whole_words(tmp_path: Path) -> None:
    from govc.search import fulltext

    index, _ = fulltext.open_index(str(tmp_path / "index"), reuse=False)
    query = index.parse_query("test", fulltext.DEFAULT_FIELDS)
    highlighter = fulltext.Highlighter(index.searcher(), query, "test", 10)
    # The window runs 2,048 characters from the first "test": to the "te" of "testing".
    text = "x test  " + "y " * 1020 + "testing more"
    window = highlighter._window(text)
    assert window.startswith("x test") and window.endswith("y ")  # not "... y te"
    # A word cut at the start is left out, or taken whole when the first find is inside it.
    highlighter = fulltext.Highlighter(index.searcher(), query, "te", 10)
    window = highlighter._window("x " + "a" * 40 + "te more words here te")
    assert window.startswith("a" * 40 + "te more")  # not "te more"
    window = highlighter._window("bb " + "c" * 30 + " te")
    assert window.startswith(" te") or window.startswith("te")


def test_highlight_windows_look_for_the_included_words_only() -> None:
    from govc.search.fulltext import _query_words

    assert _query_words("thread -lock") == ["thread"]
    assert _query_words("brown NOT bread") == ["brown"]
    assert _query_words('"Parse the_args" OR parseArgs path:x') == [
        "args",
        "parse",
        "parseargs",
        "the",
    ]
    assert _query_words('"unclosed') == []
    # Nested thousands deep (a few KiB of query): no recursion limit to reach.
    assert _query_words("(a " * 3000 + "hello" + ")" * 3000) == ["a", "hello"]


OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"), st.sampled_from(["a.txt", "d/b.py", "d/e/c.md"]), st.binary(max_size=20)
        ),
        st.tuples(
            st.just("write"), st.sampled_from(["a.txt", "d/b.py", "n.txt"]), st.binary(max_size=20)
        ),
        st.tuples(st.just("rm"), st.sampled_from(["a.txt", "d", "d/e/c.md"]), st.just(b"")),
        st.tuples(st.just("mv"), st.sampled_from(["a.txt", "d/b.py"]), st.just(b"")),
        st.tuples(st.just("commit"), st.just(""), st.just(b"")),
        st.tuples(st.just("checkout"), st.sampled_from(["main", "side"]), st.just(b"")),
        st.tuples(st.just("merge"), st.sampled_from(["main", "side"]), st.just(b"")),
    ),
    min_size=1,
    max_size=12,
)
_examples = iter(range(1_000_000))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
async def test_the_index_follows_any_sequence_of_operations(
    client: GovcClient, server: GovcServer, clock: Clock, ops: list[tuple[str, str, bytes]]
) -> None:
    """Whatever was done, a search for everything lists exactly the work tree (SQL's `files`,
    read from storage), with the same blob ids and last-modified times; and the fingerprint the
    indexer keeps up to date file by file equals one computed from scratch."""
    repo = f"seq{next(_examples)}"
    await client.create_repository(repo)
    await client.add_file(repo, "base.txt", b"base\n")
    await client.commit(repo, "base")
    await client.create_branch(repo, "side")
    for op, arg, data in ops:
        clock.now += 61  # every step at its own time, so times tell steps apart
        try:
            if op == "add":
                await client.add_file(repo, arg, data)
            elif op == "write":
                await client.write_file(repo, arg, data)
            elif op == "rm":
                await client.remove_file(repo, arg)
            elif op == "mv":
                await client.move_file(repo, arg, "moved/" + arg)
            elif op == "commit":
                await client.commit(repo, "step")
            elif op == "checkout":
                await client.checkout_branch(repo, arg)
            else:
                await client.merge_branch(repo, arg)
        except GovcRpcError:
            pass  # refused operations change nothing; the comparison below still holds
        rows = await client.execute_sql(repo, "SELECT path, hash, last_modified FROM files")
        expected = {
            (row.fields["path"], row.fields["hash"], row.fields["last_modified"])
            for row in rows.rows
        }
        found = await client.search(repo, "", limit=1000)
        assert found.total == len(expected)
        assert {
            (
                r.document.path,
                r.document.hash,
                r.document.last_modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            for r in found.results
            if r.document and r.document.last_modified
        } == expected
        indexer, storage = server.indexer, server.storage
        assert indexer is not None and storage is not None
        with storage.read() as txn:
            assert indexer._fingerprints.get(repo) == indexer._fingerprint(txn, repo)
