"""BatchOperations over a real server: every operation type, transactions, parallel, limits."""

import base64
from pathlib import Path

import pytest
from grpclib.const import Status

from generated.govc import BatchOperation, BatchOperationsRequest
from govc.client import GovcClient, GovcRpcError
from govc.core.gitformat import blob_id
from govc.server import GovcServer
from govc.services.access import Access
from tests.conftest import server_config

MiB = 1024 * 1024

R = "batch"


@pytest.fixture
async def c(client: GovcClient) -> GovcClient:
    await client.create_repository(R)
    return client


async def test_every_operation_type(c: GovcClient) -> None:
    b = c.batch(R)
    b.store_blob("text blob", op_id="s1")
    b.store_blob(b"\xff\x00binary", op_id="s2")
    b.write("src/a.py", "print('a')\n", op_id="w1")
    b.write("src/b.bin", b"\xff\xfe", op_id="w2")
    b.write("notes.txt", "unstaged\n", stage=False, op_id="w3")
    b.commit("from a batch", author="Ada <ada@example.com>", files=["src"], op_id="c1")
    b.read("src/a.py", op_id="r1")
    b.read("src/b.bin", ref="HEAD", op_id="r2")
    b.get_blob(blob_id(b"text blob"), op_id="g1")
    b.get_blob(blob_id(b"\xff\x00binary"), op_id="g2")
    b.get_tree(op_id="t1")
    b.get_tree(path="src", op_id="t2")
    b.query("src/*.py", op_id="q1")
    b.delete("src/b.bin", op_id="d1")
    b.list_commits(op_id="l1")
    outcome = await b.run()
    assert outcome.success, outcome.error
    by_id = {r.id: r for r in outcome.results}
    assert [r.id for r in outcome.results] == [
        "s1",
        "s2",
        "w1",
        "w2",
        "w3",
        "c1",
        "r1",
        "r2",
        "g1",
        "g2",
        "t1",
        "t2",
        "q1",
        "d1",
        "l1",
    ]
    assert by_id["s1"].result == {"hash": blob_id(b"text blob"), "size": 9}
    assert by_id["w1"].result["path"] == "src/a.py"
    commit = by_id["c1"].result
    assert commit["message"] == "from a batch" and commit["author"] == "Ada <ada@example.com>"
    assert by_id["r1"].result["content"] == "print('a')\n"
    assert base64.b64decode(by_id["r2"].result["content_b64"]) == b"\xff\xfe"
    assert by_id["g1"].result["content"] == "text blob"
    assert base64.b64decode(by_id["g2"].result["content_b64"]) == b"\xff\x00binary"
    assert [e["path"] for e in by_id["t1"].result["entries"]] == ["src"]
    assert by_id["t1"].result["entries"][0]["mode"] == "040000"
    assert [(e["path"], e["size"]) for e in by_id["t2"].result["entries"]] == [
        ("src/a.py", 11),
        ("src/b.bin", 2),
    ]
    assert [x["path"] for x in by_id["q1"].result["results"]] == ["src/a.py"]
    assert by_id["l1"].result["total"] == 1
    assert by_id["l1"].result["commits"][0]["hash"] == commit["hash"]
    # The effects are real: status, history and files agree.
    status = await c.status(R)
    assert status.status_entries == ["D  src/b.bin", "?? notes.txt"]  # git: untracked last
    got = await c.get_commit(R, commit["hash"])
    assert [(x.path, x.type) for x in got.changes] == [
        ("src/a.py", "added"),
        ("src/b.bin", "added"),
    ]


async def test_failures_are_per_operation_without_transaction(c: GovcClient) -> None:
    outcome = await (
        c.batch(R)
        .write("ok.txt", "fine")
        .add("frobnicate", {}, op_id="unknown")
        .write("../escape", "x", op_id="badpath")
        .get_blob("0" * 40, op_id="missing")
        .add("write", {"path": "p"}, op_id="nocontent")
        .write("ok2.txt", "also fine")
        .run()
    )
    assert not outcome.success
    results = {r.id: r for r in outcome.results}
    assert results["unknown"].error == "unsupported operation type: frobnicate"
    assert "params.path" in results["badpath"].error
    assert "not found" in results["missing"].error
    assert "params.content" in results["nocontent"].error
    assert results["0"].success and results["5"].success
    assert (await c.status(R)).status_entries == ["A  ok.txt", "A  ok2.txt"]


async def test_bad_json_params(c: GovcClient) -> None:
    ops = [
        BatchOperation(id="a", type="write", params=b"{not json"),
        BatchOperation(id="b", type="write", params=b"[1, 2]"),
    ]
    response = await c.stub.batch_operations(
        BatchOperationsRequest(repository_id=R, operations=ops)
    )
    assert [r.success for r in response.results] == [False, False]
    assert "JSON" in response.results[0].error and "object" in response.results[1].error


async def test_transaction_rolls_back_on_the_seventh_of_ten(c: GovcClient) -> None:
    await c.add_file(R, "base.txt", b"base\n")
    await c.commit(R, "base")
    before_status = await c.status(R)
    before_log = await c.list_commits(R)
    b = c.batch(R, transaction=True)
    for i in range(6):
        b.write(f"t{i}.txt", f"{i}\n")
    b.get_blob("f" * 40, op_id="seventh")  # fails: no such blob
    b.write("t7.txt", "7")
    b.commit("never")
    b.store_blob("never stored")
    outcome = await b.run()
    assert not outcome.success and "seventh" in outcome.error
    assert [r.success for r in outcome.results] == [False] * 10
    assert [r.error for r in outcome.results[7:]] == ["not executed (transaction aborted)"] * 3
    assert all("rolled back" in r.error for r in outcome.results[:6])
    assert "not found" in outcome.results[6].error
    assert await c.status(R) == before_status
    assert (await c.list_commits(R)).total == before_log.total
    with pytest.raises(GovcRpcError) as info:
        await c.get_blob(R, blob_id(b"never stored"))
    assert info.value.status == Status.NOT_FOUND


async def test_transaction_with_writes_and_a_commit_makes_one_commit(c: GovcClient) -> None:
    b = c.batch(R, transaction=True)
    for i in range(20):
        b.write(f"dir/f{i}.txt", f"{i}\n")
    b.commit("one commit for twenty files")
    outcome = await b.run()
    assert outcome.success
    log = await c.list_commits(R)
    assert log.total == 1 and len(log.commits[0].changes) == 20
    assert (await c.status(R)).status_entries == []


async def test_parallel_keeps_order(c: GovcClient) -> None:
    hashes = []
    for i in range(30):
        hashes.append((await c.store_blob(R, f"blob {i}".encode())).hash)
    b = c.batch(R, parallel=True)
    for i, h in enumerate(hashes):
        b.get_blob(h, op_id=f"g{i}")
        if i == 15:
            b.store_blob("written in the middle", op_id="mid")
    outcome = await b.run()
    assert outcome.success
    ids = [r.id for r in outcome.results]
    assert ids == [f"g{i}" for i in range(16)] + ["mid"] + [f"g{i}" for i in range(16, 30)]
    contents = [r.result["content"] for r in outcome.results if r.id.startswith("g")]
    assert contents == [f"blob {i}" for i in range(30)]


async def test_limits_and_call_errors(c: GovcClient) -> None:
    b = c.batch(R)
    for i in range(1001):
        b.store_blob(str(i))
    with pytest.raises(GovcRpcError) as info:
        await b.run()
    assert info.value.status == Status.INVALID_ARGUMENT and "1000" in info.value.message
    with pytest.raises(GovcRpcError) as info:
        await c.batch(R, transaction=True, parallel=True).store_blob("x").run()
    assert info.value.status == Status.INVALID_ARGUMENT and "parallel" in info.value.message
    with pytest.raises(GovcRpcError) as info:
        await c.batch("nope").store_blob("x").run()
    assert info.value.status == Status.NOT_FOUND
    with pytest.raises(GovcRpcError) as info:
        await c.batch("").store_blob("x").run()
    assert info.value.status == Status.INVALID_ARGUMENT and "repository_id" in info.value.message
    assert (await c.list_repositories()).total == 1
    full = c.batch(R)
    for i in range(1000):
        full.store_blob(f"blob {i}")
    outcome = await full.run()
    assert outcome.success and len(outcome.results) == 1000


async def test_empty_batch(c: GovcClient) -> None:
    outcome = await c.batch(R).run()
    assert outcome.success and outcome.results == []


async def test_params_that_are_not_text_fail_alone(c: GovcClient) -> None:
    """JSON escapes of lone surrogates decode to str that UTF-8 cannot hold, and JSON can nest
    deeper than the decoder goes: each is that operation's error, not INTERNAL for the call."""
    surrogate = b'"\\ud800"'
    ops = [
        BatchOperation(id="ok", type="store_blob", params=b'{"content": "fine"}'),
        BatchOperation(id="blob", type="store_blob", params=b'{"content": ' + surrogate + b"}"),
        BatchOperation(
            id="write", type="write", params=b'{"path": "a.txt", "content": ' + surrogate + b"}"
        ),
        BatchOperation(id="files", type="commit", params=b'{"message": "m", "files": ["\\udfff"]}'),
        BatchOperation(
            id="deep", type="store_blob", params=b'{"content": ' + b"[" * 100_000 + b"]" * 100_000
        ),
    ]
    response = await c.stub.batch_operations(
        BatchOperationsRequest(repository_id=R, operations=ops)
    )
    errors = {r.id: r.error for r in response.results}
    assert [r.success for r in response.results] == [True, False, False, False, False]
    assert errors["blob"] == errors["write"] == "params.content is not valid Unicode text"
    assert errors["files"] == "params.files is not valid Unicode text"
    assert errors["deep"] == "params is nested too deeply"


async def test_returned_content_is_bounded_by_the_message_limit(tmp_path: Path) -> None:
    server = GovcServer(server_config(tmp_path / "small", max_message_bytes=MiB))
    await server.start()
    try:
        async with GovcClient(f"127.0.0.1:{server.port}") as c:
            await c.create_repository(R)
            blob = (await c.store_blob(R, b"x" * 400_000)).hash
            outcome = await c.batch(R).get_blob(blob).get_blob(blob).get_blob(blob).run()
            # Two fit in a 1 MiB response, the third would not: it alone fails, and says so.
            assert [r.success for r in outcome.results] == [True, True, False]
            assert "message limit" in outcome.results[2].error
            assert "StreamBlob" in outcome.results[2].error
    finally:
        await server.stop()


async def test_a_batch_into_a_repository_deleted_meanwhile_writes_nothing(
    c: GovcClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call's first check passed, then the repository was deleted: the batch's own
    transaction finds it gone, and a repository created again under its id starts empty."""
    await c.delete_repository(R)
    # The call's first check (on the loop) passes; the batch's transaction still checks.
    monkeypatch.setattr(Access, "read_inline", lambda self, repo_id, fn: None)
    for transaction in (True, False):
        with pytest.raises(GovcRpcError) as info:
            await c.batch(R, transaction=transaction).write("a.txt", "x").commit("m").run()
        assert info.value.status == Status.NOT_FOUND
    monkeypatch.undo()
    await c.create_repository(R)
    assert (await c.list_commits(R)).total == 0
    assert (await c.status(R)).status_entries == []


async def test_sql_queries_in_a_batch(c: GovcClient) -> None:
    await c.add_file(R, "a.py", b"x")
    await c.add_file(R, "b.txt", b"yy")
    await c.commit(R, "two files")
    sql = "SELECT path, size FROM files ORDER BY path"
    outcome = await c.batch(R).query(sql=sql, op_id="q").query("*.py", op_id="glob").run()
    assert outcome.success, outcome.error
    assert outcome.results[0].result == {
        "results": [{"path": "a.py", "size": "1"}, {"path": "b.txt", "size": "2"}]
    }
    assert [r["path"] for r in outcome.results[1].result["results"]] == ["a.py"]
    refused = await c.batch(R).query(sql="DELETE FROM files").run()
    assert refused.results[0].error.startswith("params.sql")
    # Beside writes in one sequential batch: refused (the single writer would wait for it);
    # the writes still apply.
    mixed = await c.batch(R).write("c.txt", "z").query(sql="SELECT 1 AS one").run()
    assert [r.success for r in mixed.results] == [True, False]
    assert "without writes" in mixed.results[1].error
    # In a parallel batch it runs after the writes before it are committed.
    parallel = c.batch(R, parallel=True).write("d.txt", "w")
    outcome = await parallel.query(sql="SELECT count(*) AS n FROM files").run()
    assert outcome.success and outcome.results[1].result == {"results": [{"n": "4"}]}


async def test_errors_name_the_params_field(c: GovcClient) -> None:
    outcome = await (
        c.batch(R)
        .commit("   ", op_id="message")
        .commit("m", author="<x@y>", op_id="author")
        .read("a.txt", ref="nope", op_id="ref")
        .list_commits(branch="nope", op_id="branch")
        .get_commit("zz", op_id="hash")
        .run()
    )
    for result in outcome.results:
        assert not result.success
        assert result.error.startswith(f"params.{result.id} "), result.error
