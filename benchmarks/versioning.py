"""Version control against the real git, in one run: a 1,000-file commit, ListCommits over a
10,000-commit history, CreateBranch latency."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import PROJECT_ROOT, git, markdown_table, percentile
from govc.client import GovcClient

FILES = 1000
FILE_SIZE = 1024
HISTORY = 10_000
BRANCH_CALLS = 200
IN_FLIGHT = 64


def _files(round_no: int) -> dict[str, bytes]:
    """1,000 distinct 1 KiB text files in 10 directories."""
    files = {}
    for i in range(FILES):
        line = f"round {round_no} file {i} " + "lorem ipsum dolor sit amet " * 3 + "\n"
        body = (line * (FILE_SIZE // len(line) + 1)).encode()[:FILE_SIZE]
        files[f"dir{i % 10}/file{i:04d}.txt"] = body
    return files


async def _govc_commit(client: GovcClient, repo: str, files: dict[str, bytes]) -> float:
    await client.create_repository(repo)
    start = time.perf_counter()
    queue = iter(files.items())

    async def worker() -> None:
        for path, content in queue:
            await client.add_file(repo, path, content)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    await client.commit(repo, "1000 files")
    return time.perf_counter() - start


async def _govc_batch_commit(client: GovcClient, repo: str, files: dict[str, bytes]) -> float:
    await client.create_repository(repo)
    start = time.perf_counter()
    batch = client.batch(repo)
    for path, content in files.items():
        batch.write(path, content)
    outcome = await batch.run()
    await client.commit(repo, "1000 files")
    elapsed = time.perf_counter() - start
    assert outcome.success, outcome.error
    return elapsed


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _git_add_commit(root: Path, files: dict[str, bytes]) -> tuple[float, float]:
    """(add + commit only, write files + add + commit) seconds."""
    git(root, "init", "-q", "-b", "main")
    start = time.perf_counter()
    _write_tree(root, files)
    written = time.perf_counter()
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "1000 files")
    end = time.perf_counter()
    return end - written, end - start


def _fast_import_stream(files: dict[str, bytes], when: int = 1_700_000_000) -> bytes:
    parts = [
        b"commit refs/heads/main\n",
        f"committer bench <bench@example.com> {when} +0000\n".encode(),
    ]
    message = b"1000 files"
    parts.append(b"data %d\n%s\n" % (len(message), message))
    for path, content in files.items():
        parts.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(content), content))
    return b"".join(parts)


def _git_fast_import(root: Path, files: dict[str, bytes]) -> float:
    git(root, "init", "-q", "--bare", "-b", "main")
    stream = _fast_import_stream(files)
    start = time.perf_counter()
    git(root, "fast-import", "--quiet", stdin=stream)
    return time.perf_counter() - start


def _history_stream(commits: int) -> bytes:
    parts = []
    for i in range(commits):
        parts.append(b"commit refs/heads/main\n")
        parts.append(b"committer bench <bench@example.com> %d +0000\n" % (1_600_000_000 + i))
        message = b"commit %d" % i
        parts.append(b"data %d\n%s\n" % (len(message), message))
        content = b"version %d\n" % i
        parts.append(b"M 100644 inline f%d.txt\ndata %d\n%s\n" % (i % 50, len(content), content))
    return b"".join(parts)


async def _timed(call: object, times: int) -> list[float]:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        await call()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return samples


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


async def run(client: GovcClient, data_dir: Path, workdir: Path, rounds: int) -> str:
    """Measure, interleaving govc and git per round; returns the markdown section."""
    govc_times: list[float] = []
    batch_times: list[float] = []
    git_times: list[float] = []
    git_with_write: list[float] = []
    fast_import: list[float] = []
    for r in range(rounds):
        files = _files(r)
        order = ["batch", "govc", "git", "fast-import"]
        if r % 2:
            order.reverse()
        for which in order:
            if which == "batch":
                batch_times.append(await _govc_batch_commit(client, f"bench-batch-{r}", files))
            elif which == "govc":
                govc_times.append(await _govc_commit(client, f"bench-commit-{r}", files))
            elif which == "git":
                add_commit, total = _git_add_commit(workdir / f"git-{r}", files)
                git_times.append(add_commit)
                git_with_write.append(total)
            else:
                fast_import.append(_git_fast_import(workdir / f"fi-{r}.git", files))

    # A 10,000-commit history, made by git fast-import and brought in with `govc import`
    # beside the running server (LMDB allows the second process).
    source = workdir / "history.git"
    git(source.parent, "init", "-q", "--bare", "-b", "main", str(source))
    git(source, "fast-import", "--quiet", stdin=_history_stream(HISTORY))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "govc.cli",
            "import",
            str(source),
            "history",
            "--data-dir",
            str(data_dir),
        ],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    listed = await client.list_commits("history", limit=1)
    assert listed.total == HISTORY, listed.total
    list_all = await _timed(lambda: client.list_commits("history"), 3)
    list_page = await _timed(lambda: client.list_commits("history", limit=100), 20)
    git_log: list[float] = []
    for _ in range(3):
        start = time.perf_counter()
        git(source, "log", "--format=%H %P %an %at %s", "--name-status")
        git_log.append(time.perf_counter() - start)

    names = iter(range(10**9))
    branch_samples = await _timed(
        lambda: client.create_branch("history", f"b{next(names)}", "main~5"), BRANCH_CALLS
    )
    git_branch: list[float] = []
    for i in range(20):
        start = time.perf_counter()
        git(source, "branch", f"g{i}", "main~5")
        git_branch.append(time.perf_counter() - start)

    batch_commit = statistics.median(batch_times)
    govc_commit = statistics.median(govc_times)
    git_commit = statistics.median(git_times)
    rows = [
        ["case", "govc", "git", "govc/git time", "bar", "result"],
        [
            f"write {FILES} files of 1 KiB + commit: BatchOperations + Commit (durable)",
            _ms(batch_commit),
            f"add -A && commit: {_ms(git_commit)}",
            f"{batch_commit / git_commit:.2f}",
            "≤ 1.00",
            "pass" if batch_commit <= git_commit else "FAIL",
        ],
        [
            "same, git also writing the files",
            _ms(batch_commit),
            _ms(statistics.median(git_with_write)),
            f"{batch_commit / statistics.median(git_with_write):.2f}",
            "—",
            "—",
        ],
        [
            "same, git fast-import",
            _ms(batch_commit),
            _ms(statistics.median(fast_import)),
            f"{batch_commit / statistics.median(fast_import):.2f}",
            "—",
            "—",
        ],
        [
            f"same through {FILES} AddFile calls ({IN_FLIGHT} in flight) + Commit",
            _ms(govc_commit),
            f"add -A && commit: {_ms(git_commit)}",
            f"{govc_commit / git_commit:.2f}",
            "—",
            "—",
        ],
        [
            f"ListCommits, all {HISTORY:,} (with changes)",
            _ms(statistics.median(list_all)),
            f"git log --name-status: {_ms(statistics.median(git_log))}",
            f"{statistics.median(list_all) / statistics.median(git_log):.2f}",
            "—",
            "—",
        ],
        [
            "ListCommits, newest 100",
            _ms(statistics.median(list_page)),
            "—",
            "—",
            "—",
            "—",
        ],
        [
            "CreateBranch p50 / p99",
            f"{_ms(percentile(branch_samples, 50))} / {_ms(percentile(branch_samples, 99))}",
            f"git branch: {_ms(statistics.median(git_branch))}",
            "—",
            "—",
            "—",
        ],
    ]
    notes = (
        " ".join(
            [
                f"Medians over {rounds} interleaved rounds (order alternating).",
                f"govc: one BatchOperations call with {FILES} `write` operations, then Commit (a",
                "batch holds at most 1,000 operations), or {FILES} AddFile calls with {IN_FLIGHT}",
                "in flight on one connection, then Commit; every write is fsynced before it is",
                "acknowledged. git: the same files already on disk, `git add -A && git commit`",
                "(git does not fsync objects by default), and `git fast-import` of the same",
                "content.",
                "The history is made by git fast-import and brought in with `govc import` beside",
                "the running server. git branch times include starting the process.",
            ]
        )
        .replace("{FILES}", str(FILES))
        .replace("{IN_FLIGHT}", str(IN_FLIGHT))
    )
    return "## Version control\n\n" + markdown_table(rows) + "\n\n" + notes
