"""The betterproto2 speed-up changes nothing a peer can see, its premise holds for the pinned
version, and applying it is counted: the original is back when the last holder undoes it."""

import importlib.metadata
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import betterproto2
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


def current() -> Any:
    return vars(betterproto2.Message)["_get_field_default"]


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clean slate: no holder and betterproto2's own method, whatever a server started
    earlier in this process holds; everything as it was afterwards."""
    monkeypatch.setattr(speedups, "_holders", 0)
    monkeypatch.setattr(speedups, "_replaced", None)
    monkeypatch.setattr(betterproto2.Message, "_get_field_default", speedups.ORIGINAL)
    yield


@pytest.fixture
def catch_warnings_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts `warnings.catch_warnings()` calls (betterproto2 calls it as `warnings.…`)."""
    calls = [0]
    real = warnings.catch_warnings

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(warnings, "catch_warnings", spy)
    return calls


def samples() -> list[Any]:
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


def test_same_bytes_and_values_with_and_without(isolated: None) -> None:
    for message in samples():
        encoded = bytes(message)
        reference = type(message).parse(encoded)
        with speedups.apply():
            assert bytes(message) == encoded
            assert type(message).parse(encoded) == reference


def test_the_pinned_betterproto2_still_enters_the_guard_on_every_field(
    isolated: None, catch_warnings_calls: list[int]
) -> None:
    # The premise: the library's own method enters warnings.catch_warnings() for each field it
    # is asked about, so every encode pays for it once per field. If a new betterproto2 drops
    # the guard, this fails: the speed-up is then useless and should go.
    version = importlib.metadata.version("betterproto2")
    assert speedups.ORIGINAL.__module__ == "betterproto2"
    assert speedups.ORIGINAL.__qualname__ == "Message._get_field_default"
    message = BatchOperationsRequest(
        repository_id="r", operations=[BatchOperation(id="1")], transaction=True
    )
    speedups.ORIGINAL(message, "repository_id")
    assert catch_warnings_calls[0] == 1, f"betterproto2 {version} no longer enters the guard"
    catch_warnings_calls[0] = 0
    bytes(message)  # 4 fields here, 3 in the operation
    assert catch_warnings_calls[0] >= 7, f"betterproto2 {version}: {catch_warnings_calls[0]}"
    # With the speed-up, encoding and decoding never enter it.
    with speedups.apply():
        catch_warnings_calls[0] = 0
        encoded = bytes(message)
        assert BatchOperationsRequest.parse(encoded) == message
        assert catch_warnings_calls[0] == 0


def test_apply_is_counted_and_the_last_undo_restores_the_original(isolated: None) -> None:
    assert current() is speedups.ORIGINAL and not speedups.is_applied()
    first = speedups.apply()  # one server starts
    second = speedups.apply()  # another in the same process
    assert speedups.is_applied()
    first.undo()  # the first stops: the second still runs with the patch
    assert speedups.is_applied()
    first.undo()  # undoing a handle twice does not release someone else's share
    assert speedups.is_applied()
    third = speedups.apply()
    second.undo()
    assert speedups.is_applied()
    third.undo()  # the last holder: the original is back
    assert current() is speedups.ORIGINAL and not speedups.is_applied()
    third.undo()
    assert current() is speedups.ORIGINAL
    again = speedups.apply()  # and it can be applied again
    assert speedups.is_applied()
    again.undo()
    assert current() is speedups.ORIGINAL


def test_the_context_manager_undoes_even_on_error(isolated: None) -> None:
    with pytest.raises(RuntimeError), speedups.apply():
        with speedups.apply() as inner:
            assert speedups.is_applied()
        assert speedups.is_applied()
        inner.undo()  # already undone by its `with`: nothing happens
        assert speedups.is_applied()
        raise RuntimeError
    assert current() is speedups.ORIGINAL


def test_counting_holds_across_threads(isolated: None) -> None:
    outer = speedups.apply()

    def churn() -> None:
        for _ in range(500):
            speedups.apply().undo()

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert speedups.is_applied()
    outer.undo()
    assert current() is speedups.ORIGINAL and speedups._holders == 0


def test_the_contract_has_no_deprecated_fields() -> None:
    # The guard the speed-up skips exists only for deprecated fields' defaults.
    assert "deprecated" not in (ROOT / "protos" / "govc.proto").read_text()
    assert "deprecated" not in (ROOT / "generated" / "govc" / "__init__.py").read_text().lower()
