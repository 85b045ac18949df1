"""ExecuteSQLQuery: real SQL over repository data, read-only and sandboxed."""

import pytest
from grpclib.const import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generated.govc import ExecuteSqlQueryRequest
from govc.client import GovcClient
from govc.core.gitformat import blob_id
from tests.conftest import Clock

R = "sql"


async def sql(c: GovcClient, query: str) -> list[dict[str, str]]:
    response = await c.stub.execute_sql_query(
        ExecuteSqlQueryRequest(repository_id=R, sql_query=query)
    )
    assert response.executed_sql == query and response.total == len(response.rows)
    return [dict(row.fields) for row in response.rows]


async def sql_error(c: GovcClient, query: str) -> Status:
    with pytest.raises(Exception) as info:
        await sql(c, query)
    status = getattr(info.value, "status", None)
    assert status is not None, info.value
    return status  # type: ignore[no-any-return]


@pytest.fixture
async def c(client: GovcClient, clock: Clock) -> GovcClient:
    await client.create_repository(R)
    clock.now = 1_700_000_000
    await client.add_file(R, "src/app.py", b"print('app')\n")
    await client.add_file(R, "src/util.py", b"def util():\n    pass\n")
    await client.add_file(R, "README.md", b"# readme\n")
    await client.commit(R, "first", author="Ada <ada@example.com>")
    clock.now = 1_700_000_100
    await client.add_file(R, "src/app.py", b"print('app v2')\n")
    await client.add_file(R, "docs/guide.md", b"guide\n")
    await client.commit(R, "second", author="Bob <bob@example.com>")
    await client.create_branch(R, "feature")
    clock.now = 1_700_000_200
    await client.write_file(R, "notes.txt", b"uncommitted\n")
    return client


async def test_files_table(c: GovcClient) -> None:
    rows = await sql(
        c, "SELECT path, name, extension, size, hash, mode, last_modified FROM files ORDER BY path"
    )
    assert [r["path"] for r in rows] == [
        "README.md",
        "docs/guide.md",
        "notes.txt",
        "src/app.py",
        "src/util.py",
    ]
    app = next(r for r in rows if r["path"] == "src/app.py")
    assert app == {
        "path": "src/app.py",
        "name": "app.py",
        "extension": "py",
        "size": "16",
        "hash": blob_id(b"print('app v2')\n"),
        "mode": "100644",
        "last_modified": "2023-11-14T22:15:00Z",
    }
    readme = next(r for r in rows if r["path"] == "README.md")
    assert readme["last_modified"] == "2023-11-14T22:13:20Z"  # untouched since the first commit
    notes = next(r for r in rows if r["path"] == "notes.txt")
    assert notes["last_modified"] == "2023-11-14T22:16:40Z"  # written, not committed
    content = await sql(c, "SELECT content FROM files WHERE path = 'src/util.py'")
    assert content == [{"content": "def util():\n    pass\n"}]


async def test_group_by_having_order_limit(c: GovcClient) -> None:
    rows = await sql(
        c,
        "SELECT extension, count(*) AS n, sum(size) AS total FROM files "
        "GROUP BY extension HAVING n >= 1 ORDER BY n DESC, extension LIMIT 2",
    )
    assert rows == [
        {"extension": "md", "n": "2", "total": "15"},
        {"extension": "py", "n": "2", "total": "37"},
    ]


async def test_commits_changes_join_and_branches(c: GovcClient) -> None:
    commits = await sql(
        c, "SELECT author, email, message, parent_count FROM commits ORDER BY timestamp"
    )
    assert commits == [
        {"author": "Ada", "email": "ada@example.com", "message": "first", "parent_count": "0"},
        {"author": "Bob", "email": "bob@example.com", "message": "second", "parent_count": "1"},
    ]
    joined = await sql(
        c,
        'SELECT c.message, ch.path, ch.type FROM commits c JOIN changes ch ON ch."commit" = c.hash '
        "WHERE c.author = 'Bob' ORDER BY ch.path",
    )
    assert joined == [
        {"message": "second", "path": "docs/guide.md", "type": "added"},
        {"message": "second", "path": "src/app.py", "type": "modified"},
    ]
    roots = await sql(c, "SELECT hash FROM commits WHERE parent IS NULL")
    assert len(roots) == 1 and "parent" not in roots[0]
    nulls = await sql(c, "SELECT parent FROM commits WHERE parent IS NULL")
    assert nulls == [{}]  # NULL values are absent
    branches = await sql(c, "SELECT name, is_current FROM branches ORDER BY name")
    assert branches == [{"name": "feature", "is_current": "0"}, {"name": "main", "is_current": "1"}]
    floats = await sql(c, "SELECT avg(size) AS a FROM files WHERE extension = 'py'")
    assert floats == [{"a": "18.5"}]
    blobs = await sql(c, "SELECT count(*) AS n FROM blobs WHERE size > 0")
    assert int(blobs[0]["n"]) >= 6


async def test_history_grows_between_queries(c: GovcClient) -> None:
    assert len(await sql(c, "SELECT hash FROM commits")) == 2
    await c.add_file(R, "new.txt", b"n\n")
    await c.commit(R, "third")
    assert len(await sql(c, "SELECT hash FROM commits")) == 3
    assert await sql(c, "SELECT type FROM changes WHERE path = 'new.txt'") == [{"type": "added"}]


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM files",
        "UPDATE files SET size = 0",
        "INSERT INTO files (path) VALUES ('x')",
        "DROP TABLE files",
        "CREATE TABLE t (x)",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA table_info(files)",
        "EXPLAIN SELECT path FROM files",
        " /* plan */ explain query plan SELECT path FROM files",
        "-- why\nEXPLAIN SELECT 1",
        "SELECT 1; SELECT 2",
        "SELECT load_extension('x')",
        "SELECT * FROM nowhere",
        "SELEC path FROM files",
        "",
        # A map of fields cannot hold two columns of one name.
        "SELECT path, path FROM files",
    ],
)
async def test_refused(c: GovcClient, query: str) -> None:
    assert await sql_error(c, query) == Status.INVALID_ARGUMENT
    assert len(await sql(c, "SELECT path FROM files")) == 5  # still serving, nothing changed


async def test_endless_recursive_query_is_stopped(c: GovcClient) -> None:
    status = await sql_error(
        c, "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
    )
    assert status == Status.DEADLINE_EXCEEDED
    assert len(await sql(c, "SELECT path FROM files")) == 5


async def test_no_value_is_longer_than_an_answer_can_be(c: GovcClient) -> None:
    # sqlite's length limit: printf gives NULL (absent) rather than make 200 MB in one call,
    # which no time budget could interrupt.
    assert await sql(c, "SELECT length(printf('%.200000000c', 'x')) AS n") == [{}]
    assert await sql(c, "SELECT length(printf('%.2000c', 'x')) AS n") == [{"n": "2000"}]


async def test_an_answer_over_the_message_limit_is_refused(c: GovcClient) -> None:
    # 10,000 rows (the row cap) of 7,000 characters: 70 MB, over the 64 MiB message limit.
    status = await sql_error(
        c,
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 10000) "
        "SELECT printf('%.7000c', 'x') FROM n",
    )
    assert status == Status.RESOURCE_EXHAUSTED
    # Every row carries its column names: a long name over many rows counts too.
    status = await sql_error(
        c,
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 10000) "
        f"SELECT x AS {'n' * 60_000} FROM n",
    )
    assert status == Status.RESOURCE_EXHAUSTED
    assert len(await sql(c, "SELECT path FROM files")) == 5


async def test_unknown_repository(client: GovcClient) -> None:
    with pytest.raises(Exception) as info:
        await client.stub.execute_sql_query(
            ExecuteSqlQueryRequest(repository_id="nope", sql_query="SELECT 1")
        )
    assert getattr(info.value, "status", None) == Status.NOT_FOUND


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.text(max_size=80))
async def test_garbage_never_yields_internal(c: GovcClient, query: str) -> None:
    try:
        await sql(c, query)
    except Exception as exc:
        assert getattr(exc, "status", None) in {
            Status.INVALID_ARGUMENT,
            Status.DEADLINE_EXCEEDED,
            Status.RESOURCE_EXHAUSTED,
        }, exc


async def test_only_the_tables_and_columns_a_query_reads_are_loaded_and_results_agree(
    c: GovcClient,
) -> None:
    # count(*) reads the table but no column; a content filter needs the content column.
    assert await sql(c, "SELECT count(*) AS n FROM files") == [{"n": "5"}]
    assert await sql(c, "SELECT path FROM files WHERE content LIKE '%v2%'") == [
        {"path": "src/app.py"}
    ]
    star = await sql(c, "SELECT * FROM files WHERE path = 'src/util.py'")
    assert star[0]["content"] == "def util():\n    pass\n"
    nested = await sql(
        c,
        "SELECT (SELECT count(*) FROM commits) AS commits, "
        "(SELECT count(*) FROM changes) AS changes, (SELECT count(*) FROM blobs) AS blobs",
    )
    assert nested == [{"commits": "2", "changes": "5", "blobs": "6"}]
