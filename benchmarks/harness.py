"""What every benchmark shares: server processes, measurement, interleaved rounds, the table.

A benchmark module contributes `Case`s. A case has one `Call` per server ("floor" and "govc"):
an async function that makes one RPC and returns the payload bytes it moved. Each round runs,
for every case and for each server in turn (the order alternates per round), a latency phase
(sequential calls) and a throughput phase (`concurrency` calls in flight on one connection for
a fixed time). Results are medians across rounds; the ratio is the median of the per-round
govc/floor throughput ratios (paired rounds cancel slow drift of the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from generated.govc import GoVcServiceStub
from govc.client import GovcClient

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("floor", "govc")

# One RPC; the argument is a call sequence number, the result the payload bytes moved.
Call = Callable[[int], Awaitable[int]]
Unit = Literal["calls/s", "MB/s"]


# ---- server processes ----


GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """`git args` in `cwd` (created if missing) with a fixed identity; its stdout."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, "HOME": str(cwd)},
        input=stdin,
        check=True,
        capture_output=True,
    ).stdout


def project_env() -> dict[str, str]:
    """The environment for a child process that runs this project's code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


class ServerProcess:
    """`python -m <module> <args>` in a child process (by default `benchmarks.serve`, a server
    on an ephemeral port that announces `PORT <n>`); it stops when its stdin closes."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_path: Path,
        module: str = "benchmarks.serve",
        announces_port: bool = True,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self.module = module
        self.announces_port = announces_port
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 120.0) -> int:
        with self.log_path.open("wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                *self.args,
                cwd=PROJECT_ROOT,
                env=project_env(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=1 << 26,  # a child may answer with one long line
            )
        if not self.announces_port:
            return 0
        words = (await self.line(timeout)).split()
        if len(words) != 2 or words[0] != "PORT":
            await self.stop()
            raise RuntimeError(
                f"{self.name} server did not start; its log:\n{self.log_path.read_text()}"
            )
        self.port = int(words[1])
        return self.port

    async def line(self, timeout: float) -> str:
        """The child's next line on stdout ("" if none came within `timeout`)."""
        assert self._proc is not None and self._proc.stdout is not None
        try:
            return (await asyncio.wait_for(self._proc.stdout.readline(), timeout)).decode()
        except TimeoutError:
            return ""

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system, all threads) the server has used so far; None where /proc
        is not available."""
        if self._proc is None:
            return None
        try:
            stat = Path(f"/proc/{self._proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self, timeout: float = 30.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()

    async def __aenter__(self) -> ServerProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


# ---- measurement ----


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Sequencer:
    """Call sequence numbers, unique across every phase of a case (distinct content per call)."""

    def __init__(self) -> None:
        self._next = 0

    def take(self) -> int:
        n = self._next
        self._next += 1
        return n


async def measure_latency(call: Call, calls: int, seq: Sequencer) -> list[float]:
    """Latencies (seconds) of `calls` sequential calls."""
    latencies: list[float] = []
    clock = time.perf_counter
    for _ in range(calls):
        n = seq.take()
        started = clock()
        await call(n)
        latencies.append(clock() - started)
    return latencies


@dataclass(frozen=True)
class Throughput:
    calls: int
    payload_bytes: int
    seconds: float

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.payload_bytes / self.seconds / 1e6


async def measure_throughput(
    call: Call, concurrency: int, duration: float, seq: Sequencer
) -> Throughput:
    """`concurrency` workers call back to back until `duration` has passed; the clock stops
    when the last call in flight has finished."""
    clock = time.perf_counter
    started = clock()
    end = started + duration
    counts = [0, 0]

    async def worker() -> None:
        while clock() < end:
            moved = await call(seq.take())
            counts[0] += 1
            counts[1] += moved

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Throughput(counts[0], counts[1], clock() - started)


# ---- cases and rounds ----


@dataclass(frozen=True)
class Clients:
    """One connection to each server, shared by every case: the floor through the bare
    generated stub, govc through its client library."""

    floor: GoVcServiceStub
    govc: GovcClient
    call_timeout: float  # the per-call deadline both send, so both wires carry the same headers


@dataclass
class Case:
    name: str
    unit: Unit
    concurrency: int
    latency_calls: int
    calls: dict[str, Call]  # server name -> one call
    bar: float | None = None  # minimum govc/floor throughput ratio, if the case has one
    seq: Sequencer = field(default_factory=Sequencer)


@dataclass(frozen=True)
class RoundSample:
    p50: float
    p99: float
    rate: float  # in the case's unit
    cpu_per_call: float | None  # server CPU seconds per call in the throughput phase


@dataclass
class CaseResult:
    case: Case
    samples: dict[str, list[RoundSample]] = field(
        default_factory=lambda: {name: [] for name in SERVERS}
    )

    def median(self, server: str, metric: Literal["p50", "p99", "rate"]) -> float:
        values: list[float] = [getattr(s, metric) for s in self.samples[server]]
        return statistics.median(values)

    def median_cpu(self, server: str) -> float | None:
        values = [s.cpu_per_call for s in self.samples[server] if s.cpu_per_call is not None]
        return statistics.median(values) if values else None

    @property
    def ratios(self) -> list[float]:
        return [
            govc.rate / floor.rate
            for floor, govc in zip(self.samples["floor"], self.samples["govc"], strict=True)
        ]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def passed(self) -> bool | None:
        return None if self.case.bar is None else self.ratio >= self.case.bar


async def _phase(
    case: Case, server: str, process: ServerProcess | None, duration: float
) -> RoundSample:
    call = case.calls[server]
    latencies = await measure_latency(call, case.latency_calls, case.seq)
    cpu_before = process.cpu_seconds() if process else None
    throughput = await measure_throughput(call, case.concurrency, duration, case.seq)
    cpu_after = process.cpu_seconds() if process else None
    rate = throughput.calls_per_s if case.unit == "calls/s" else throughput.mb_per_s
    cpu_per_call = None
    if cpu_before is not None and cpu_after is not None and throughput.calls:
        cpu_per_call = (cpu_after - cpu_before) / throughput.calls
    return RoundSample(percentile(latencies, 50), percentile(latencies, 99), rate, cpu_per_call)


async def warm_up(cases: Sequence[Case], duration: float) -> None:
    """Open streams, fill caches and let both servers reach steady state; nothing recorded."""
    for case in cases:
        for server in SERVERS:
            call = case.calls[server]
            await measure_latency(call, max(1, case.latency_calls // 10), case.seq)
            await measure_throughput(call, case.concurrency, duration, case.seq)


async def run_rounds(
    cases: Sequence[Case],
    processes: Mapping[str, ServerProcess],
    rounds: int,
    duration: float,
    progress: Callable[[str], None] | None = None,
) -> list[CaseResult]:
    """Every case on every server, `rounds` times; `processes` (server name -> its process)
    is read for CPU accounting."""
    results = [CaseResult(case) for case in cases]
    for r in range(rounds):
        order = SERVERS if r % 2 == 0 else tuple(reversed(SERVERS))
        for result in results:
            for server in order:
                sample = await _phase(result.case, server, processes.get(server), duration)
                result.samples[server].append(sample)
            if progress is not None:
                progress(
                    f"round {r + 1}/{rounds} {result.case.name}: ratio {result.ratios[-1]:.2f}"
                )
    return results


# ---- reporting ----


def format_latency(seconds: float) -> str:
    ms = seconds * 1e3
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 100:
        return f"{ms:.1f} ms"
    return f"{ms:.0f} ms"


def format_rate(rate: float, unit: Unit) -> str:
    if unit == "calls/s":
        return f"{rate:,.0f} calls/s"
    return f"{rate:,.1f} MB/s"


def render_table(results: Sequence[CaseResult]) -> str:
    header = [
        "case",
        "in flight",
        "floor p50",
        "floor p99",
        "floor rate",
        "govc p50",
        "govc p99",
        "govc rate",
        "govc/floor",
        "bar",
        "result",
    ]
    rows = [header]
    for res in results:
        case = res.case
        row = [case.name, str(case.concurrency)]
        for server in SERVERS:
            row += [
                format_latency(res.median(server, "p50")),
                format_latency(res.median(server, "p99")),
                format_rate(res.median(server, "rate"), case.unit),
            ]
        passed = res.passed
        row += [
            f"{res.ratio:.2f}",
            "—" if case.bar is None else f"≥ {case.bar:.2f}",
            "—" if passed is None else ("pass" if passed else "FAIL"),
        ]
        rows.append(row)
    return markdown_table(rows)


def render_cpu_table(results: Sequence[CaseResult]) -> str | None:
    """Server CPU time per call in the throughput phase (all threads), or None if unknown."""
    rows = [["case", "floor CPU/call", "govc CPU/call", "govc/floor"]]
    for res in results:
        floor, govc = res.median_cpu("floor"), res.median_cpu("govc")
        if floor is None or govc is None:
            return None
        ratio = f"{govc / floor:.2f}" if floor > 0 else "—"
        rows.append([res.case.name, format_cpu(floor), format_cpu(govc), ratio])
    return markdown_table(rows)


def format_cpu(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.0f} µs" if us < 10_000 else f"{us / 1e3:,.1f} ms"


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """A markdown table, padded so it also reads well as plain text; the first column is text,
    the others are right-aligned numbers."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    separator = [("-" * (w - 1) + ":") if i else "-" * w for i, w in enumerate(widths)]
    return "\n".join([line(rows[0]), line(separator), *(line(r) for r in rows[1:])])


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for text_line in Path("/proc/cpuinfo").read_text().splitlines():
            if text_line.startswith("model name"):
                return text_line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def filesystem_of(path: Path) -> str:
    """The mount point and filesystem type holding `path` (Linux; 'unknown' elsewhere)."""
    best = ("", "unknown")
    with contextlib.suppress(OSError):
        resolved = str(path.resolve())
        for text_line in Path("/proc/mounts").read_text().splitlines():
            parts = text_line.split()
            if len(parts) < 3:
                continue
            mount, fstype = parts[1], parts[2]
            inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best[0]):
                best = (mount, fstype)
    return f"{best[1]} (mounted at {best[0] or '?'})"


def machine_summary() -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{os.cpu_count()} CPUs ({_cpu_model()}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}); run {now}"
    )
