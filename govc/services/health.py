"""GetHealth: real checks of storage (a read, the writer's state), the search index and disk.

It writes nothing: a health probe that anyone may call must not cost an fsync each time."""

import datetime
import shutil
import time

from generated.google.protobuf import Empty
from generated.govc import HealthResponse
from govc.core.database import Database
from govc.search.indexer import CatchUpProgress, Indexer

# Less free disk than this is `degraded`: writes may soon fail.
MIN_FREE_BYTES = 256 * 1024 * 1024


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
        failed = storage["storage_read"] != "ok" or storage["storage_write"] != "ok"
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
        try:
            checks["search_documents"] = str(self._indexer.index.searcher().num_docs)
            progress = self._indexer.catch_up_progress()
            checks["search_catch_up"] = "done" if progress is None else _catch_up(progress)
            failure = self._indexer.failure
            if failure is None:
                checks["search_index"] = "ok"
            else:  # the index no longer follows the writes: searches answer UNAVAILABLE
                checks["search_index"] = f"failed: the indexer stopped: {failure!r}"
                degraded = True
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
