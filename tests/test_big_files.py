"""Files of any size in trees: a blob sent with UploadBlobStream becomes a file by `blob_hash`
(AddFile, WriteFile, the batch `write`), commits and exports like any other; `govc add` of a
file over the message limit does this by itself."""

import asyncio
import random
import subprocess
import sys
from pathlib import Path

import pytest

from govc.client import GovcClient, GovcRpcError
from govc.server import GovcServer
from tests.gitoracle import export_checked

ROOT = Path(__file__).resolve().parent.parent
REPO = "big"


def git_blob_id(path: Path) -> str:
    return subprocess.run(
        ["git", "hash-object", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


def pseudo_random_file(path: Path, size: int) -> None:
    """Incompressible, reproducible content, written a MiB at a time."""
    rng = random.Random(size)
    with path.open("wb") as out:
        while out.tell() < size:
            out.write(rng.randbytes(min(1 << 20, size - out.tell())))


async def upload_add_commit_export(
    tmp_path: Path, server: GovcServer, client: GovcClient, size: int
) -> None:
    local = tmp_path / "big.bin"
    pseudo_random_file(local, size)
    await client.create_repository(REPO)
    uploaded = await client.upload(REPO, local, chunk_size=1 << 20)
    assert uploaded.hash == git_blob_id(local)
    added = await client.add_file(REPO, "data/big.bin", blob_hash=uploaded.hash)
    assert (added.hash, added.size) == (uploaded.hash, size)
    made = await client.commit(REPO, "add a big file")
    listing = await client.get_commit(REPO, made.hash)
    assert [(ch.path, ch.hash) for ch in listing.changes] == [("data/big.bin", uploaded.hash)]
    dest = tmp_path / "out.git"
    export_checked(server.storage.config.path, REPO, dest)  # type: ignore[union-attr]
    shown = subprocess.run(
        ["git", "--git-dir", str(dest), "rev-parse", "main:data/big.bin"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == uploaded.hash


async def test_uploaded_blob_becomes_a_file(
    tmp_path: Path, server: GovcServer, client: GovcClient
) -> None:
    await upload_add_commit_export(tmp_path, server, client, 3 * 1024 * 1024 + 17)


@pytest.mark.slow
async def test_200_mib_file_uploaded_and_added_by_hash(
    tmp_path: Path, server: GovcServer, client: GovcClient
) -> None:
    await upload_add_commit_export(tmp_path, server, client, 200 * 1024 * 1024)


async def test_blob_hash_errors(client: GovcClient) -> None:
    await client.create_repository(REPO)
    stored = await client.store_blob(REPO, b"small\n")
    cases = [
        ({"content": b"x", "blob_hash": stored.hash}, "INVALID_ARGUMENT", "not both"),
        ({"blob_hash": "0" * 40}, "NOT_FOUND", "blob_hash"),
        ({"blob_hash": "xyz"}, "INVALID_ARGUMENT", "blob_hash"),
    ]
    for kwargs, status, words in cases:
        with pytest.raises(GovcRpcError) as info:
            await client.write_file(REPO, "f.txt", **kwargs)  # type: ignore[arg-type]
        assert info.value.status.name == status and words in info.value.message
    # A commit is not a blob.
    await client.add_file(REPO, "f.txt", b"x\n")
    commit = await client.commit(REPO, "c")
    with pytest.raises(GovcRpcError) as info:
        await client.add_file(REPO, "g.txt", blob_hash=commit.hash)
    assert info.value.status.name == "NOT_FOUND"
    # WriteFile by hash leaves the index alone; the batch write takes blob_hash too.
    await client.write_file(REPO, "w.txt", blob_hash=stored.hash)
    assert "?? w.txt" in (await client.status(REPO)).status_entries
    batch = client.batch(REPO)
    batch.add("write", {"path": "b.txt", "blob_hash": stored.hash})
    outcome = await batch.run()
    assert outcome.results[0].success, outcome.results[0].error
    assert (await client.read_file(REPO, "b.txt")).content == b"small\n"


async def cli(*args: str) -> tuple[int, str, str]:
    """The govc command in a child process, without blocking the server's loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "govc.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_add_streams_a_file_over_the_message_limit(
    tmp_path: Path, server: GovcServer
) -> None:
    # Over half the client's 64 MiB message limit: `govc add` uploads it by stream.
    local = tmp_path / "over.bin"
    pseudo_random_file(local, 33 * 1024 * 1024)
    target = ["--server", f"127.0.0.1:{server.port}", "--repo", REPO]
    code, _, err = await cli(*target, "repo", "create", REPO)
    assert code == 0, err
    code, out, err = await cli(*target, "add", str(local), "--as", "over.bin")
    assert code == 0, err
    assert "add over.bin (34603008 bytes" in out
    async with GovcClient(f"127.0.0.1:{server.port}") as c:
        found = await c.read_file(REPO, "over.bin")
    assert found.hash == git_blob_id(local)
