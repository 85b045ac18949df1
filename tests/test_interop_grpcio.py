"""Interop: an official grpcio client (stubs from grpcio-tools) against `govc serve`.

The stubs are generated at test time from protos/govc.proto into a temporary directory, and
the client runs in its own process (tests/grpcio_client.py): grpcio's health and reflection
modules cannot be imported next to grpclib's.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serverproc import REPO_ROOT, ServerProcess

CLIENT_SCRIPT = Path(__file__).resolve().parent / "grpcio_client.py"
HELLO_ID = "ce013625030ba8dba906f756967f9e9ca394464a"


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@pytest.fixture(scope="module")
def grpcio_stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("grpcio_stubs")
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "protos",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "protos/govc.proto",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert generated.returncode == 0, generated.stderr
    assert (out / "govc_pb2.py").exists() and (out / "govc_pb2_grpc.py").exists()
    return out


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Over 1 MiB, so the server stores it in chunks; incompressible, so it stays that big."""
    return os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture(scope="module")
def report(
    grpcio_stubs: Path, payload: bytes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("interop")
    payload_file = work / "payload.bin"
    payload_file.write_bytes(payload)
    with ServerProcess(work / "data") as server:
        env = dict(os.environ)
        # Only the stubs: the client must not see (or import) govc or grpclib.
        env["PYTHONPATH"] = str(grpcio_stubs)
        ran = subprocess.run(
            [sys.executable, str(CLIENT_SCRIPT), server.target, str(payload_file)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0, f"{ran.stderr}\nserver log:\n{server.log_text()}"
        yield json.loads(ran.stdout)


def ok(report: dict[str, Any], key: str) -> Any:
    entry = report[key]
    assert entry["ok"], f"{key} failed: {entry}"
    return entry["value"]


def failed(report: dict[str, Any], key: str, code: str) -> str:
    entry = report[key]
    assert not entry["ok"], f"{key} should have failed with {code}: {entry}"
    assert entry["code"] == code, entry
    details: str = entry["details"]
    return details


def test_create_repository(report: dict[str, Any]) -> None:
    created = ok(report, "create")
    assert created["id"] == "interop"
    assert created["name"] == "Interop"
    assert created["created_at_seconds"] > 1_600_000_000
    stored = ok(report, "get_repository")
    assert stored == {
        "id": "interop",
        "name": "Interop",
        "description": "from grpcio",
        "metadata": {"k": "v"},
    }


def test_store_and_get_blob(report: dict[str, Any]) -> None:
    assert ok(report, "store_hello") == {"hash": HELLO_ID, "size": 6}
    got = ok(report, "get_hello")
    assert got["hash"] == HELLO_ID
    assert got["size"] == 6
    assert got["content"] == "hello\n"
    assert got["content_sha256"] == hashlib.sha256(b"hello\n").hexdigest()


def test_large_blob_round_trip(report: dict[str, Any], payload: bytes) -> None:
    expected_id = git_blob_id(payload)
    assert ok(report, "store_payload") == {"hash": expected_id, "size": len(payload)}
    got = ok(report, "get_payload")
    assert got["hash"] == expected_id
    assert got["size"] == len(payload)
    assert got["content_sha256"] == hashlib.sha256(payload).hexdigest()


def test_errors_map_to_grpc_status_codes(report: dict[str, Any]) -> None:
    assert "interop" in failed(report, "create_duplicate", "ALREADY_EXISTS")
    assert "id" in failed(report, "create_bad_id", "INVALID_ARGUMENT")
    assert "no-such-repo" in failed(report, "get_unknown_repo", "NOT_FOUND")
    assert "0" * 40 in failed(report, "get_unknown_blob", "NOT_FOUND")
    bad_hash = failed(report, "get_bad_hash", "INVALID_ARGUMENT")
    assert "hash" in bad_hash and "not-a-hash" in bad_hash
    assert "Traceback" not in json.dumps(report)


def test_standard_health_check(report: dict[str, Any]) -> None:
    assert ok(report, "health_overall") == "SERVING"
    assert ok(report, "health_govc") == "SERVING"
    failed(report, "health_unknown", "NOT_FOUND")


def test_reflection_lists_services(report: dict[str, Any]) -> None:
    services = ok(report, "reflection_services")
    assert "govc.GoVCService" in services
    assert "grpc.health.v1.Health" in services


def test_reflection_describes_govc_service(report: dict[str, Any]) -> None:
    described = ok(report, "reflection_govc")
    assert described["kind"] == "file_descriptor_response"
    govc_files = [
        f for f in described["files"] if f["package"] == "govc" and "GoVCService" in f["services"]
    ]
    assert len(govc_files) == 1, described
    methods = govc_files[0]["services"]["GoVCService"]
    assert methods["StoreBlob"] == [".govc.StoreBlobRequest", ".govc.StoreBlobResponse"]
    assert methods["GetBlob"] == [".govc.GetBlobRequest", ".govc.GetBlobResponse"]
    # The server describes exactly the service the grpcio stubs were generated from.
    assert methods == report["local_govc_methods"]
    assert len(methods) == 33  # the original 29, AbortMerge and the three tag RPCs


def test_conflict_workflow(report: dict[str, Any]) -> None:
    seen = ok(report, "conflict_workflow")
    assert seen["conflicts"] == ["f.txt"]
    assert seen["merged"] == "1\n<<<<<<< main\nmain\n=======\nfeature\n>>>>>>> feature\n3\n"
    assert seen["status"] == ["UU f.txt"]
    early = seen["early_commit"]
    assert early["code"] == "FAILED_PRECONDITION" and "f.txt" in early["details"]
    assert seen["status_after_abort"] == []
    assert seen["parents"] == [seen["main_tip"], seen["feature_tip"]]
