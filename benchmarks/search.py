"""Search against its floor and against git, in one run: time until 2,000 committed files are
searchable, FullTextSearch p50/p99 for ten queries with and without highlights beside a raw
tantivy index (the floor) and `git grep -l`, and ExecuteSQLQuery p50."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import tantivy

from benchmarks.harness import git, markdown_table, percentile
from generated.govc import GoVcServiceStub, StoreBlobRequest
from govc.client import GovcClient

REPO = "bench-search"
FILES = 2000
BATCH = 1000
QUERY_ROUNDS = 30  # calls per query and side; p50/p99 over all queries' calls
SQL_CALLS = 30
HIGHLIGHT = 150
SQL = "SELECT extension, count(*), sum(size) FROM files GROUP BY extension"

# (tantivy query, the git grep invocations that answer the same question)
QUERIES: list[tuple[str, list[list[str]]]] = [
    ("import", [["-w", "-e", "import"]]),
    ("asyncio", [["-w", "-e", "asyncio"]]),
    ("deprecated", [["-w", "-e", "deprecated"]]),
    ("subprocess", [["-w", "-e", "subprocess"]]),
    ('"raise ValueError"', [["-F", "-e", "raise ValueError"]]),
    ('"return self"', [["-F", "-e", "return self"]]),
    ('"def __init__"', [["-F", "-e", "def __init__"]]),
    ("socket AND timeout", [["-w", "--all-match", "-e", "socket", "-e", "timeout"]]),
    ("json OR pickle", [["-w", "-e", "json", "-e", "pickle"]]),
    ("thread -lock", [["-w", "-e", "thread"], ["-L", "-w", "-e", "lock"]]),
]


def corpus() -> dict[str, bytes]:
    """2,000 files: the running interpreter's standard library `.py` files (not site-packages),
    topped up to 2,000 with the first of them again under `copy/`."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(
        p
        for p in lib.rglob("*.py")
        if "site-packages" not in p.parts and "__pycache__" not in p.parts and p.is_file()
    )
    files = {f"lib/{p.relative_to(lib).as_posix()}": p.read_bytes() for p in paths[:FILES]}
    for p in paths[: FILES - len(files)]:
        files[f"copy/{p.relative_to(lib).as_posix()}"] = p.read_bytes()
    return files


# ---- the floor: a raw tantivy index of the same files, in this process ----


class Floor:
    def __init__(self, files: dict[str, bytes], directory: Path) -> None:
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("path", stored=True, tokenizer_name="raw")
        builder.add_text_field("content", stored=True)
        self.schema = builder.build()
        directory.mkdir(parents=True)
        self.index = tantivy.Index(self.schema, path=str(directory))
        writer = self.index.writer(heap_size=64_000_000, num_threads=1)
        for path, data in files.items():
            writer.add_document(
                tantivy.Document(path=[path], content=[data.decode("utf-8", "replace")])
            )
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()

    def search(self, text: str, highlight: bool) -> list[str]:
        searcher = self.index.searcher()
        query = self.index.parse_query(text, ["content"])
        result = searcher.search(query, limit=10, count=True)
        generator = None
        if highlight:
            generator = tantivy.SnippetGenerator.create(searcher, query, self.schema, "content")
            generator.set_max_num_chars(HIGHLIGHT)
        paths = []
        for _, address in result.hits:
            doc = searcher.doc(address)
            if generator is not None:
                generator.snippet_from_doc(doc).fragment()
            paths.append(doc.get_first("path") or "")
        return paths


# ---- helpers ----


def _timed(call: Callable[[], object], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


async def _timed_async(call: Callable[[], object], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()  # type: ignore[misc]
        out.append(time.perf_counter() - start)
    return out


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.2f} ms"


def _checkout(files: dict[str, bytes], root: Path) -> None:
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "corpus"]):
        git(root, *args)


def _git_grep(root: Path, invocations: list[list[str]]) -> None:
    for args in invocations:
        subprocess.run(
            ["git", "grep", "-l", "-i", "-I", *args],
            cwd=root,
            env={**os.environ, "GIT_PAGER": "cat"},
            capture_output=True,
        )


# ---- the benchmark ----


async def _load(client: GovcClient, files: dict[str, bytes]) -> tuple[float, float, float]:
    """Write the files through BatchOperations and commit; then search until the last file is
    found. Seconds: writing, committing, commit acknowledged -> searchable."""
    await client.create_repository(REPO)
    items = list(files.items())
    start = time.perf_counter()
    for offset in range(0, len(items), BATCH):
        batch = client.batch(REPO)
        for path, data in items[offset : offset + BATCH]:
            batch.write(path, data)
        outcome = await batch.run()
        assert outcome.success, outcome.error
    written = time.perf_counter()
    await client.commit(REPO, f"{len(files)} files")
    committed = time.perf_counter()
    last_path = items[-1][0]
    name = last_path.rsplit("/", 1)[-1].removesuffix(".py")
    while True:
        found = await client.search(REPO, f'filepath:"{last_path}" OR name:{name}', limit=100)
        if any(r.document and r.document.path == last_path for r in found.results):
            break
    searchable = time.perf_counter()
    return written - start, committed - written, searchable - committed


async def run(client: GovcClient, floor_stub: GoVcServiceStub, workdir: Path) -> str:
    files = corpus()
    total_mb = sum(map(len, files.values())) / 1e6
    print(f"search: {len(files)} files, {total_mb:.1f} MB", file=sys.stderr, flush=True)
    write_s, commit_s, searchable_s = await _load(client, files)
    floor = Floor(files, workdir / "floor-index")
    checkout = workdir / "grep-checkout"
    _checkout(files, checkout)

    empty = StoreBlobRequest(repository_id=REPO, content=b"")
    rpc: list[float] = []
    rows = []
    bars_ok = True
    totals: dict[str, list[float]] = {}
    for highlight in (False, True):
        floor_times: list[float] = []
        govc_times: list[float] = []
        # One unrecorded pass, then rounds interleaving the floor, a bare round trip and govc
        # query by query, so background work (segment merges, other load) and the machine's
        # drift fall on all three alike. The round trip comes before govc's search, so that
        # none of govc's own work after answering can fall on it.
        for round_no in range(QUERY_ROUNDS + 1):
            for text, _ in QUERIES:
                f = _timed(lambda t=text, h=highlight: floor.search(t, h), 1)
                r = await _timed_async(lambda: floor_stub.store_blob(empty, timeout=30), 1)
                g = await _timed_async(
                    lambda t=text, h=highlight: client.search(
                        REPO, t, highlight_length=HIGHLIGHT if h else 0
                    ),
                    1,
                )
                if round_no:
                    floor_times += f
                    govc_times += g
                    rpc += r
        totals[f"floor{highlight}"] = floor_times
        totals[f"govc{highlight}"] = govc_times
    rpc_p50 = statistics.median(rpc)
    # The same comparison with each side's calls back to back (no idle time between calls),
    # plain searches only: on this machine a process that was idle answers late, which lengthens
    # the interleaved round trip more than govc's searches, and the bar multiplies it by 1.2.
    warm_floor: list[float] = []
    warm_govc: list[float] = []
    for text, _ in QUERIES:
        warm_floor += _timed(lambda t=text: floor.search(t, False), QUERY_ROUNDS)
    for text, _ in QUERIES:
        warm_govc += await _timed_async(lambda t=text: client.search(REPO, t), QUERY_ROUNDS)
    warm = await _timed_async(lambda: floor_stub.store_blob(empty, timeout=30), 200)
    grep_times: list[float] = []
    for _, invocations in QUERIES:
        grep_times += _timed(lambda i=invocations: _git_grep(checkout, i), 3)
    grep_p50 = statistics.median(grep_times)
    for highlight in (False, True):
        f = totals[f"floor{highlight}"]
        g = totals[f"govc{highlight}"]
        f50, g50 = statistics.median(f), statistics.median(g)
        bar = (f50 + rpc_p50) * 1.2
        latency_ok = g50 <= bar
        # `git grep -l` lists files and makes no snippets: its bar applies to plain searches.
        grep_ok = grep_p50 / g50 >= 10 if not highlight else None
        bars_ok &= latency_ok and grep_ok is not False
        rows.append(
            [
                "FullTextSearch, "
                + ("highlights" if highlight else "no highlights")
                + ", interleaved",
                f"{_ms(f50)} / {_ms(percentile(f, 99))}",
                f"{_ms(g50)} / {_ms(percentile(g, 99))}",
                _ms(bar),
                "pass" if latency_ok else "FAIL",
                f"{grep_p50 * 1000:,.1f} ms",
                f"{grep_p50 / g50:,.1f}x",
                "—" if grep_ok is None else "≥ 10x: " + ("pass" if grep_ok else "FAIL"),
            ]
        )
    f50, g50, bar = (
        statistics.median(warm_floor),
        statistics.median(warm_govc),
        (statistics.median(warm_floor) + statistics.median(warm)) * 1.2,
    )
    bars_ok &= g50 <= bar
    rows.append(
        [
            "FullTextSearch, no highlights, each side's calls back to back",
            f"{_ms(f50)} / {_ms(percentile(warm_floor, 99))}",
            f"{_ms(g50)} / {_ms(percentile(warm_govc, 99))}",
            _ms(bar),
            "pass" if g50 <= bar else "FAIL",
            "—",
            "—",
            "—",
        ]
    )
    sql = await _timed_async(lambda: client.execute_sql(REPO, SQL), SQL_CALLS)
    search_table = markdown_table(
        [
            [
                "case",
                "raw tantivy p50 / p99",
                "govc p50 / p99",
                "bar: (floor + RPC) x 1.2",
                "result",
                "git grep -l p50",
                "govc vs git grep",
                "bar",
            ],
            *rows,
        ]
    )
    load_table = markdown_table(
        [
            ["case", "time", "bar", "result"],
            [
                f"write {len(files)} files ({total_mb:.1f} MB) via BatchOperations",
                f"{write_s:.2f} s",
                "—",
                "—",
            ],
            ["Commit", f"{commit_s * 1000:.0f} ms", "—", "—"],
            [
                "Commit acknowledged -> searchable",
                f"{searchable_s:.2f} s",
                "≤ 2 s",
                "pass" if searchable_s <= 2 else "FAIL",
            ],
            [
                "first write -> searchable",
                f"{write_s + commit_s + searchable_s:.2f} s",
                "—",
                "—",
            ],
            [
                "ExecuteSQLQuery p50 / p99",
                f"{_ms(statistics.median(sql))} / {_ms(percentile(sql, 99))}",
                "—",
                "—",
            ],
            ["bare RPC round trip p50 (floor server), between searches", _ms(rpc_p50), "—", "—"],
            [
                "bare RPC round trip p50 (floor server), 200 back to back",
                _ms(statistics.median(warm)),
                "—",
                "—",
            ],
        ]
    )
    method = (
        f"**Method.** The corpus is {len(files)} files ({total_mb:.1f} MB): the running "
        "interpreter's standard-library `.py` files, topped up to 2,000 with the first of them "
        "again under `copy/`. They are written through BatchOperations (1,000 per call) and "
        'committed on the durable server; the clock for "searchable" starts when Commit is '
        "acknowledged and stops when a search finds the last file written (govc indexes the work "
        "tree as writes are acknowledged, since uncommitted files are searchable too, so part of "
        "the indexing is done before the commit; the next row counts from the first write). "
        "Ten queries (terms, "
        "phrases, booleans: " + ", ".join(f"`{q}`" for q, _ in QUERIES) + f") run {QUERY_ROUNDS}"
        " times each, one at a time, after one unrecorded pass, the two sides interleaved query "
        "by query: govc through `GovcClient` (limit 10, with and without "
        f"{HIGHLIGHT}-character highlights); the floor in the benchmark process on a raw tantivy "
        "index of the same files (one text field, default tokenizer, top 10, stored paths, "
        "snippets from stored content); `git grep -l -i -I` over a checkout of the same files "
        "(3 runs per query; a `-w` word match for terms and booleans, `-F` for phrases, two "
        "greps for the exclusion). The bar is the issue's: govc's p50 at most 1.2 times the "
        "floor's p50 plus a bare RPC round trip (an empty StoreBlob on the floor server, "
        "timed between the two sides' searches, so that it meets the same conditions as they "
        "do), and at least 10 times faster than git grep, which is judged on plain searches "
        "(`git grep -l` lists files and makes no snippets). On this machine a process that was "
        "idle answers late: the round trip takes longer between searches than back to back "
        "(the two round-trip rows), and since the bar multiplies it by 1.2, that delay alone "
        "widens the interleaved bar. So plain searches are also timed with each side's calls "
        "back to back (300 per side, 30 per query) against the back-to-back round trip, and "
        f"both comparisons must pass. `{SQL}` runs {SQL_CALLS} times."
    )
    verdict = "All search bars pass." if bars_ok and searchable_s <= 2 else "A search bar fails."
    return "\n\n".join(["## Search", search_table, load_table, _paragraph_wrap(method), verdict])


def _paragraph_wrap(text: str) -> str:
    import textwrap

    return textwrap.fill(" ".join(text.split()), width=100, break_on_hyphens=False)
