"""One server per data dir.

Two servers on one data dir would share its storage (LMDB allows several processes) but not
its search index: the second would find the index's state out of step and rebuild it under the
first. So a server holds an exclusive `flock` on `DATA/server.lock` while it runs. The kernel
drops the lock when the process ends, also on kill -9, so a crash never leaves a stale lock.
Offline tools (`govc import`) do not take it: they only write storage, and the running server's
index catches up with that.
"""

import fcntl
import os

LOCK_FILE = "server.lock"


class DataDirInUse(RuntimeError):
    """Another server holds the data dir."""


class DataDirLock:
    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (creating the data dir if needed); DataDirInUse if another server
        holds it."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"data dir {os.path.dirname(self.path)} is in use by another govc server "
                f"(pid {holder})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race with the next server)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
