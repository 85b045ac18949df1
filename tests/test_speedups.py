"""The betterproto2 speed-up changes nothing a peer can see, and its premise holds."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from generated.govc import (
    BatchOperation,
    BatchOperationsRequest,
    GetCommitResponse,
    HealthResponse,
    StreamBlobResponse,
    StreamChunk,
)
from govc.transport import speedups

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def patched() -> Iterator[None]:
    speedups.apply()
    try:
        yield
    finally:
        speedups.undo()


def samples() -> list[object]:
    return [
        BatchOperationsRequest(
            repository_id="r",
            operations=[
                BatchOperation(id=str(i), type="store_blob", params=b"{}") for i in range(3)
            ],
            transaction=True,
        ),
        GetCommitResponse(hash="a" * 40, parent_hashes=["b" * 40], changes=[]),
        HealthResponse(status="healthy", checks={"k": "v"}, uptime_seconds=1.5),
        StreamBlobResponse(chunk=StreamChunk(sequence_num=0, data=b"", is_last=True)),
        BatchOperationsRequest(),
    ]


def test_same_bytes_and_values_with_and_without(patched: None) -> None:
    for message in samples():
        encoded = bytes(message)  # type: ignore[call-overload]
        speedups.undo()
        try:
            assert bytes(message) == encoded  # type: ignore[call-overload]
            reference = type(message).parse(encoded)  # type: ignore[attr-defined]
        finally:
            speedups.apply()
        assert type(message).parse(encoded) == reference  # type: ignore[attr-defined]


def test_the_contract_has_no_deprecated_fields() -> None:
    # The guard the speed-up skips exists only for deprecated fields' defaults.
    assert "deprecated" not in (ROOT / "protos" / "govc.proto").read_text()
    assert "deprecated" not in (ROOT / "generated" / "govc" / "__init__.py").read_text().lower()
