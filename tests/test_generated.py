"""The committed generated code is exactly what protos/ generates, and its known traps."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import betterproto2
import pytest

from generated.govc import (
    StreamBlobResponse,
    StreamChunk,
    StreamMetadata,
    UploadBlobStreamRequest,
    UploadMetadata,
)
from govc.services.oneof import set_one_of

ROOT = Path(__file__).resolve().parent.parent
OPTS = "client_generation=async,server_generation=async,google_protobuf_descriptors"


def _tree(base: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(base)): p
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "protos",
            f"--python_betterproto2_out={tmp_path}",
            f"--python_betterproto2_opt={OPTS}",
            "protos/govc.proto",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    fresh, committed = _tree(tmp_path), _tree(ROOT / "generated")
    assert sorted(fresh) == sorted(committed), "run `make proto`: generated/ has other files"
    changed = [name for name in fresh if not filecmp.cmp(fresh[name], committed[name], False)]
    assert not changed, f"run `make proto`: generated/ differs from protos/ in {changed}"


def test_set_one_of_clears_the_other_members() -> None:
    message = StreamBlobResponse(metadata=StreamMetadata(stream_id="s", total_size=3))
    set_one_of(message, "chunk", StreamChunk(stream_id="s", data=b"abc", is_last=True))
    assert message.metadata is None
    decoded = StreamBlobResponse.parse(bytes(message))
    assert betterproto2.which_one_of(decoded, "response") == ("chunk", decoded.chunk)
    assert decoded.chunk is not None and decoded.chunk.data == b"abc"

    request = UploadBlobStreamRequest(repository_id="r", chunk=StreamChunk(data=b"x"))
    set_one_of(request, "metadata", UploadMetadata(filename="f", total_size=1))
    decoded_request = UploadBlobStreamRequest.parse(bytes(request))
    assert decoded_request.chunk is None
    assert decoded_request.metadata is not None and decoded_request.metadata.filename == "f"


def test_unguarded_oneof_really_encodes_both() -> None:
    # The trap set_one_of exists for: if betterproto2 ever clears siblings itself, this fails
    # and set_one_of can go.
    message = StreamBlobResponse(metadata=StreamMetadata(stream_id="s"))
    message.chunk = StreamChunk(data=b"abc")
    with pytest.raises(RuntimeError):
        betterproto2.which_one_of(message, "response")


def test_set_one_of_rejects_plain_fields() -> None:
    with pytest.raises(ValueError):
        set_one_of(StreamChunk(), "data", b"")
