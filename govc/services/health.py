"""GetHealth: real checks of storage, the search index and disk."""

import asyncio
import datetime
import shutil
import time
from typing import Any

from generated.google.protobuf import Empty
from generated.govc import HealthResponse
from govc.search.indexer import Indexer
from govc.storage import Storage

# Less free disk than this is `degraded`: writes may soon fail.
MIN_FREE_BYTES = 256 * 1024 * 1024
HEALTH_WRITE_TIMEOUT = 5.0


class HealthService:
    def __init__(
        self, storage: Storage, indexer: Indexer, started_monotonic: float | None = None
    ) -> None:
        self._storage = storage
        self._indexer = indexer
        self._started = started_monotonic if started_monotonic is not None else time.monotonic()

    async def get_health(self, message: Empty) -> HealthResponse:
        checks: dict[str, str] = {}
        failed = degraded = False
        try:
            with self._storage.read() as txn:
                txn.get(b"format", db=self._storage.dbs["meta"])
            checks["storage_read"] = "ok"
        except Exception as exc:
            checks["storage_read"] = f"failed: {exc}"
            failed = True
        try:
            probe = str(time.time_ns()).encode()
            meta = self._storage.dbs["meta"]

            def op(txn: Any) -> None:
                txn.put(b"health_probe", probe, db=meta)

            await asyncio.wait_for(
                asyncio.wrap_future(self._storage.writer.submit(op)), HEALTH_WRITE_TIMEOUT
            )
            checks["storage_write"] = "ok"
        except Exception as exc:
            checks["storage_write"] = f"failed: {exc or type(exc).__name__}"
            failed = True
        try:
            free = shutil.disk_usage(self._storage.config.path).free
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
            checks["search_index"] = "ok"
            progress = self._indexer.catch_up_progress()
            checks["search_catch_up"] = (
                "done" if progress is None else f"comparing: {progress[0]} of {progress[1]}"
            )
        except Exception as exc:
            checks["search_index"] = f"failed: {exc}"
            degraded = True
        writer = self._storage.writer
        checks["writer_commits"] = str(writer.commits)
        checks["writer_operations"] = str(writer.operations)
        status = "unhealthy" if failed else "degraded" if degraded else "healthy"
        return HealthResponse(
            status=status,
            checks=checks,
            timestamp=datetime.datetime.now(datetime.UTC),
            uptime_seconds=time.monotonic() - self._started,
        )
