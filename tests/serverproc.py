"""`govc serve` as a child process on an ephemeral port, for tests that signal or kill it.

The server's log goes to a file (not a pipe, which would fill up and block the server once
nobody reads it); the port is read from its start-up line. Teardown always reaps the child:
SIGTERM, then SIGKILL if it does not exit in time. On Linux the child is also killed if the
test process dies first, so an interrupted run leaves no server behind.

Servers run with relaxed durability (no fsync) unless a test asks for `durability="durable"`:
only the tests of durability itself need acknowledged writes to be on disk.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from tests.polling import wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent

_SERVING_LINE = re.compile(r"govc serving gRPC on (?P<host>\S+):(?P<port>\d+), data dir ")
_PR_SET_PDEATHSIG = 1
# Loaded here, not in the child between fork and exec, where loading a library is unsafe.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGKILL it when its parent exits.

    (Strictly: when the parent *thread* exits, so start servers from the main thread.)
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


class ServerProcess:
    """One `govc serve` child. Use as a context manager, or call `start()` and `close()`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        log_path: Path | None = None,
        extra_args: tuple[str, ...] = (),
        durability: str = "relaxed",
        start_timeout: float = 20.0,
    ) -> None:
        self.data_dir = data_dir
        self.durability = durability
        self.log_path = log_path or data_dir.parent / f"{data_dir.name}-server.log"
        self.extra_args = extra_args
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self._log_offset = 0  # where this run's log starts (a restart appends to the same file)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("server process not started")
        return self.process.pid

    def log_text(self) -> str:
        """What this run of the server has logged so far."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> ServerProcess:
        if self.process is not None:
            raise RuntimeError("server process already started")
        command = [
            sys.executable,
            "-m",
            "govc.cli",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--grpc-port",
            "0",
            "--durability",
            self.durability,
            *self.extra_args,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent if _LIBC is not None else None,
            )
        try:
            self._wait_for_port()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_for_port(self) -> None:
        process = self.process
        assert process is not None

        def serving() -> re.Match[str] | None:
            exited = process.poll()  # before reading the log, so an exit cannot hide its line
            match = _SERVING_LINE.search(self.log_text())
            if match is None and exited is not None:
                raise RuntimeError(
                    f"govc serve exited with code {exited} before serving:\n{self.log_text()}"
                )
            return match

        match = wait_until(
            serving,
            timeout=self.start_timeout,
            interval=0.02,
            message=lambda: f"govc serve did not log its port:\n{self.log_text()}",
        )
        self.host, self.port = match["host"], int(match["port"])

    def send_signal(self, sig: signal.Signals) -> None:
        if self.process is None:
            raise RuntimeError("server process not started")
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit code; raises `subprocess.TimeoutExpired` if still running after `timeout`."""
        if self.process is None:
            raise RuntimeError("server process not started")
        return self.process.wait(timeout)

    def kill(self) -> int | None:
        """SIGKILL and reap; returns the exit code (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()

    def close(self, timeout: float = 10.0) -> int | None:
        """Stop politely (SIGTERM), then forcibly; always reaps the child."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
