"""The bounded per-repository cache, and that the search index keeps working past its bound."""

import pytest

from govc.client import GovcClient
from govc.core.cache import LruCache
from govc.server import GovcServer


def test_least_recently_used_goes_first() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    cache.pop("a")
    cache.pop("missing")
    assert len(cache) == 1 and cache.get("a") is None
    assert cache.get("c") == 3
    with pytest.raises(ValueError):
        LruCache(0)


async def test_search_past_the_cache_bound(
    client: GovcClient, server: GovcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for two repositories, five stay searchable (dropped state is derived again)."""
    indexer = server.indexer
    assert indexer is not None
    monkeypatch.setattr(indexer._docs, "capacity", 2)
    monkeypatch.setattr(indexer._times, "capacity", 2)
    names = [f"lru{i}" for i in range(5)]
    for name in names:
        await client.create_repository(name)
        await client.add_file(name, "a.txt", f"marmot {name}\n".encode())
        await client.commit(name, "one")
    for name in names:
        await client.add_file(name, "b.txt", f"ibex {name}\n".encode())
        found = await client.search(name, "marmot OR ibex", sort_by="path")
        assert [r.document.path for r in found.results if r.document] == ["a.txt", "b.txt"]
        assert [r.document.last_modified is not None for r in found.results] == [True, True]
    assert len(indexer._docs) <= 2 and len(indexer._times) <= 2
