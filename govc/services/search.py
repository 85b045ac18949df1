"""Search RPCs: ExecuteSQLQuery (FullTextSearch and SearchWithAggregation are not served yet)."""

import asyncio
import time

from generated.govc import ExecuteSqlQueryRequest, ExecuteSqlQueryResponse, QueryRow
from govc.errors import InvalidArgument
from govc.search.sql import SqlEngine
from govc.validation import validate_repo_id

MAX_SQL_BYTES = 64 * 1024


class SearchService:
    def __init__(self, sql: SqlEngine) -> None:
        self._sql = sql

    async def execute_sql_query(self, message: ExecuteSqlQueryRequest) -> ExecuteSqlQueryResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        if len(message.sql_query.encode()) > MAX_SQL_BYTES:
            raise InvalidArgument(f"sql_query is longer than {MAX_SQL_BYTES} bytes")
        started = time.perf_counter()
        result = await asyncio.to_thread(self._sql.query, repo_id, message.sql_query)
        return ExecuteSqlQueryResponse(
            rows=[QueryRow(fields=row) for row in result.rows],
            total=len(result.rows),
            query_time_ms=(time.perf_counter() - started) * 1000,
            executed_sql=message.sql_query,
        )
