"""Search RPCs: FullTextSearch, ExecuteSQLQuery, SearchWithAggregation."""

import math
import time
from collections.abc import Callable

from generated.govc import (
    AggregationGroup,
    AggregationSummary,
    ExecuteSqlQueryRequest,
    ExecuteSqlQueryResponse,
    FullTextSearchRequest,
    FullTextSearchResponse,
    QueryRow,
    SearchDocument,
    SearchResult,
    SearchWithAggregationRequest,
    SearchWithAggregationResponse,
)
from govc.core.validation import validate_repo_id
from govc.errors import InvalidArgument, Unavailable
from govc.search import aggregate
from govc.search.engine import Found, SearchEngine, SearchSpec
from govc.search.fulltext import SORTS
from govc.search.indexer import Indexer
from govc.search.sql import SqlEngine
from govc.services.access import Access
from govc.services.convert import timestamp_from_us

MAX_SQL_BYTES = 64 * 1024
MAX_QUERY_BYTES = 16 * 1024
MAX_LIMIT = 1000
DEFAULT_LIMIT = 10
MAX_HIGHLIGHT_LENGTH = 10_000
MAX_GROUP_KEYS = 5


def _spec(message: FullTextSearchRequest, repo_id: str, since_us: int | None) -> SearchSpec:
    if len(message.query.encode()) > MAX_QUERY_BYTES:
        raise InvalidArgument(f"query is longer than {MAX_QUERY_BYTES} bytes")
    for name in ("max_size", "limit", "offset", "highlight_length"):
        if getattr(message, name) < 0:
            raise InvalidArgument(f"{name} must not be negative, got {getattr(message, name)}")
    if not math.isfinite(message.min_score):
        raise InvalidArgument("min_score must be a finite number")
    if message.highlight_length > MAX_HIGHLIGHT_LENGTH:
        raise InvalidArgument(f"highlight_length must be at most {MAX_HIGHLIGHT_LENGTH}")
    sort = message.sort_by.strip().lower() or "score"
    if sort not in SORTS:
        raise InvalidArgument(f"sort_by must be one of {', '.join(SORTS)}, not {message.sort_by!r}")
    extensions = []
    for file_type in message.file_types:
        extension = file_type.strip().removeprefix(".").lower()
        if not extension or "/" in extension:
            raise InvalidArgument(f"file_types: {file_type!r} is not an extension")
        extensions.append(extension)
    return SearchSpec(
        repo_id=repo_id,
        query=message.query,
        extensions=extensions,
        max_size=message.max_size,
        min_score=message.min_score,
        modified_since_us=since_us,
        sort=sort,
        limit=min(message.limit or DEFAULT_LIMIT, MAX_LIMIT),
        offset=message.offset,
        include_content=message.include_content,
        highlight_length=message.highlight_length,
    )


def _result(found: Found) -> SearchResult:
    hit = found.hit
    return SearchResult(
        document=SearchDocument(
            path=hit.path,
            hash=hit.hash,
            size=hit.size,
            last_modified=timestamp_from_us(hit.modified_us),
            content=found.content or b"",
            content_type=hit.content_type,
        ),
        score=hit.score,
        highlights=found.highlights,
    )


class SearchService:
    def __init__(
        self,
        access: Access,
        sql: SqlEngine,
        engine: SearchEngine,
        indexer: Indexer,
        clock: Callable[[], float],
        index_wait_seconds: float,
    ) -> None:
        self._access = access
        self._sql = sql
        self._engine = engine
        self._indexer = indexer
        self._clock = clock
        self._index_wait = index_wait_seconds

    async def _caught_up(self, repo_id: str) -> None:
        if not await self._indexer.caught_up(repo_id, self._index_wait):
            if self._indexer.failure is not None:
                raise Unavailable("the search index no longer follows the writes; retry later")
            trouble = self._indexer.trouble
            if trouble is not None:
                raise Unavailable(
                    f"the search index cannot follow the writes at the moment ({trouble}); "
                    "retry later"
                )
            raise Unavailable(
                f"the search index has not caught up with repository {repo_id!r} within "
                f"{self._index_wait:g} s; retry"
            )

    async def full_text_search(self, message: FullTextSearchRequest) -> FullTextSearchResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        spec = _spec(message, repo_id, None)
        started = time.perf_counter()
        await self._caught_up(repo_id)
        if (
            spec.sort == "score"
            and spec.min_score <= 0
            and not spec.include_content
            and not self._engine.wants_highlights(spec)
            and self._indexer.has_file_times(repo_id)
        ):
            # One top-k collection and a count, nothing read from storage: short enough to run
            # on the loop, where the thread hop would cost as much as the search.
            found, total = self._engine.search(spec)
        else:
            found, total = await self._access.run(self._engine.search, spec)
        return FullTextSearchResponse(
            results=[_result(f) for f in found],
            total=total,
            query_time_ms=(time.perf_counter() - started) * 1000,
        )

    async def search_with_aggregation(
        self, message: SearchWithAggregationRequest
    ) -> SearchWithAggregationResponse:
        inner = message.query or FullTextSearchRequest()
        repo_id = validate_repo_id(message.repository_id or inner.repository_id, "repository_id")
        if inner.repository_id and inner.repository_id != repo_id:
            raise InvalidArgument("query.repository_id differs from repository_id")
        if len(message.group_by) > MAX_GROUP_KEYS:
            raise InvalidArgument(f"group_by has more than {MAX_GROUP_KEYS} keys")
        now_us = int(self._clock() * 1_000_000)
        for key in message.group_by:
            aggregate.key_function(key, now_us)  # rejects unknown keys before any work
        metric_names = aggregate.check_metrics(message.aggregations)
        since_us = None
        if message.time_range:
            seconds = aggregate.TIME_RANGES.get(message.time_range.strip().lower())
            if seconds is None:
                raise InvalidArgument(
                    f"time_range must be one of {', '.join(aggregate.TIME_RANGES)}, "
                    f"not {message.time_range!r}"
                )
            since_us = now_us - seconds * 1_000_000
        spec = _spec(inner, repo_id, since_us)
        await self._caught_up(repo_id)

        def run() -> SearchWithAggregationResponse:
            hits, context = self._engine.matches(spec)
            groups = aggregate.group(hits, message.group_by, metric_names, now_us)
            # Every group's samples decorated at once: one highlighter, one storage read.
            samples = iter(
                self._engine.decorate(
                    spec,
                    context.searcher,
                    context.user_query,
                    [hit for g in groups for hit in g.samples],
                )
            )
            return SearchWithAggregationResponse(
                groups=[
                    AggregationGroup(
                        group_value=g.value,
                        count=len(g.hits),
                        metrics=g.metrics,
                        sample_results=[_result(next(samples)) for _ in g.samples],
                    )
                    for g in groups
                ],
                summary=AggregationSummary(
                    total_documents=len(hits),
                    total_groups=len(groups),
                    metrics=aggregate.metrics(hits, metric_names),
                ),
            )

        return await self._access.run(run)

    async def execute_sql_query(self, message: ExecuteSqlQueryRequest) -> ExecuteSqlQueryResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        if len(message.sql_query.encode()) > MAX_SQL_BYTES:
            raise InvalidArgument(f"sql_query is longer than {MAX_SQL_BYTES} bytes")
        started = time.perf_counter()
        result = await self._access.run(self._sql.query, repo_id, message.sql_query)
        return ExecuteSqlQueryResponse(
            rows=[QueryRow(fields=row) for row in result.rows],
            total=len(result.rows),
            query_time_ms=(time.perf_counter() - started) * 1000,
            executed_sql=message.sql_query,
        )
