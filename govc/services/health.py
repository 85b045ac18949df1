"""GetHealth: real checks of storage (a read, the writer's state), the search index, disk and
open files.

It writes nothing: a health probe that anyone may call must not cost an fsync each time."""

import datetime
import logging
import os
import resource
import shutil
import time

from generated.google.protobuf import Empty
from generated.govc import HealthResponse
from govc.core.database import Database
from govc.search.indexer import CatchUpProgress, Indexer

log = logging.getLogger(__name__)

# Less free disk than this is `degraded`: writes may soon fail.
MIN_FREE_BYTES = 256 * 1024 * 1024
# More open files than this share of the limit is `degraded`: opening more may soon fail
# (EMFILE), for connections, the index and storage alike.
MAX_OPEN_FILES_SHARE = 0.9


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft limit of open files (RLIMIT_NOFILE) to its hard limit, for the
    server to call at start (every connection, index segment and file costs one; shells often
    start with a soft limit of 256 or 1024). Returns the (soft, hard) limits in force after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # (an unlimited hard limit, on some systems)
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, hard, exc)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def open_file_count() -> int:
    """How many files (sockets included) this process has open (Linux: /proc/self/fd)."""
    return len(os.listdir("/proc/self/fd")) - 1  # (less the one listing them)


def _open_files(checks: dict[str, str]) -> bool:
    """Fill the open file checks; whether they are `degraded`."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = soft == resource.RLIM_INFINITY
    checks["open_files_limit"] = "unlimited" if unlimited else str(soft)
    try:
        count = open_file_count()
    except OSError as exc:  # EMFILE itself: not even /proc/self/fd can be opened
        checks["open_files"] = f"failed: {exc}"
        return True
    checks["open_files"] = str(count)
    return not unlimited and count > soft * MAX_OPEN_FILES_SHARE


def _catch_up(progress: CatchUpProgress) -> str:
    """`comparing: 3 of 40` while the repositories are compared with the index, with
    `, rebuilding: 1 of 3 repositories` (or `indexing`, when the index was there) once some
    were found behind; then that alone, until all of those are indexed."""
    indexing = "rebuilding" if progress.rebuilding else "indexing"
    indexing += f": {progress.indexed} of {progress.to_index} repositories"
    if not progress.comparing:
        return indexing
    comparing = f"comparing: {progress.compared} of {progress.to_compare}"
    return f"{comparing}, {indexing}" if progress.to_index else comparing


class HealthService:
    def __init__(
        self, db: Database, indexer: Indexer, started_monotonic: float | None = None
    ) -> None:
        self._db = db
        self._indexer = indexer
        self._started = started_monotonic if started_monotonic is not None else time.monotonic()

    async def get_health(self, message: Empty) -> HealthResponse:
        checks: dict[str, str] = {}
        degraded = False
        storage = self._db.health()
        checks.update(storage)
        write = storage["storage_write"]
        full = write.startswith("degraded")
        failed = storage["storage_read"] != "ok" or (write != "ok" and not full)
        if full:  # the disk is full: writes fail, reads and searches work
            degraded = True
        try:
            free = shutil.disk_usage(self._db.path).free
            checks["disk_free_bytes"] = str(free)
            if free < MIN_FREE_BYTES:
                checks["disk"] = f"low: {free} bytes free"
                degraded = True
            else:
                checks["disk"] = "ok"
        except OSError as exc:
            checks["disk"] = f"failed: {exc}"
            degraded = True
        degraded |= _open_files(checks)
        try:
            checks["search_documents"] = str(self._indexer.index.searcher().num_docs)
            progress = self._indexer.catch_up_progress()
            checks["search_catch_up"] = "done" if progress is None else _catch_up(progress)
            failure, trouble = self._indexer.failure, self._indexer.trouble
            if failure is not None:  # the index no longer follows the writes
                checks["search_index"] = f"failed: the indexer stopped: {failure!r}"
                degraded = True
            elif trouble is not None:  # it cannot now; it retries, and recovers by itself
                checks["search_index"] = f"failed: {trouble}; retrying"
                degraded = True
            else:
                checks["search_index"] = "ok"
        except Exception as exc:
            checks["search_index"] = f"failed: {exc}"
            degraded = True
        status = "unhealthy" if failed else "degraded" if degraded else "healthy"
        return HealthResponse(
            status=status,
            checks=checks,
            timestamp=datetime.datetime.now(datetime.UTC),
            uptime_seconds=time.monotonic() - self._started,
        )
