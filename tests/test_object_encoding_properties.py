"""Property tests: whatever the content, the store gives back exactly what it was given."""

import os
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govc.core.blobs import Blobs
from govc.core.database import Database
from govc.core.gitformat import blob_id
from govc.core.objects import prepare_blob
from govc.core.registry import Registry
from govc.storage import Storage, StorageConfig
from govc.storage.objectstore import CHUNK_SIZE, delta_against


@pytest.fixture(scope="module")
def blobs() -> Iterator[Blobs]:
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(StorageConfig(path=os.path.join(tmp, "db"), durable=False))
        db = Database(storage, Registry())
        info = db.registry.new_info("p", "", "", {})
        db.write(None, lambda txn: db.registry.create(txn, info)).result()
        try:
            yield Blobs(db)
        finally:
            storage.close()


contents = st.one_of(
    st.binary(max_size=4096),
    st.text(max_size=3000).map(str.encode),
    st.builds(lambda unit, n: unit * n, st.binary(min_size=1, max_size=16), st.integers(1, 5000)),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=contents, compress=st.booleans())
def test_store_read_round_trip(blobs: Blobs, content: bytes, compress: bool) -> None:
    prepared = blobs.prepare(content, compress)
    assert prepared.hex == blob_id(content)
    _, info = blobs.store("p", prepared).result()
    data, _ = blobs.read("p", prepared.oid)
    assert data == content and info.size == len(content)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=contents, edit=st.binary(max_size=64), at=st.integers(min_value=0))
def test_delta_round_trip(blobs: Blobs, base: bytes, edit: bytes, at: int) -> None:
    position = at % (len(base) + 1)
    content = base[:position] + edit + base[position + len(edit) :]
    base_prepared = prepare_blob(base)
    blobs.store_delta_candidate("p", base_prepared).result()
    prepared = blobs.prepare_with_delta("p", content, True)
    blobs.store_delta_candidate("p", prepared).result()
    data, info = blobs.read("p", prepared.oid)
    assert data == content
    assert info.stored_size <= max(len(content), 1) or info.size == 0


def test_delta_is_refused_when_not_smaller() -> None:
    base, content = os.urandom(5000), os.urandom(5000)
    prepared = prepare_blob(content)
    assert delta_against(prepared, content, b"\0" * 20, base, 0) is None


def test_delta_skips_large_blobs() -> None:
    content = b"a" * (CHUNK_SIZE + 1)
    assert delta_against(prepare_blob(content), content, b"\0" * 20, content, 0) is None
