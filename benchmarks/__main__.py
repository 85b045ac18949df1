"""`python -m benchmarks` (`make bench`): run every benchmark module, print the table and write
BENCHMARKS.md. A new benchmark is a module with `floor_payload_sizes()` and `cases(clients)`,
added to MODULES."""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Protocol

import uvloop
from grpclib.client import Channel

from benchmarks import (
    batch,
    blobs,
    export,
    loopstall,
    merge_replay,
    search,
    streaming,
    versioning,
)
from benchmarks.harness import (
    PROJECT_ROOT,
    Case,
    CaseResult,
    Clients,
    ServerProcess,
    filesystem_of,
    machine_summary,
    render_cpu_table,
    render_table,
    run_rounds,
    warm_up,
)
from generated.govc import GoVcServiceStub
from govc.client import GovcClient

HOST = "127.0.0.1"
CALL_TIMEOUT = 30.0
# Many short rounds rather than a few long ones: interleaving finely makes a burst of outside
# load hit both servers alike, and the median discards the rounds it hit anyway.
ROUNDS = 9
DURATION = 0.6
VC_ROUNDS = 5


class BenchmarkModule(Protocol):
    def floor_payload_sizes(self) -> list[int]: ...

    async def cases(self, clients: Clients) -> list[Case]: ...


MODULES: list[BenchmarkModule] = [blobs, streaming]


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def measure(args: argparse.Namespace, workdir: Path) -> tuple[list[CaseResult], list[str]]:
    sizes = sorted({size for module in MODULES for size in module.floor_payload_sizes()})
    floor = ServerProcess(
        "floor",
        ["floor", "--payload-sizes", ",".join(map(str, sizes))],
        workdir / "floor.log",
    )
    govc = ServerProcess(
        "govc", ["govc", "--data-dir", str(workdir / "govc-data")], workdir / "govc.log"
    )
    async with floor, govc:
        channel = Channel(HOST, floor.port)
        try:
            async with GovcClient(f"{HOST}:{govc.port}", timeout=CALL_TIMEOUT) as client:
                clients = Clients(GoVcServiceStub(channel), client, CALL_TIMEOUT)
                cases = [case for module in MODULES for case in await module.cases(clients)]
                _progress(f"warming up {len(cases)} cases")
                await warm_up(cases, args.warmup)
                processes = {"floor": floor, "govc": govc}
                results = await run_rounds(cases, processes, args.rounds, args.duration, _progress)
                _progress("batch against single calls")
                sections = [await batch.run(client, VC_ROUNDS)]
                _progress("version control against git")
                sections.append(
                    await versioning.run(client, workdir / "govc-data", workdir, VC_ROUNDS)
                )
                _progress("search against raw tantivy and git grep")
                sections.append(await search.run(client, clients.floor, workdir))
                return results, sections
        finally:
            channel.close()


def _paragraph(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=100, break_on_hyphens=False)


def report(
    results: list[CaseResult], sections: list[str], args: argparse.Namespace, filesystem: str
) -> str:
    method = _paragraph(f"""
        **Method.** The floor is the generated govc service on bare grpclib + betterproto2 with
        no storage: StoreBlob answers a constant id, GetBlob a payload preallocated in memory.
        govc is the real server in durable mode (every acknowledged write fsynced) on a fresh
        data dir, {filesystem}. Each server runs alone in its own process on uvloop; one client
        process (uvloop) holds one HTTP/2 connection to each: the bare generated stub for the
        floor, `GovcClient` for govc, both sending the same {CALL_TIMEOUT:.0f} s deadline.
        Payloads are pseudo-random (incompressible); every StoreBlob carries distinct content so
        govc never deduplicates, and the floor receives the same bytes. {args.rounds}
        interleaved rounds: in each, every case runs on both servers, the order alternating per
        round; a case on one server is a latency phase (sequential calls, one at a time: p50 and
        p99) then a throughput phase ("in flight" calls kept outstanding on the one connection
        for {args.duration:g} s: calls/s, or MB/s of blob content with MB = 10^6 bytes), after
        an unrecorded warm-up. Every figure is the median across rounds; govc/floor is the
        median of the per-round throughput ratios. Bars (from the issue): StoreBlob 1 KiB at
        least 0.8 times the floor's calls/s, StoreBlob 1 MiB at least 0.7 times the floor's
        MB/s, StreamBlob and UploadBlobStream at least 0.8 times the floor's MB/s. The streaming
        cases drive both servers through the raw generated stub with identical requests; the
        floor sends the same messages from memory without checksums and keeps nothing of an
        upload, while govc reads storage, checksums every chunk and fsyncs the upload. The govc
        server skips betterproto2's per-field warnings guard (govc/transport/speedups.py); the
        floor runs betterproto2 as shipped.
        """)
    cpu_table = render_cpu_table(results)
    cpu = (
        _paragraph("""
            **Server CPU per call** in the throughput phase (user + system time of the server
            process, all threads, divided by the calls served; median across rounds). Outside
            load on the machine moves it less than it moves the rates, so it shows what govc
            spends beyond the floor even when the rates are noisy.
            """)
        + "\n\n"
        + cpu_table
        if cpu_table
        else ""
    )
    machine = _paragraph(f"**Machine.** {machine_summary()}.")
    cases = "\n".join(
        f"- {res.case.name}: {res.case.latency_calls} sequential calls per round; "
        "govc/floor per round: " + ", ".join(f"{r:.2f}" for r in res.ratios)
        for res in results
    )
    parts = [
        "# Benchmarks",
        "govc against the transport floor, side by side in one run (`make bench`).",
        render_table(results),
        method,
        machine,
        cpu,
        cases,
        *sections,
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help=f"interleaved rounds (default {ROUNDS})"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=DURATION,
        help=f"seconds per throughput phase (default {DURATION:g})",
    )
    parser.add_argument(
        "--warmup", type=float, default=0.5, help="seconds of warm-up per case and server"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=PROJECT_ROOT / "BENCHMARKS.md",
        help="where to write the report (default BENCHMARKS.md at the project root)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0:
        parser.error("--rounds must be at least 1 and --duration positive")
    with tempfile.TemporaryDirectory(prefix="govc-bench-") as tmp:
        workdir = Path(tmp)
        results, sections = uvloop.run(measure(args, workdir))
        sections.append(uvloop.run(loopstall.run(workdir)))
        _progress("merges against git merge-tree")
        sections.append(merge_replay.run(workdir))
        _progress("export against git clone")
        sections.append(export.run(workdir))
        filesystem = filesystem_of(workdir)
    text = report(results, sections, args, filesystem)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
