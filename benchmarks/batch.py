"""BatchOperations of 10, 50 and 100 `store_blob` operations against the same number of
sequential StoreBlob calls, on the same govc server and connection."""

import statistics
import time
from os import urandom

from benchmarks.harness import markdown_table
from govc.client import GovcClient

REPOSITORY = "bench-batch"
SIZES = (10, 50, 100)
BAR = {100: 13.0}  # the bar: a batch of 100 at least 13x faster
CONTENT = 1024


async def run(client: GovcClient, rounds: int) -> str:
    await client.create_repository(REPOSITORY)
    tag = urandom(8)
    counter = iter(range(10**9))

    def content() -> bytes:
        return (tag + next(counter).to_bytes(8, "big")).ljust(CONTENT, b"x")

    singles: dict[int, list[float]] = {n: [] for n in SIZES}
    batches: dict[int, list[float]] = {n: [] for n in SIZES}
    for r in range(rounds):
        for n in SIZES:
            order = ("single", "batch") if r % 2 == 0 else ("batch", "single")
            for which in order:
                start = time.perf_counter()
                if which == "single":
                    for _ in range(n):
                        await client.store_blob(REPOSITORY, content())
                    singles[n].append(time.perf_counter() - start)
                else:
                    builder = client.batch(REPOSITORY)
                    for _ in range(n):
                        builder.store_blob(content())
                    outcome = await builder.run()
                    batches[n].append(time.perf_counter() - start)
                    if not outcome.success:
                        raise RuntimeError(outcome.error)
    rows = [
        ["operations", "sequential StoreBlob", "one BatchOperations", "speed-up", "bar", "result"]
    ]
    for n in SIZES:
        single, one_call = statistics.median(singles[n]), statistics.median(batches[n])
        bar = BAR.get(n)
        rows.append(
            [
                str(n),
                f"{single * 1000:,.1f} ms",
                f"{one_call * 1000:,.2f} ms",
                f"{single / one_call:.1f}x",
                f"≥ {bar:g}x" if bar else "—",
                ("pass" if single / one_call >= bar else "FAIL") if bar else "—",
            ]
        )
    notes = (
        f"Medians over {rounds} interleaved rounds. Each operation stores a distinct 1 KiB blob; "
        "the sequential side awaits each StoreBlob before sending the next (every one durable "
        "on its own), the batch side sends one BatchOperations call (one transaction, one "
        "fsync). Both go through `GovcClient` on one connection to the durable server."
    )
    return "## Batch against single calls\n\n" + markdown_table(rows) + "\n\n" + notes
