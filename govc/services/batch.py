"""BatchOperations: up to 1,000 operations in one call, optionally atomic or parallel."""

import asyncio
import json
import time
from collections.abc import Callable, Iterable

from generated.govc import BatchOperationResult, BatchOperationsRequest, BatchOperationsResponse
from govc.core.validation import validate_repo_id
from govc.errors import InvalidArgument
from govc.services.access import Access
from govc.services.batch_ops import (
    MAX_OPERATIONS,
    BatchAborted,
    BatchExecutor,
    Operation,
    OperationResult,
    ResponseBudget,
    parse_operation,
    run_operations,
    sql_in_writing_batch,
)


def _message(result: OperationResult) -> BatchOperationResult:
    payload = result.payload
    if not payload and result.result:
        payload = json.dumps(result.result, separators=(",", ":")).encode()
    return BatchOperationResult(
        id=result.id, success=result.success, result=payload, error=result.error
    )


class BatchService:
    def __init__(
        self,
        access: Access,
        executor: BatchExecutor,
        changed: Callable[[str, Iterable[str] | None], None],
    ) -> None:
        self._access = access
        self._executor = executor
        self._changed = changed  # told after writes (the search indexer: read-your-writes)

    async def batch_operations(self, message: BatchOperationsRequest) -> BatchOperationsResponse:
        started = time.perf_counter()
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        if len(message.operations) > MAX_OPERATIONS:
            raise InvalidArgument(
                f"operations has {len(message.operations)} entries, over the limit of "
                f"{MAX_OPERATIONS}"
            )
        if message.transaction and message.parallel:
            raise InvalidArgument("transaction and parallel cannot both be set")
        self._access.read_inline(repo_id, lambda txn: None)  # NOT_FOUND for the whole call
        ops = [parse_operation(op.id, op.type, op.params) for op in message.operations]
        if not message.parallel:  # (parallel batches run queries beside, not inside, writes)
            sql_in_writing_batch(ops)
        # One response budget and one time budget (its queries') for all the operations, also
        # when a parallel batch runs them in several transactions at once.
        budget = ResponseBudget(
            self._executor.max_response_bytes, time.monotonic() + self._executor.time_budget
        )
        error = ""
        try:
            if message.parallel:
                results = await self._run_parallel(repo_id, ops, budget)
            else:
                results = await self._run_sequential(repo_id, ops, message.transaction, budget)
        except BatchAborted as aborted:
            results, error = aborted.results, aborted.message
        failed = [r for r in results if not r.success]
        if failed and not error:
            error = f"{len(failed)} of {len(results)} operations failed"
        return BatchOperationsResponse(
            results=[_message(r) for r in results],
            success=not failed,
            error=error,
            execution_time_ms=(time.perf_counter() - started) * 1000,
        )

    async def _run_sequential(
        self, repo_id: str, ops: list[Operation], transaction: bool, budget: ResponseBudget
    ) -> list[OperationResult]:
        """The operations in one transaction: a read in the work pool when none writes, else
        one write (each operation nested unless `transaction`). The repository must exist in
        that very transaction, or the whole call is NOT_FOUND."""
        if all(op.read_only or op.error for op in ops):
            runner = run_operations(self._executor, repo_id, ops, transaction, False, budget)
            return await self._access.read(repo_id, runner)
        runner = run_operations(self._executor, repo_id, ops, transaction, True, budget)
        return await self._access.write(repo_id, runner, then=lambda: self._changed(repo_id, None))

    async def _run_parallel(
        self, repo_id: str, ops: list[Operation], budget: ResponseBudget
    ) -> list[OperationResult]:
        """Runs of read-only operations run concurrently; writes between them, in order; all
        of them on the call's one budget. (The reads wait for the read pool's few threads, so
        only that many results are being built at once, each checked against what is left.)"""
        results: list[OperationResult] = []
        index = 0
        while index < len(ops):
            end = index
            read_only = ops[index].read_only or bool(ops[index].error)
            while end < len(ops) and (ops[end].read_only or bool(ops[end].error)) == read_only:
                end += 1
            segment = ops[index:end]
            if read_only:
                parts = await asyncio.gather(
                    *(self._run_sequential(repo_id, [op], False, budget) for op in segment)
                )
                results += [r for part in parts for r in part]
            else:
                results += await self._run_sequential(repo_id, segment, False, budget)
            index = end
        return results
