"""Object ids are git's: checked against the real `git hash-object`."""

import os
import subprocess
from pathlib import Path

import pytest

from govc.core.gitformat import EMPTY_BLOB_ID, blob_id, validate_object_id
from govc.errors import InvalidArgument


def git_hash_object(path: Path) -> str:
    out = subprocess.run(
        ["git", "hash-object", "--no-filters", str(path)], check=True, capture_output=True
    )
    return out.stdout.decode().strip()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello\n",
        "unicode \u00e9\u4e2d\n".encode(),
        b"no trailing newline",
        bytes(range(256)) * 4,  # binary, NULs included
        b"\r\nwindows\r\nlines\r\n",
    ],
    ids=["empty", "text", "utf8", "no-newline", "binary", "crlf"],
)
def test_blob_id_matches_git(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "blob"
    path.write_bytes(content)
    assert blob_id(content) == git_hash_object(path)


def test_random_binary_ids_match_git(tmp_path: Path) -> None:
    contents = [os.urandom(n) for n in (1, 7, 1000, 65536, 1 << 20)]
    paths = []
    for index, content in enumerate(contents):
        path = tmp_path / f"b{index}"
        path.write_bytes(content)
        paths.append(str(path))
    out = subprocess.run(
        ["git", "hash-object", "--no-filters", "--stdin-paths"],
        input="\n".join(paths).encode(),
        check=True,
        capture_output=True,
    )
    assert [blob_id(c) for c in contents] == out.stdout.decode().split()


def test_known_ids() -> None:
    assert blob_id(b"") == EMPTY_BLOB_ID
    assert blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


@pytest.mark.parametrize(
    "bad", ["", "abc", "E69DE29BB2D1D6434B8B29AE775AD8C2E48C5391", "g" * 40, "0" * 41, "0" * 39]
)
def test_validate_object_id_rejects(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="hash"):
        validate_object_id(bad, "hash")


def test_validate_object_id_returns_raw_bytes() -> None:
    assert validate_object_id(EMPTY_BLOB_ID) == bytes.fromhex(EMPTY_BLOB_ID)
