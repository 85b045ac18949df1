"""Does the server's event loop stall? GetBlob 1 KiB latency from one client, alone and while 8
other clients read old revisions of a 10,000-commit history (ReadFile at `main~N` and at commit
ids, ListCommits limit 10). A section of `make bench`; alone: `python -m benchmarks.loopstall`.

Three processes: the server (relaxed durability, started fresh on a copy of a prepared data
dir, so its in-process caches are empty), the load (8 connections, `python -m
benchmarks.loopstall load`) and this one, which only times GetBlob, so that nothing else on its
loop delays the timing. The history is made with git fast-import and brought in with `govc
import`; the git repository and the data dir are cached under the system temporary directory
(the data dir keyed by a hash of the govc sources, so a changed server rebuilds it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.harness import (
    PROJECT_ROOT,
    ServerProcess,
    git,
    machine_summary,
    markdown_table,
    percentile,
    project_env,
)
from benchmarks.serve import stop_event
from govc.client import GovcClient

HOST = "127.0.0.1"
CALL_TIMEOUT = 60.0
REPO = "history"
PROBE_REPO = "probe"  # the GetBlob blob lives apart from the history being read
COMMITS = 10_000
FILES = 2_000  # commit i < FILES creates file i; every later commit changes one at random
DIRS = 40
SEED = 20_261_201
BLOB_SIZE = 1024
CLIENTS = 8
LOAD_SECONDS = 15.0
FLOOR_SECONDS = 5.0
PROBE_INTERVAL = 0.005  # one GetBlob every 5 ms, each timed on its own
BAR_P99 = 0.020
DATA_VERSION = 1  # bump when the generated history or the prepared data dir changes
CACHE_ROOT = Path(tempfile.gettempdir()) / "govc-bench-loopstall"
KEEP_DATA_DIRS = 4  # prepared data dirs (one per version of the govc sources) kept in the cache
# ReadFile revisions: the commits that hold all FILES files, except the tip.
OLDEST = FILES - 1
DEEPEST = COMMITS - 1 - OLDEST  # main~DEEPEST is commit OLDEST
READ_KINDS = ("ReadFile at main~N", "ReadFile at a commit id", "ListCommits limit 10")


def _progress(message: str) -> None:
    print(f"loopstall: {message}", file=sys.stderr, flush=True)


# ---- the history and the prepared data dir ----


def _path(i: int) -> str:
    return f"d{i % DIRS:02d}/f{i:04d}.txt"


def _history_stream() -> bytes:
    """COMMITS commits, one small file change each, fixed dates."""
    rng = random.Random(SEED)
    parts = []
    for i in range(COMMITS):
        file = i if i < FILES else rng.randrange(FILES)
        path = _path(file)
        message = b"commit %d: %s" % (i, path.encode())
        content = (f"{path} version {i}\n" + "lorem ipsum dolor sit amet\n" * 4).encode()
        parts += [
            b"commit refs/heads/main\n",
            b"author bench <bench@example.com> %d +0000\n" % (1_600_000_000 + 60 * i),
            b"committer bench <bench@example.com> %d +0000\n" % (1_600_000_000 + 60 * i),
            b"data %d\n%s\n" % (len(message), message),
            b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(content), content),
        ]
    return b"".join(parts)


@contextlib.contextmanager
def _building(final: Path, prefix: str) -> Iterator[Path]:
    """A fresh directory to build in, moved to `final` (the cache) once the build succeeds and
    removed if it fails; a concurrent run may have published first."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=prefix, dir=CACHE_ROOT))
    try:
        yield built
        built.rename(final)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        if not final.exists():
            raise


def _git_history() -> Path:
    """The bare git repository (cached): `history.git` and `commits.json` (ids, oldest first)."""
    key = hashlib.sha256(f"{DATA_VERSION} {COMMITS} {FILES} {DIRS} {SEED}".encode()).hexdigest()
    final = CACHE_ROOT / f"git-{key[:16]}"
    if (final / "commits.json").exists():
        return final
    _progress(f"making a {COMMITS:,}-commit history with git fast-import")
    with _building(final, "git-building-") as built:
        source = built / "history.git"
        git(built, "init", "-q", "--bare", "-b", "main", str(source))
        git(source, "fast-import", "--quiet", stdin=_history_stream())
        ids = git(source, "rev-list", "--reverse", "main").decode().split()
        assert len(ids) == COMMITS, len(ids)
        (built / "commits.json").write_text(json.dumps(ids))
    return final


def _sources_key() -> str:
    """A hash of the govc package the server runs (and of this benchmark's data version)."""
    import govc

    digest = hashlib.sha256(f"{DATA_VERSION}".encode())
    root = Path(govc.__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


async def _prepared_data_dir(git_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The data dir (cached): the history imported as REPO, a BLOB_SIZE blob in PROBE_REPO,
    the search index caught up; and its description (`meta.json`)."""
    final = CACHE_ROOT / f"data-{_sources_key()}"
    if not (final / "meta.json").exists():
        with _building(final, "data-building-") as built:
            await _build_data_dir(git_dir, built)
    os.utime(final / "meta.json")  # last used: the cache keeps the KEEP_DATA_DIRS newest
    kept = sorted(CACHE_ROOT.glob("data-*/meta.json"), key=lambda p: p.stat().st_mtime)
    for stale in kept[:-KEEP_DATA_DIRS]:
        shutil.rmtree(stale.parent, ignore_errors=True)
    return final / "govc-data", json.loads((final / "meta.json").read_text())


async def _build_data_dir(git_dir: Path, built: Path) -> None:
    data_dir = built / "govc-data"
    _progress("govc import of the history")
    started = time.perf_counter()
    command = ["-m", "govc.cli", "import", str(git_dir / "history.git"), REPO]
    done = subprocess.run(
        [sys.executable, *command, "--data-dir", str(data_dir)],
        cwd=PROJECT_ROOT,
        env=project_env(),
        capture_output=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"govc import failed:\n{done.stderr.decode(errors='replace')}")
    imported = time.perf_counter() - started
    _progress(f"imported in {imported:.1f} s; storing the probe blob, indexing")
    content = random.Random(SEED).randbytes(BLOB_SIZE)
    async with (
        _server(data_dir, built / "server.log") as server,
        GovcClient(f"{HOST}:{server.port}", timeout=CALL_TIMEOUT) as client,
    ):
        await client.create_repository(PROBE_REPO)
        blob = (await client.store_blob(PROBE_REPO, content)).hash
        await _index_caught_up(client)
    meta = {"blob": blob, "commits": json.loads((git_dir / "commits.json").read_text())}
    (built / "meta.json").write_text(json.dumps(meta))


async def _index_caught_up(client: GovcClient, timeout: float = 120.0) -> None:
    """Wait until the search index has caught up with the imported history (a search answers),
    so that a server started on this data dir later has nothing to index."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checks = (await client.health()).checks
        if checks.get("search_catch_up", "done") == "done":
            with contextlib.suppress(Exception):
                await client.search(REPO, "lorem")
                return
        await asyncio.sleep(0.5)
    _progress("warning: the search index did not answer; the server may index while measured")


# ---- child processes ----


def _server(data_dir: Path, log_path: Path) -> ServerProcess:
    """The govc server with relaxed durability (no fsync), as the issue runs it."""
    args = ["govc", "--data-dir", str(data_dir), "--durability", "relaxed"]
    return ServerProcess("govc", args, log_path)


async def _load(port: int, meta_path: str, seconds: float, clients: int) -> None:
    """The child: `clients` connections, each calling in turn ReadFile at `main~N`, ReadFile at
    a commit id (random revisions among those holding every file, random file) and ListCommits
    limit 10, one call at a time, for `seconds`. Prints STARTED, then the latencies as JSON;
    exits when its stdin closes (so that its CPU time can be read until then)."""
    stop = stop_event()
    meta = json.loads(Path(meta_path).read_text())
    ids: list[str] = meta["commits"]
    paths = [_path(i) for i in range(FILES)]
    latencies: dict[str, list[float]] = {kind: [] for kind in READ_KINDS}
    revisions: set[int] = set()
    errors: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        conns = [
            await stack.enter_async_context(GovcClient(f"{HOST}:{port}", timeout=CALL_TIMEOUT))
            for _ in range(clients)
        ]
        for conn in conns:  # open the connections on a call that touches no history
            await conn.get_blob(PROBE_REPO, meta["blob"])
        clock = time.perf_counter
        deadline = clock() + seconds
        print("STARTED", flush=True)

        async def worker(number: int, conn: GovcClient) -> None:
            rng = random.Random(SEED + number)
            turn = number  # the clients start at different steps of the cycle
            while clock() < deadline:
                kind = READ_KINDS[turn % len(READ_KINDS)]
                turn += 1
                path = rng.choice(paths)
                started = clock()
                try:
                    if kind == READ_KINDS[2]:
                        listed = await conn.list_commits(REPO, limit=10)
                        ok = len(listed.commits) == 10
                    else:
                        back = rng.randint(1, DEEPEST)
                        revisions.add(COMMITS - 1 - back)
                        rev = f"main~{back}" if kind == READ_KINDS[0] else ids[-1 - back]
                        read = await conn.read_file(REPO, path, commit=rev)
                        ok = read.content.startswith(f"{path} version ".encode())
                except Exception as exc:
                    errors.append(f"{kind}: {exc!r}")
                    continue
                latencies[kind].append(clock() - started)
                if not ok:
                    errors.append(f"{kind}: unexpected answer")

        await asyncio.gather(*(worker(n, conn) for n, conn in enumerate(conns)))
    print(json.dumps({"latencies": latencies, "revisions": len(revisions), "errors": errors}))
    sys.stdout.flush()
    await stop.wait()


# ---- the measurement ----


class _OutsideCpu:
    """CPU time the rest of the machine used (all CPUs busy time from /proc/stat, less what
    the benchmark's own processes used), per second of a phase; None where /proc is missing."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._start = self._sample()
        self._started = time.perf_counter()

    def _sample(self) -> int | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
            busy = sum(fields[:8]) - fields[3] - fields[4]  # less idle and iowait
            for pid in self.pids:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                busy -= int(stat[11]) + int(stat[12])
        except (OSError, IndexError, ValueError):
            return None
        return busy

    def cpus(self) -> float | None:
        """Average number of CPUs kept busy by other processes since this meter started."""
        end = self._sample()
        if self._start is None or end is None:
            return None
        elapsed = time.perf_counter() - self._started
        return max(0.0, (end - self._start) / os.sysconf("SC_CLK_TCK") / elapsed)


async def _probe(client: GovcClient, blob: str, seconds: float) -> list[float]:
    """GetBlob every PROBE_INTERVAL for `seconds`, each call timed on its own: a stall delays
    every call that arrives during it (no coordinated omission)."""
    loop = asyncio.get_running_loop()
    clock = time.perf_counter
    latencies: list[float] = []
    bad: list[int] = []

    async def one() -> None:
        started = clock()
        got = await client.get_blob(PROBE_REPO, blob)
        latencies.append(clock() - started)
        if len(got.content) != BLOB_SIZE:
            bad.append(len(got.content))

    tasks = []
    begin = loop.time()
    for n in range(round(seconds / PROBE_INTERVAL)):
        delay = begin + n * PROBE_INTERVAL - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    if bad:
        raise RuntimeError(f"GetBlob answered {bad[0]} bytes, not {BLOB_SIZE}")
    return latencies


def _paragraph(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=100, break_on_hyphens=False)


def _cpus(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}"


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def _row(name: str, samples: list[float], bar: str = "—", result: str = "—") -> list[str]:
    if not samples:
        return [name, "—", "—", "—", "0", bar, result]
    return [
        name,
        _ms(percentile(samples, 50)),
        _ms(percentile(samples, 99)),
        _ms(max(samples)),
        f"{len(samples):,}",
        bar,
        result,
    ]


async def run(
    workdir: Path,
    load_seconds: float = LOAD_SECONDS,
    floor_seconds: float = FLOOR_SECONDS,
    clients: int = CLIENTS,
) -> str:
    """Measure; returns the markdown section."""
    git_dir = await asyncio.to_thread(_git_history)
    cached, meta = await _prepared_data_dir(git_dir)
    data_dir = workdir / "loopstall-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    await asyncio.to_thread(shutil.copytree, cached, data_dir)
    meta_path = workdir / "loopstall-meta.json"
    meta_path.write_text(json.dumps(meta))
    async with (
        _server(data_dir, workdir / "loopstall-server.log") as server,
        GovcClient(f"{HOST}:{server.port}", timeout=CALL_TIMEOUT) as client,
    ):
        for _ in range(100):  # open the connection, warm the GetBlob path; not recorded
            await client.get_blob(PROBE_REPO, meta["blob"])
        await asyncio.sleep(1.0)  # let the start-up comparison with the search index finish
        _progress(f"GetBlob {BLOB_SIZE} B without load, {floor_seconds:g} s")
        meter = _OutsideCpu([os.getpid(), server.pid])
        floor = await _probe(client, meta["blob"], floor_seconds)
        outside = [meter.cpus()]
        _progress(f"GetBlob {BLOB_SIZE} B under {clients} reading clients, {load_seconds:g} s")
        load_args = ["load", "--port", str(server.port), "--meta", str(meta_path)]
        load_args += ["--seconds", str(load_seconds), "--clients", str(clients)]
        load_log = workdir / "loopstall-load.log"
        load_process = ServerProcess("load", load_args, load_log, "benchmarks.loopstall", False)
        async with load_process as load:
            if (await load.line(120.0)).strip() != "STARTED":
                raise RuntimeError(f"the load did not start:\n{load.log_path.read_text()}")
            meter = _OutsideCpu([os.getpid(), server.pid, load.pid])
            loaded = await _probe(client, meta["blob"], load_seconds)
            outside.append(meter.cpus())
            answer = await load.line(load_seconds + 4 * CALL_TIMEOUT)
        if not answer:
            raise RuntimeError(f"the load gave no answer:\n{load.log_path.read_text()}")
    reads = json.loads(answer)
    for error in reads["errors"][:5]:
        _progress(f"load error: {error}")
    p99 = percentile(loaded, 99)
    rows = [
        ["scenario", "p50 ms", "p99 ms", "max ms", "calls", "bar", "result"],
        _row(f"GetBlob {BLOB_SIZE // 1024} KiB, no load", floor),
        _row(
            f"GetBlob {BLOB_SIZE // 1024} KiB, under load",
            loaded,
            f"p99 < {BAR_P99 * 1e3:.0f} ms",
            "pass" if p99 < BAR_P99 else "FAIL",
        ),
        *(_row(f"load: {kind}", reads["latencies"][kind]) for kind in READ_KINDS),
    ]
    read_calls = sum(len(reads["latencies"][kind]) for kind in READ_KINDS[:2])
    notes = _paragraph(
        f"""
        The history: {COMMITS:,} commits made by git fast-import (fixed dates), each changing
        one small file: commit i < {FILES:,} creates file i ({FILES:,} files in {DIRS}
        directories), every later commit changes one at random; brought in offline with `govc
        import`. The server (relaxed durability: no fsync) starts fresh on a copy of that data
        dir, so its in-process caches of decoded commits and trees are empty, and runs alone in
        its own process. GetBlob of a {BLOB_SIZE:,}-byte blob (in another repository) is sent
        by one client process on its own connection, one call every {PROBE_INTERVAL * 1e3:g}
        ms, each timed on its own (a stall delays every call that arrives during it): first
        {floor_seconds:g} s with nothing else running, then {load_seconds:g} s while another
        process keeps {clients} connections busy, one call at a time each, cycling through
        ReadFile of a random file at `main~N` (N uniform in 1..{DEEPEST:,}), ReadFile of a
        random file at the full id of a random commit in the same range, and ListCommits limit
        10 from HEAD. Cold: {read_calls:,} ReadFile calls named {reads["revisions"]:,} distinct
        revisions of {DEEPEST:,}, with files last changed up to thousands of commits earlier.
        Bar: GetBlob 1 KiB p99 under load below {BAR_P99 * 1e3:.0f} ms. Load errors:
        {len(reads["errors"])}. Outside load (CPUs kept busy by other processes on the
        machine, of {os.cpu_count()}): {_cpus(outside[0])} without load,
        {_cpus(outside[1])} under load.
        """
    )
    return "## Event loop stalls under cold reads\n\n" + markdown_table(rows) + "\n\n" + notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loopstall", description=__doc__)
    parser.add_argument("--load-seconds", type=float, default=LOAD_SECONDS)
    parser.add_argument("--floor-seconds", type=float, default=FLOOR_SECONDS)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    commands = parser.add_subparsers(dest="child", help="(internal: the child processes)")
    load = commands.add_parser("load")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--meta", required=True)
    load.add_argument("--seconds", type=float, required=True)
    load.add_argument("--clients", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.child == "load":
        uvloop.run(_load(args.port, args.meta, args.seconds, args.clients))
    else:
        with tempfile.TemporaryDirectory(prefix="govc-bench-loopstall-") as tmp:
            section = uvloop.run(
                run(Path(tmp), args.load_seconds, args.floor_seconds, args.clients)
            )
        print(section + "\n\n" + _paragraph(f"**Machine.** {machine_summary()}."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
