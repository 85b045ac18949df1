"""The `govc` command line as a user runs it: a child process, its exit status and stderr."""

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from govc.cli import build_parser
from govc.client import GovcClient
from govc.server import GovcServer

ROOT = Path(__file__).resolve().parent.parent
# Far more output than a pipe holds (64 KiB on Linux) plus stdout's buffer, so the command is
# still writing when its reader goes away, whatever the scheduling.
LONG_TEXT = "".join(f"line {n} of a message that does not fit in a pipe\n" for n in range(20000))


def govc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "govc.cli", *args]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--grpc-port", "70000"),  # once served on 70000 - 65536 = 4464
        ("--grpc-port", "65536"),
        ("--grpc-port", "-1"),
        ("--rest-port", "70000"),
        ("--rest-port", "-1"),
    ],
)
def test_serve_refuses_a_port_out_of_range(tmp_path: Path, flag: str, value: str) -> None:
    data_dir = tmp_path / "data"
    ports = {"--grpc-port": "0", flag: value}  # the other port harmless
    args = [f for name, port in ports.items() for f in (name, port)]
    done = subprocess.run(
        govc_command("serve", "--data-dir", str(data_dir), *args),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,  # a guard only: a refused start exits at once, a served one never does
    )
    assert done.returncode == 2, done.stderr
    assert f"argument {flag}: invalid port {value}: must be 0 to 65535" in done.stderr
    assert done.stderr.startswith("usage: govc serve"), done.stderr
    assert "Traceback" not in done.stderr
    # Refused while parsing the arguments: no storage opened, nothing listening.
    assert "serving" not in done.stderr
    assert not data_dir.exists()


def test_port_flags_accept_0_to_65535_only() -> None:
    parser = build_parser()
    for flag in ("--grpc-port", "--rest-port"):
        assert getattr(parser.parse_args(["serve", flag, "0"]), flag[2:].replace("-", "_")) == 0
        args = parser.parse_args(["serve", flag, "65535"])
        assert getattr(args, flag[2:].replace("-", "_")) == 65535
        for bad in ("65536", "-1", "abc"):
            with pytest.raises(SystemExit) as exited:
                parser.parse_args(["serve", flag, bad])
            assert exited.value.code == 2


def read_one_line_and_close(command: list[str]) -> tuple[bytes, int, str]:
    """Run `command` as `command | head -1` would: read one line, close the pipe, and return
    that line, the exit status and everything the command wrote to stderr."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # read exactly one line, nothing ahead of it
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        process.stdout.close()
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return first, process.returncode, stderr.decode(errors="replace")


async def test_log_exits_quietly_when_its_reader_closes_the_pipe(
    server: GovcServer, client: GovcClient
) -> None:
    """`govc log | head -1`: once `head` has its line, govc stops without a word."""
    await client.create_repository("pipe")
    await client.add_file("pipe", "a.txt", b"a\n")
    await client.commit("pipe", "a long message\n\n" + LONG_TEXT, author="Ada <ada@example.com>")
    command = govc_command("--server", f"127.0.0.1:{server.port}", "-r", "pipe", "log")
    # In a thread: the server answers on this test's event loop meanwhile.
    first, code, stderr = await asyncio.to_thread(read_one_line_and_close, command)
    assert first.startswith(b"commit ")
    assert stderr == "", stderr  # no traceback, no "[Errno 32] Broken pipe"
    assert code == 1  # what Python itself exits with on EPIPE
