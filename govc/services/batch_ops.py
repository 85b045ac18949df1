"""Batch operations: many repository operations in one call, as JSON in and JSON out.

Each operation is a call of the same core function its RPC calls, inside a transaction it is
given (the batch decides which: one shared transaction for `transaction=true`, a nested one per
operation otherwise), so a batch of writes costs one commit and one fsync instead of one per
operation, and a transactional batch is all or nothing.
"""

import base64
import binascii
import datetime
import fnmatch
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from govc.core.database import Txn
from govc.core.gitformat import DIR_MODE, parse_author, validate_object_id
from govc.core.objects import PreparedObject, prepare_blob
from govc.core.validation import validate_path
from govc.core.versioncontrol import CommitInfo, VersionControl
from govc.errors import GovcError, InvalidArgument, NotFound, ResourceExhausted
from govc.search.sql import sql_deadline, sql_time_budget

MAX_OPERATIONS = 1000
READ_ONLY = frozenset({"get_blob", "read", "get_commit", "list_commits", "get_tree", "query"})
WRITES = frozenset({"store_blob", "write", "delete", "commit"})
NOT_EXECUTED = "not executed (transaction aborted)"
ROLLED_BACK = "rolled back (transaction aborted)"


@dataclass
class Operation:
    id: str
    type: str  # lower-cased
    params: dict[str, Any]
    error: str = ""  # set when the operation could not even be parsed

    @property
    def read_only(self) -> bool:
        return self.type in READ_ONLY


@dataclass
class OperationResult:
    id: str
    success: bool
    result: dict[str, Any] | None = None  # (unused once `payload` holds it)
    error: str = ""
    payload: bytes = b""  # the result as JSON, encoded once (what the response carries)


def parse_operation(op_id: str, op_type: str, raw_params: bytes) -> Operation:
    kind = op_type.strip().lower()
    params: dict[str, Any] = {}
    error = ""
    if kind not in READ_ONLY | WRITES:
        error = f"unsupported operation type: {op_type}"
    elif raw_params.strip():
        try:
            decoded = json.loads(raw_params)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            error = f"params is not valid JSON: {exc}"
        except RecursionError:
            error = "params is nested too deeply"
        else:
            if isinstance(decoded, dict):
                params = decoded
            else:
                error = "params must be a JSON object"
    return Operation(op_id, kind, params, error)


def _timestamp(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat().replace("+00:00", "Z")


def _content_fields(content: bytes) -> dict[str, Any]:
    try:
        return {"content": content.decode("utf-8")}
    except UnicodeDecodeError:
        return {"content_b64": base64.b64encode(content).decode()}


def _commit_fields(info: CommitInfo) -> dict[str, Any]:
    commit = info.commit
    fields: dict[str, Any] = {
        "hash": info.id,
        "message": commit.message.rstrip("\n"),
        "author": commit.author.identity,
        "timestamp": _timestamp(commit.author.time),
        "parent_hashes": list(commit.parents),
    }
    if info.changes is not None:
        fields["changes"] = [
            {"path": path, "type": kind, "hash": oid.hex()} for path, kind, oid in info.changes
        ]
    return fields


class Params:
    """Typed access to one operation's params; errors name `params.<field>`."""

    def __init__(self, params: dict[str, Any]) -> None:
        self._params = params

    def text(self, name: str, required: bool = True, default: str = "") -> str:
        value = self._params.get(name)
        if value is None:
            if required:
                raise InvalidArgument(f"params.{name} is required")
            return default
        if not isinstance(value, str):
            raise InvalidArgument(f"params.{name} must be a string")
        return _unicode(value, name)

    def integer(self, name: str, default: int = 0) -> int:
        value = self._params.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument(f"params.{name} must be an integer")
        return value

    def __contains__(self, name: str) -> bool:
        return name in self._params

    def flag(self, name: str, default: bool) -> bool:
        value = self._params.get(name, default)
        if not isinstance(value, bool):
            raise InvalidArgument(f"params.{name} must be true or false")
        return value

    def strings(self, name: str) -> list[str]:
        value = self._params.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"params.{name} must be a list of strings")
        return [_unicode(item, name) for item in value]

    def content(self) -> bytes:
        if "content_b64" in self._params:
            try:
                return base64.b64decode(self.text("content_b64"), validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArgument("params.content_b64 is not valid base64") from None
        return self.text("content").encode("utf-8")

    def path(self, name: str = "path", required: bool = True) -> str:
        value = self.text(name, required)
        return validate_path(value, f"params.{name}") if value or required else ""


def _unicode(value: str, name: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON's \ud800 escapes decode to lone surrogates
        raise InvalidArgument(f"params.{name} is not valid Unicode text") from None
    return value


RESULT_OVERHEAD = 64  # what one result costs in the response besides its JSON and its id


class ResponseBudget:
    """How much one call may still return (the response is one message) and until when its
    queries may run: one budget for all the call's operations, shared by those that run
    concurrently in a parallel batch (so it is thread-safe)."""

    def __init__(self, limit: int, deadline: float | None = None) -> None:
        self.limit = limit
        self.left = limit
        self.deadline = deadline  # time.monotonic() after which no query may run
        self._lock = threading.Lock()

    def _over(self, size: int, field: str, instead: str) -> ResourceExhausted:
        return ResourceExhausted(
            f"{field}: its result ({size} bytes as JSON) would take this call's response "
            f"over the {self.limit}-byte message limit; {instead}"
        )

    def check(self, size: int, field: str, instead: str) -> None:
        """Fail early (before building the result) when `size` alone no longer fits."""
        if size > self.left:
            raise self._over(size, field, instead)

    def take(self, size: int, field: str, instead: str) -> None:
        with self._lock:
            if size > self.left:
                raise self._over(size, field, instead)
            self.left -= size

    def charge(self, size: int) -> None:
        """What a failed operation's error costs: taken even when it does not fit (an error
        has to be reported), which leaves nothing for later results."""
        with self._lock:
            self.left = max(0, self.left - size)

    def content(self, fields: dict[str, Any], field: str) -> dict[str, Any]:
        size = len(fields.get("content", "")) + len(fields.get("content_b64", ""))
        self.check(size, field, "read it with StreamBlob or ReadFile")
        return fields


# (read transaction, repository, SQL) -> the rows, each value as text (ExecuteSQLQuery's engine)
SqlRunner = Callable[[Txn, str, str], list[dict[str, str]]]


class BatchExecutor:
    """Runs one parsed operation inside a given transaction."""

    def __init__(
        self,
        vc: VersionControl,
        max_response_bytes: int,
        run_sql: SqlRunner,
        time_budget: float | None = None,
    ) -> None:
        self._vc = vc
        self.max_response_bytes = max_response_bytes
        # How long a call's queries may run, all together (the engine's budget for one query).
        self.time_budget = sql_time_budget() if time_budget is None else time_budget
        self._run_sql = run_sql
        self._handlers: dict[str, Callable[[Txn, str, Params, ResponseBudget], dict[str, Any]]] = {
            "store_blob": self._store_blob,
            "get_blob": self._get_blob,
            "write": self._write,
            "read": self._read,
            "delete": self._delete,
            "commit": self._commit,
            "get_commit": self._get_commit,
            "list_commits": self._list_commits,
            "get_tree": self._get_tree,
            "query": self._query,
        }

    def execute(
        self, txn: Txn, repo_id: str, op: Operation, budget: ResponseBudget
    ) -> dict[str, Any]:
        if op.error:
            raise InvalidArgument(op.error)
        return self._handlers[op.type](txn, repo_id, Params(op.params), budget)

    def _store_blob(self, txn: Txn, repo_id: str, p: Params, _: ResponseBudget) -> dict[str, Any]:
        prepared = prepare_blob(p.content())
        txn.objects.put_prepared(repo_id, prepared)
        return {"hash": prepared.hex, "size": prepared.size}

    def _get_blob(
        self, txn: Txn, repo_id: str, p: Params, budget: ResponseBudget
    ) -> dict[str, Any]:
        hex_id = p.text("hash")
        oid = validate_object_id(hex_id, "params.hash")
        content = self._vc.objects.read_kind(txn, repo_id, oid, "blob")
        budget.check(len(content), "params.hash", "read it with StreamBlob or ReadFile")
        fields = budget.content(_content_fields(content), "params.hash")
        return {"hash": hex_id, "size": len(content), **fields}

    def _write(self, txn: Txn, repo_id: str, p: Params, _: ResponseBudget) -> dict[str, Any]:
        path = p.path()
        blob: PreparedObject | bytes
        blob_hash = p.text("blob_hash", required=False)
        if blob_hash:
            if "content" in p or "content_b64" in p:
                raise InvalidArgument("set params.content or params.blob_hash, not both")
            blob = validate_object_id(blob_hash, "params.blob_hash")
        else:
            blob = prepare_blob(p.content())
        entry = self._vc.write_file(txn, repo_id, path, blob, p.flag("stage", True))
        return {"path": path, "hash": entry.oid.hex(), "size": entry.size}

    def _read(self, txn: Txn, repo_id: str, p: Params, budget: ResponseBudget) -> dict[str, Any]:
        path = p.path()
        found = self._vc.read_file(txn, repo_id, path, p.text("ref", required=False), "params.ref")
        budget.check(len(found.content), "params.path", "read it with StreamBlob or ReadFile")
        fields = budget.content(_content_fields(found.content), "params.path")
        return {"path": path, "hash": found.oid.hex(), "size": len(found.content), **fields}

    def _delete(self, txn: Txn, repo_id: str, p: Params, _: ResponseBudget) -> dict[str, Any]:
        path = p.path()
        self._vc.remove_file(txn, repo_id, path)
        return {"path": path}

    def _commit(self, txn: Txn, repo_id: str, p: Params, _: ResponseBudget) -> dict[str, Any]:
        author = parse_author(
            p.text("author", required=False), *self._vc.identity, field="params.author"
        )
        files = [validate_path(f, "params.files") for f in p.strings("files")]
        message = p.text("message")
        info = self._vc.commit(txn, repo_id, message, author, files, "params.message")
        fields = _commit_fields(info)
        return {k: fields[k] for k in ("hash", "message", "author", "timestamp")}

    def _get_commit(self, txn: Txn, repo_id: str, p: Params, _: ResponseBudget) -> dict[str, Any]:
        return _commit_fields(self._vc.get_commit(txn, repo_id, p.text("hash"), "params.hash"))

    def _list_commits(self, txn: Txn, repo_id: str, p: Params, _: ResponseBudget) -> dict[str, Any]:
        offset = p.integer("offset")
        if offset < 0:
            raise InvalidArgument("params.offset must not be negative")
        commits, total = self._vc.list_commits(
            txn,
            repo_id,
            p.text("branch", required=False),
            p.text("author", required=False),
            p.integer("limit"),
            offset,
            "params.branch",
        )
        return {"commits": [_commit_fields(c) for c in commits], "total": total}

    def _get_tree(self, txn: Txn, repo_id: str, p: Params, _: ResponseBudget) -> dict[str, Any]:
        vc = self._vc
        commit_id = vc.resolve(txn, repo_id, p.text("ref", required=False) or "HEAD", "params.ref")
        tree = bytes.fromhex(vc.objects.commit(txn, repo_id, commit_id).tree)
        prefix = p.path(required=False)
        if prefix:
            for part in prefix.split("/"):
                match = [e for e in vc.objects.tree(txn, repo_id, tree) if e[1] == part]
                if not match or match[0][0] != DIR_MODE:
                    raise NotFound(f"params.path {prefix!r} is not a directory in {commit_id[:12]}")
                tree = match[0][2]
        entries = []
        for mode, name, oid in vc.objects.tree(txn, repo_id, tree):
            info = txn.objects.info(repo_id, oid) if mode != DIR_MODE else None
            entries.append(
                {
                    "path": f"{prefix}/{name}" if prefix else name,
                    "mode": mode if mode != DIR_MODE else "040000",
                    "hash": oid.hex(),
                    "size": info.size if info else 0,
                }
            )
        return {"entries": entries}

    def _query(self, txn: Txn, repo_id: str, p: Params, budget: ResponseBudget) -> dict[str, Any]:
        if "sql" in p._params:
            # Only in batches without writes (see `sql_in_writing_batch`): `txn` is a read.
            try:
                with sql_deadline(budget.deadline):
                    rows = self._run_sql(txn, repo_id, p.text("sql"))
            except GovcError as exc:  # the engine names ExecuteSQLQuery's field
                exc.message = exc.message.replace("sql_query", "params.sql", 1)
                raise
            return {"results": rows}
        pattern = p.text("pattern")
        files = self._vc.current_files(txn, repo_id)
        return {
            "results": [
                {"path": path, "hash": oid.hex(), "size": size}
                for path, (oid, size) in sorted(files.items())
                if fnmatch.fnmatchcase(path, pattern)
            ]
        }


def sql_in_writing_batch(ops: list[Operation]) -> None:
    """SQL reads the state committed before the call, on its own time budget: in a batch that
    also writes (run by the single writer, which would wait for it) it is refused."""
    if all(op.read_only or op.error for op in ops):
        return
    for op in ops:
        if op.type == "query" and not op.error and "sql" in op.params:
            op.error = (
                "params.sql: SQL runs only in batches without writes (or in parallel batches); "
                "send it in its own call"
            )


class BatchAborted(GovcError):
    """A transactional batch failed: carries the results to report, nothing was applied."""

    def __init__(self, results: list[OperationResult], message: str) -> None:
        super().__init__(message)
        self.results = results


# Where an operation's result is too big for the response: the field to name, what to do.
_TOO_BIG = {
    "read": ("params.path", "read it with StreamBlob or ReadFile"),
    "get_blob": ("params.hash", "read it with StreamBlob or ReadFile"),
    "list_commits": ("params.limit", "list fewer commits at a time"),
    "get_tree": ("params.path", "list a smaller directory"),
}


def _payload(operation: Operation, value: dict[str, Any], budget: ResponseBudget) -> bytes:
    """`value` as JSON, taken from the call's response budget (ResourceExhausted if it does
    not fit)."""
    payload = json.dumps(value, separators=(",", ":")).encode() if value else b""
    if operation.type == "query":
        field, instead = ("params.sql", "add a LIMIT")
        if "sql" not in operation.params:
            field, instead = ("params.pattern", "match fewer files")
    else:
        field, instead = _TOO_BIG.get(operation.type, ("result", "split the batch"))
    budget.take(len(payload) + len(operation.id) + RESULT_OVERHEAD, field, instead)
    return payload


def run_operations(
    executor: BatchExecutor,
    repo_id: str,
    ops: list[Operation],
    transaction: bool,
    nested: bool,
    budget: ResponseBudget | None = None,
) -> Callable[[Txn], list[OperationResult]]:
    """A transaction function running `ops` in order.

    `transaction`: all in the given transaction; the first failure raises BatchAborted, which
    aborts it. Otherwise, with `nested`, each operation runs in a child transaction, so a failed
    one leaves no trace and the others still apply (`nested=False`: a read-only batch).
    `budget`: the call's, when it runs its operations in several parts (a parallel batch).
    """

    def op(txn: Txn) -> list[OperationResult]:
        results: list[OperationResult] = []
        nonlocal budget
        if budget is None:
            budget = ResponseBudget(executor.max_response_bytes)
        for index, operation in enumerate(ops):
            try:
                if transaction or not nested:
                    value = executor.execute(txn, repo_id, operation, budget)
                    payload = _payload(operation, value, budget)
                else:
                    with txn.nested() as child:
                        value = executor.execute(child, repo_id, operation, budget)
                        payload = _payload(operation, value, budget)
            except GovcError as exc:
                if not transaction:
                    budget.charge(len(exc.message) + len(operation.id) + RESULT_OVERHEAD)
                    results.append(OperationResult(operation.id, False, error=exc.message))
                    continue
                aborted = [OperationResult(r.id, False, error=ROLLED_BACK) for r in results]
                aborted.append(OperationResult(operation.id, False, error=exc.message))
                aborted += [
                    OperationResult(o.id, False, error=NOT_EXECUTED) for o in ops[index + 1 :]
                ]
                raise BatchAborted(
                    aborted,
                    f"transaction aborted: operation {index} ({operation.id or operation.type}) "
                    f"failed: {exc.message}",
                ) from None
            # Only the payload is kept: it is what the response carries.
            results.append(OperationResult(operation.id, True, payload=payload))
        return results

    return op
