"""CreateRepository, GetRepository, DeleteRepository, ListRepositories over a real server."""

import datetime

import pytest
from grpclib.const import Status

from govc.client import GovcClient, GovcRpcError


async def _status_of(coro: object) -> GovcRpcError:
    with pytest.raises(GovcRpcError) as info:
        await coro  # type: ignore[misc]
    return info.value


async def test_create_and_get_repository(client: GovcClient) -> None:
    before = datetime.datetime.now(datetime.UTC)
    created = await client.create_repository(
        "alpha", name="Alpha", description="first", metadata={"team": "ci", "tier": "1"}
    )
    assert created.id == "alpha" and created.name == "Alpha"
    assert created.created_at is not None
    assert before - datetime.timedelta(seconds=1) <= created.created_at
    got = await client.get_repository("alpha")
    assert (got.id, got.name, got.description) == ("alpha", "Alpha", "first")
    assert got.metadata == {"team": "ci", "tier": "1"}
    assert got.created_at == created.created_at


async def test_name_defaults_to_id(client: GovcClient) -> None:
    created = await client.create_repository("beta")
    assert created.name == "beta"
    assert (await client.get_repository("beta")).name == "beta"


async def test_duplicate_is_already_exists(client: GovcClient) -> None:
    await client.create_repository("dup", description="original")
    err = await _status_of(client.create_repository("dup", description="second"))
    assert err.status == Status.ALREADY_EXISTS and "dup" in err.message
    assert (await client.get_repository("dup")).description == "original"


@pytest.mark.parametrize(
    "bad_id",
    ["", "-leading-dash", ".hidden", "has space", "slash/inside", "a" * 65, "ünïcode", "x\x00y"],
)
async def test_invalid_ids_are_rejected_and_nothing_is_created(
    client: GovcClient, bad_id: str
) -> None:
    err = await _status_of(client.create_repository(bad_id))
    assert err.status == Status.INVALID_ARGUMENT
    assert "id" in err.message
    assert (await client.list_repositories()).total == 0


async def test_id_edge_cases_accepted(client: GovcClient) -> None:
    for repo_id in ["a", "A9", "x" * 64, "a.b_c-d", "0start"]:
        await client.create_repository(repo_id)
    assert (await client.list_repositories()).total == 5


async def test_unknown_repository_is_not_found(client: GovcClient) -> None:
    err = await _status_of(client.get_repository("missing"))
    assert err.status == Status.NOT_FOUND and "missing" in err.message
    err = await _status_of(client.delete_repository("missing"))
    assert err.status == Status.NOT_FOUND


async def test_get_with_invalid_id_names_the_field(client: GovcClient) -> None:
    err = await _status_of(client.get_repository(""))
    assert err.status == Status.INVALID_ARGUMENT and "id" in err.message


async def test_metadata_limits(client: GovcClient) -> None:
    err = await _status_of(client.create_repository("m", metadata={"": "v"}))
    assert err.status == Status.INVALID_ARGUMENT and "metadata" in err.message
    err = await _status_of(client.create_repository("m", name="n" * 1000))
    assert err.status == Status.INVALID_ARGUMENT and "name" in err.message


async def test_delete_removes_everything(client: GovcClient) -> None:
    await client.create_repository("doomed")
    stored = await client.store_blob("doomed", b"content")
    await client.delete_repository("doomed")
    assert (await _status_of(client.get_repository("doomed"))).status == Status.NOT_FOUND
    err = await _status_of(client.get_blob("doomed", stored.hash))
    assert err.status == Status.NOT_FOUND
    # The id is free again, and the new repository does not see the old blobs.
    await client.create_repository("doomed")
    err = await _status_of(client.get_blob("doomed", stored.hash))
    assert err.status == Status.NOT_FOUND


async def test_list_order_paging_and_total(client: GovcClient) -> None:
    ids = [f"repo-{i:02d}" for i in range(12)]
    for repo_id in ids:
        await client.create_repository(repo_id)
    everything = await client.list_repositories()
    assert [r.id for r in everything.repositories] == ids
    assert everything.total == 12
    page = await client.list_repositories(limit=5, offset=5)
    assert [r.id for r in page.repositories] == ids[5:10] and page.total == 12
    tail = await client.list_repositories(limit=5, offset=10)
    assert [r.id for r in tail.repositories] == ids[10:]
    beyond = await client.list_repositories(limit=5, offset=50)
    assert beyond.repositories == [] and beyond.total == 12
    err = await _status_of(client.list_repositories(offset=-1))
    assert err.status == Status.INVALID_ARGUMENT and "offset" in err.message
    await client.delete_repository("repo-03")
    after = await client.list_repositories()
    assert [r.id for r in after.repositories] == [i for i in ids if i != "repo-03"]
    assert after.total == 11


async def test_health(client: GovcClient) -> None:
    health = await client.health()
    assert health.status == "healthy"
    assert health.checks["storage_read"] == "ok" and health.checks["storage_write"] == "ok"
    assert int(health.checks["disk_free_bytes"]) > 0
    assert health.uptime_seconds >= 0 and health.timestamp is not None


def test_every_declared_rpc_needs_a_handler() -> None:
    """The handler table serves every RPC of the contract; one left out is named."""
    from generated.govc import GoVcServiceBase
    from govc.services.handlers import Handlers, missing_rpcs

    assert missing_rpcs() == []
    methods = {k: v for k, v in vars(Handlers).items() if not k.startswith("_") and k != "commit"}
    assert missing_rpcs(type("WithoutCommit", (GoVcServiceBase,), methods)) == ["commit"]
