"""Read-only SQL over a repository's data, through the standard library's sqlite3.

Each query runs against a private in-memory database holding the repository's tables (files,
commits, changes, branches, tags, blobs), filled per query from the current work tree and from what
each commit changed, which is derived once per commit and kept (`govc.search.history`).
The sandbox: one statement, an authorizer that allows reading and nothing else (no writes, no
ATTACH, no PRAGMA, no functions outside a safe list), a time budget enforced by a progress
handler, and a row cap.
"""

import contextlib
import datetime
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from govc.core.gitformat import Commit
from govc.core.objects import file_extension, file_name
from govc.core.versioncontrol import TagInfo, VersionControl
from govc.errors import DeadlineExceeded, InvalidArgument, NotFound, ResourceExhausted
from govc.search.history import History
from govc.storage import Storage, Txn

SCHEMA = """
CREATE TABLE files (path TEXT PRIMARY KEY, name TEXT, extension TEXT, size INTEGER,
                    hash TEXT, mode TEXT, last_modified TEXT, content TEXT);
CREATE TABLE commits (hash TEXT PRIMARY KEY, author TEXT, email TEXT, message TEXT,
                      timestamp TEXT, parent TEXT, parent_count INTEGER);
CREATE TABLE changes ("commit" TEXT, path TEXT, type TEXT, hash TEXT);
CREATE TABLE branches (name TEXT PRIMARY KEY, "commit" TEXT, is_current INTEGER);
CREATE TABLE tags (name TEXT PRIMARY KEY, "commit" TEXT, tag_hash TEXT, message TEXT,
                   tagger TEXT, timestamp TEXT);
CREATE TABLE blobs (hash TEXT PRIMARY KEY, size INTEGER, stored_size INTEGER);
"""

MAX_ROWS = 10_000
MAX_RESULT_BYTES = 64 * 1024 * 1024  # an answer must fit in one message
MAP_ENTRY_BYTES = 8  # what a map entry of a QueryRow costs besides its key and value, at most
TIME_BUDGET_SECONDS = 2.0
MAX_CONTENT_BYTES = 1024 * 1024  # files.content is NULL above this (and for binary files)

# sqlite3 authorizer action codes (sqlite3.SQLITE_* constants).
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
_SAFE_FUNCTIONS = {
    "abs",
    "avg",
    "char",
    "coalesce",
    "count",
    "date",
    "datetime",
    "glob",
    "group_concat",
    "hex",
    "ifnull",
    "iif",
    "instr",
    "julianday",
    "length",
    "like",
    "lower",
    "ltrim",
    "max",
    "min",
    "nullif",
    "printf",
    "format",
    "quote",
    "replace",
    "round",
    "rtrim",
    "strftime",
    "substr",
    "substring",
    "sum",
    "time",
    "total",
    "trim",
    "typeof",
    "unicode",
    "upper",
    "row_number",
    "rank",
    "dense_rank",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "ntile",
    "percent_rank",
    "cume_dist",
    "nth_value",
    "unixepoch",
}


def _iso(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[dict[str, str]]


class SqlEngine:
    def __init__(
        self,
        storage: Storage,
        vc: VersionControl,
        history: History,
        time_budget: float = TIME_BUDGET_SECONDS,
        max_rows: int = MAX_ROWS,
        max_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        self._storage = storage
        self._vc = vc
        self._history = history
        self._time_budget = time_budget
        self._max_rows = max_rows
        self._max_bytes = max_bytes

    def query(self, repo_id: str, sql: str, txn: Txn | None = None) -> QueryResult:
        """Run one read-only SELECT (blocking; call from a worker thread) over the state a read
        transaction sees: `txn`, or a new one."""
        if not sql.strip():
            raise InvalidArgument("sql_query is required")
        if _first_word(sql).upper() == "EXPLAIN":  # read-only, but not a SELECT
            raise InvalidArgument("sql_query: only SELECT statements are allowed, not EXPLAIN")
        db = _empty_database()
        try:
            reads = _columns_read(db, sql)
            if reads is None:
                # It does not compile against the tables, or asks for what is not allowed:
                # refuse it before loading anything (a repository's files and history may take
                # far longer to load than the query to refuse). Run on the empty tables, it
                # fails as it would on the loaded ones.
                self._run(db, sql)
                # (It ran after all, though EXPLAIN refused it: run it on the loaded tables.)
                db.close()
                db = _empty_database()
            self._load(db, repo_id, reads, txn)
            return self._run(db, sql)
        finally:
            db.close()

    def _run(self, db: sqlite3.Connection, sql: str) -> QueryResult:
        """Run `sql` on `db`, its tables loaded, in the sandbox (which it stays in)."""
        # No value the query makes may be longer than an answer can be (a single function
        # call, such as printf('%.999999999c', 'x'), is out of the time budget's reach), nor
        # shorter than the longest value loaded, which sqlite would refuse to read. (The
        # limit also bounds the records sqlite sorts: 16 contents' worth at least.)
        longest_message = db.execute(
            "SELECT ifnull(max(length(CAST(message AS BLOB))), 0) FROM commits"
        ).fetchone()[0]
        db.setlimit(
            sqlite3.SQLITE_LIMIT_LENGTH,
            max(self._max_bytes, 16 * MAX_CONTENT_BYTES, longest_message),
        )
        db.set_authorizer(_authorize)
        deadline = time.monotonic() + self._time_budget
        db.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            cursor = db.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            if len(set(columns)) < len(columns):
                twice = next(c for c in columns if columns.count(c) > 1)
                raise InvalidArgument(
                    f"sql_query: the result has two columns named {twice!r}; "
                    "name them apart with AS"
                )
            rows = self._fetch(cursor, columns)
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise DeadlineExceeded(
                    f"sql_query ran over its time budget of {self._time_budget:g} s"
                ) from None
            raise InvalidArgument(f"sql_query: {exc}") from None
        except (sqlite3.Warning, sqlite3.DatabaseError) as exc:
            raise InvalidArgument(f"sql_query: {exc}") from None
        return QueryResult(columns, rows)

    def _fetch(self, cursor: sqlite3.Cursor, columns: list[str]) -> list[dict[str, str]]:
        """The rows as text (NULLs left out), within the row cap and the answer's size: every
        value is sent as a map entry, its column's name beside it."""
        names = [(c, len(c.encode()) + MAP_ENTRY_BYTES) for c in columns]
        rows: list[dict[str, str]] = []
        size = 0
        for values in cursor:
            if len(rows) == self._max_rows:
                raise ResourceExhausted(
                    f"sql_query returns more than {self._max_rows} rows; add a LIMIT"
                )
            row = {}
            for (name, entry), value in zip(names, values, strict=True):
                text = _text(value)
                if text is not None:
                    row[name] = text
                    size += entry + len(text.encode())
            rows.append(row)
            if size > self._max_bytes:
                raise ResourceExhausted(
                    f"sql_query returns more than {self._max_bytes} bytes; "
                    "select fewer or shorter values"
                )
        return rows

    def _load(
        self,
        db: sqlite3.Connection,
        repo_id: str,
        reads: dict[str, set[str]] | None,
        txn: Txn | None,
    ) -> None:
        """Fill the tables the query reads (all of them when that is not known); the content
        column only when it is read."""

        def wanted(table: str) -> bool:
            return reads is None or table in reads

        vc = self._vc
        reading = (
            contextlib.nullcontext(txn) if txn is not None else self._storage.read(buffers=True)
        )
        with reading as txn:
            if not txn.repos.exists(repo_id):
                raise NotFound(f"repository {repo_id!r} not found")
            branches, current = vc.branch_tips(txn, repo_id)
            db.executemany(
                "INSERT INTO branches VALUES (?, ?, ?)",
                [(name, tip, int(name == current)) for name, tip in branches],
            )
            if wanted("commits") or wanted("changes"):
                commits = self._history.commits(txn, repo_id, [tip for _, tip in branches])
                db.executemany(
                    "INSERT INTO commits VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [_commit_row(commit_id, facts.commit) for commit_id, facts in commits.items()],
                )
                db.executemany(
                    "INSERT INTO changes VALUES (?, ?, ?, ?)",
                    [
                        (commit_id, path, kind, oid.hex())
                        for commit_id, facts in commits.items()
                        for path, kind, oid in facts.changes
                    ],
                )
            if wanted("files"):
                with_content = reads is None or "content" in reads["files"]
                files = self._files(txn, repo_id, with_content)
                db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", files)
            if wanted("tags"):
                db.executemany(
                    "INSERT INTO tags VALUES (?, ?, ?, ?, ?, ?)",
                    [_tag_row(tag) for tag in vc.list_tags(txn, repo_id)],
                )
            if wanted("blobs"):
                db.executemany("INSERT INTO blobs VALUES (?, ?, ?)", vc.blob_rows(txn, repo_id))
        db.commit()

    def _files(self, txn: Txn, repo_id: str, with_content: bool) -> list[tuple[Any, ...]]:
        """The work tree's files, last_modified as `History.file_times` says."""
        vc = self._vc
        work = vc.worktree_entries(txn, repo_id)
        times = self._history.file_times(txn, repo_id, work)
        rows = []
        for path, entry in sorted(work.items()):
            content: str | None = None
            if with_content and entry.size <= MAX_CONTENT_BYTES:
                data = vc.objects.read_kind(txn, repo_id, entry.oid, "blob")
                if b"\0" not in data:
                    try:
                        content = data.decode("utf-8")
                    except UnicodeDecodeError:
                        content = None
            rows.append(
                (
                    path,
                    file_name(path),
                    file_extension(path),
                    entry.size,
                    entry.oid.hex(),
                    f"{entry.mode:o}",
                    _iso(times[path].modified_us // 1_000_000),
                    content,
                )
            )
        return rows


def _commit_row(commit_id: str, commit: Commit) -> tuple[Any, ...]:
    return (
        commit_id,
        commit.author.name,
        commit.author.email,
        commit.message.rstrip("\n"),
        _iso(commit.committer.time),
        commit.parents[0] if commit.parents else None,
        len(commit.parents),
    )


def _empty_database() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        db.executescript(SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def _columns_read(db: sqlite3.Connection, sql: str) -> dict[str, set[str]] | None:
    """table -> columns `sql` reads ("" for a table read without columns, as by count(*)),
    learned by compiling it (EXPLAIN: nothing runs) against the empty tables; None when it
    does not compile (or the sandbox refuses it): a run on the empty tables reports why."""
    reads: dict[str, set[str]] = {}

    def record(action: int, arg1: str | None, arg2: str | None, *rest: Any) -> int:
        if action == sqlite3.SQLITE_READ and arg1:
            reads.setdefault(arg1, set()).add(arg2 or "")
        return _authorize(action, arg1, arg2, *rest)

    db.set_authorizer(record)
    try:
        db.execute("EXPLAIN " + sql).close()
    except (sqlite3.Error, sqlite3.Warning):
        return None
    finally:
        db.set_authorizer(None)
    return reads


# Blanks and comments, then the first word.
_FIRST_WORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*(\w*)", re.DOTALL)


def _first_word(sql: str) -> str:
    match = _FIRST_WORD.match(sql)
    return match.group(1) if match else ""


def _authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    if action in _ALLOWED:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _SAFE_FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _tag_row(info: TagInfo) -> tuple[Any, ...]:
    """name, commit, tag_hash ("" when lightweight), message, tagger, timestamp (annotated)."""
    tag = info.tag
    if tag is None:
        return (info.name, info.commit_id, "", None, None, None)
    tagger = tag.tagger
    return (
        info.name,
        info.commit_id,
        info.target,
        tag.message.rstrip("\n"),
        tagger.identity if tagger else None,
        _iso(tagger.time) if tagger else None,
    )
