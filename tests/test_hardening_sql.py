"""ExecuteSQLQuery under attack: the time budget covers every function call, runaway queries
end within it, and one client's runaway queries do not hold up everyone else's."""

import asyncio
import time
from collections.abc import Iterator

import pytest
from grpclib.const import Status

from generated.govc import ExecuteSqlQueryRequest
from govc.client import GovcClient
from govc.search import sql as sql_module

BUDGET = 0.5  # seconds: the engine's budget in these tests (set before the server starts)
R = "runaway"
OTHER = "other"
ENDLESS = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"


@pytest.fixture(autouse=True)
def small_budget(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sql_module, "TIME_BUDGET_SECONDS", BUDGET)
    yield


@pytest.fixture
async def c(client: GovcClient) -> GovcClient:
    await client.create_repository(R)
    await client.create_repository(OTHER)
    await client.add_file(R, "a.txt", b"a\n")
    await client.commit(R, "one")
    return client


async def timed(c: GovcClient, query: str, repo: str = R) -> tuple[Status, object, float]:
    """(status, rows or error message, seconds)."""
    started = time.monotonic()
    try:
        response = await c.stub.execute_sql_query(
            ExecuteSqlQueryRequest(repository_id=repo, sql_query=query)
        )
    except Exception as exc:
        status = getattr(exc, "status", None)
        assert status is not None, exc
        return status, getattr(exc, "message", ""), time.monotonic() - started
    rows = [dict(row.fields) for row in response.rows]
    return Status.OK, rows, time.monotonic() - started


MANY = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 1000)"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # printf repeats %c one character at a time: 1e9 steps in one call (4.5-9 s, OK),
        # out of the progress handler's reach. Now refused at once: NULL, as sqlite gives
        # for a value over its length limit.
        ("SELECT printf('%.999999999c', 'x') AS v", (Status.OK, [{}])),
        ("SELECT format('%.*c', 999999999, 'x') AS v", (Status.OK, [{}])),
        ("SELECT printf('%!.999999999c%999999999d', 'x', 1) AS v", (Status.OK, [{}])),
        # Many calls each under the limit: the deadline is checked before every call.
        (f"{MANY} SELECT count(printf('%.50000000c', x)) FROM n", Status.DEADLINE_EXCEEDED),
        # Amplification past the length limit: over budget, not a bad argument.
        (
            "SELECT length(replace(printf('%.1000000c', 'x'), 'x', printf('%.100c', 'y')))",
            Status.RESOURCE_EXHAUSTED,
        ),
        (
            "SELECT length(hex(hex(hex(printf('%.10000000c', 'x')))))",
            {Status.RESOURCE_EXHAUSTED, Status.DEADLINE_EXCEEDED},  # (on a busy machine)
        ),
        (
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
            "SELECT length(group_concat(printf('%.1000000c', 'x'))) FROM n",
            {Status.RESOURCE_EXHAUSTED, Status.DEADLINE_EXCEEDED},  # (whichever comes first)
        ),
        (
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
            "SELECT length(group_concat(x)) FROM n",
            Status.DEADLINE_EXCEEDED,
        ),
        ("SELECT length(zeroblob(1000000000))", Status.INVALID_ARGUMENT),  # not allowed
        # 100 linear calls on a 60 MB value in one row: no progress handler look between
        # them (18 s for a 0.5 s budget); now each call looks at the clock first.
        (
            "WITH s(v) AS MATERIALIZED (SELECT printf('%.60000000c', 'x')) SELECT "
            + " + ".join(["length(upper(v))"] * 100)
            + " FROM s",
            Status.DEADLINE_EXCEEDED,
        ),
        # sqlite's instr, replace and trim compare byte by byte: quadratic in one call
        # (instr and replace here ~20 s, ltrim ~5 s). Now linear, or refused.
        (
            "SELECT instr(printf('%.2000000c', 'a'), printf('%.1000000c', 'a') || 'b') AS i",
            (Status.OK, [{"i": "0"}]),
        ),
        (
            "SELECT length(replace(printf('%.2000000c', 'a'), "
            "printf('%.1000000c', 'a') || 'b', 'x')) AS n",
            (Status.OK, [{"n": "2000000"}]),
        ),
        (
            "SELECT length(ltrim(printf('%.2000000c', 'a'), printf('%.1000c', 'b') || 'a'))",
            Status.RESOURCE_EXHAUSTED,
        ),
    ],
)
async def test_one_call_cannot_outrun_the_budget(
    c: GovcClient, query: str, expected: Status | set[Status] | tuple[Status, object]
) -> None:
    status, answer, seconds = await timed(c, query)
    if isinstance(expected, tuple):
        assert (status, answer) == expected
    elif isinstance(expected, set):
        assert status in expected, answer
    else:
        assert status == expected, answer
    assert seconds < BUDGET + 1, seconds
    assert (await timed(c, "SELECT 1 AS one"))[:2] == (Status.OK, [{"one": "1"}])


async def test_bounded_functions_agree_with_sqlite(c: GovcClient) -> None:
    status, rows, _ = await timed(
        c,
        "SELECT printf('%5.2f|%-4d|%s|%.3c', 3.14159, 7, 'x', 'z') AS p, "
        "format('%*d', 4, 5) AS f, instr('hello', 'll') AS i, instr('hello', '') AS e, "
        "instr(12345, 34) AS n, instr(x'0102', x'02') AS b, replace('aXbX', 'X', 'yy') AS r, "
        "replace('abc', '', 'z') AS z, trim('xxaxx', 'x') AS t, ltrim('xxa', 'x') AS l, "
        "rtrim('axx', 'x') AS rt, instr(NULL, 'a') AS nul",
    )
    assert status == Status.OK
    assert rows == [
        {
            "p": " 3.14|7   |x|zzz",
            "f": "   5",
            "i": "3",
            "e": "1",
            "n": "3",
            "b": "2",
            "r": "ayybyy",
            "z": "abc",
            "t": "a",
            "l": "a",
            "rt": "a",
        }
    ]


async def test_runaway_queries_at_once_do_not_hold_up_others(c: GovcClient) -> None:
    """8 runaway queries at once on one repository: each ends within about the budget (those
    over its share are refused at once), and another repository's query is answered quickly.
    (Before, they queued in the work pool: 15-33 s each, and a SELECT 1 waited 21 s.)"""
    runaway = [asyncio.ensure_future(timed(c, ENDLESS)) for _ in range(8)]
    await asyncio.sleep(0.05)
    status, rows, seconds = await timed(c, "SELECT 1 AS one", OTHER)
    assert (status, rows) == (Status.OK, [{"one": "1"}])
    assert seconds < 0.5, seconds
    results = await asyncio.gather(*runaway)
    for status, message, seconds in results:
        assert status in {Status.DEADLINE_EXCEEDED, Status.RESOURCE_EXHAUSTED}, message
        assert seconds < BUDGET + 0.5, seconds
    assert any(status == Status.DEADLINE_EXCEEDED for status, _, _ in results)
    assert any(status == Status.RESOURCE_EXHAUSTED for status, _, _ in results)


async def test_parallel_batch_of_runaway_queries_shares_one_time_budget(c: GovcClient) -> None:
    """60 runaway queries in one parallel batch ran one budget each (20 s with 2 s budgets);
    now the call's queries share one budget."""
    b = c.batch(R, parallel=True)
    for i in range(60):
        b.query(sql=ENDLESS, op_id=f"q{i}")
    started = time.monotonic()
    outcome = await b.run()
    assert time.monotonic() - started < BUDGET + 1
    assert not any(r.success for r in outcome.results)
    assert all("time budget" in r.error or "running already" in r.error for r in outcome.results), {
        r.error for r in outcome.results
    }
    status, rows, seconds = await timed(c, "SELECT 1 AS one", OTHER)
    assert (status, rows) == (Status.OK, [{"one": "1"}]) and seconds < 0.5


async def test_sequential_batch_queries_share_one_time_budget(c: GovcClient) -> None:
    b = c.batch(R)
    for i in range(10):
        b.query(sql=ENDLESS, op_id=f"q{i}")
    started = time.monotonic()
    outcome = await b.run()
    assert time.monotonic() - started < BUDGET + 1
    assert all("time budget" in r.error for r in outcome.results)
