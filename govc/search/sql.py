"""Read-only SQL over a repository's data, through the standard library's sqlite3.

Each query runs against a private in-memory database holding the repository's tables (files,
commits, changes, branches, tags, blobs), filled per query from the current work tree and from what
each commit changed, which is derived once per commit and kept (`govc.search.history`).
The sandbox: one statement, an authorizer that allows reading and nothing else (no writes, no
ATTACH, no PRAGMA, no functions outside a safe list), a time budget enforced by a progress
handler (from the start: loading the tables counts), a length limit on every value made, the
functions whose one call could outrun the budget replaced by bounded ones, a row cap, and a
bounded number of queries running at once (per repository and in all).
"""

import contextlib
import contextvars
import datetime
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

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
TIME_BUDGET_SECONDS = 2.0  # read when an engine is made (tests may set it first)
# Queries running at once, per repository and in all; a query waits this long for its turn and
# is then refused (RESOURCE_EXHAUSTED), rather than queue every other client behind it.
MAX_QUERIES_PER_REPOSITORY = 2
MAX_QUERIES = 3
SLOT_WAIT_SECONDS = 0.1
# A call of a function whose cost grows with the product of its arguments' lengths (trim's
# character set, instr and replace outside plain text) is refused above this product.
MAX_WORK_PER_CALL = 50_000_000
PROGRESS_STEPS = 1000  # sqlite's steps between two looks at the clock
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


_shared_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "govc_sql_deadline", default=None
)


@contextlib.contextmanager
def sql_deadline(deadline: float | None) -> Iterator[None]:
    """Queries run in this block (in this thread) end by `deadline` (time.monotonic()) at the
    latest: a batch's queries share one time budget."""
    token = _shared_deadline.set(deadline)
    try:
        yield
    finally:
        _shared_deadline.reset(token)


def sql_time_budget() -> float:
    return TIME_BUDGET_SECONDS


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
        time_budget: float | None = None,
        max_rows: int = MAX_ROWS,
        max_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        self._storage = storage
        self._vc = vc
        self._history = history
        self._time_budget = TIME_BUDGET_SECONDS if time_budget is None else time_budget
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._turns = threading.Condition()
        self._running: dict[str, int] = {}  # repository -> its queries running

    @contextlib.contextmanager
    def _turn(self, repo_id: str, deadline: float) -> Iterator[None]:
        """A place among the queries running at once, waited for a little at most."""
        until = min(deadline, time.monotonic() + SLOT_WAIT_SECONDS)
        with self._turns:
            while (
                self._running.get(repo_id, 0) >= MAX_QUERIES_PER_REPOSITORY
                or sum(self._running.values()) >= MAX_QUERIES
            ):
                left = until - time.monotonic()
                if left <= 0:
                    mine = self._running.get(repo_id, 0) >= MAX_QUERIES_PER_REPOSITORY
                    raise ResourceExhausted(
                        f"sql_query: {MAX_QUERIES_PER_REPOSITORY} queries on repository "
                        f"{repo_id!r} are running already; retry later"
                        if mine
                        else f"sql_query: {MAX_QUERIES} queries are running already; retry later"
                    )
                self._turns.wait(left)
            self._running[repo_id] = self._running.get(repo_id, 0) + 1
        try:
            yield
        finally:
            with self._turns:
                self._running[repo_id] -= 1
                if not self._running[repo_id]:
                    del self._running[repo_id]
                self._turns.notify_all()

    def query(self, repo_id: str, sql: str, txn: Txn | None = None) -> QueryResult:
        """Run one read-only SELECT (blocking; call from a worker thread) over the state a read
        transaction sees: `txn`, or a new one."""
        if not sql.strip():
            raise InvalidArgument("sql_query is required")
        if _first_word(sql).upper() == "EXPLAIN":  # read-only, but not a SELECT
            raise InvalidArgument("sql_query: only SELECT statements are allowed, not EXPLAIN")
        # The budget starts now: waiting for a turn and loading the tables count against it.
        deadline = time.monotonic() + self._time_budget
        shared = _shared_deadline.get()
        if shared is not None:
            deadline = min(deadline, shared)
        with self._turn(repo_id, deadline):
            box = _Sandbox(deadline, self._time_budget)
            db = _empty_database()
            try:
                box.install(db, sql)
                reads = _columns_read(db, sql)
                if reads is None:
                    # It does not compile against the tables, or asks for what is not allowed:
                    # refuse it before loading anything (a repository's files and history may
                    # take far longer to load than the query to refuse). Run on the empty
                    # tables, it fails as it would on the loaded ones.
                    self._run(db, sql, box)
                    # (It ran after all, though EXPLAIN refused it: run it on the loaded tables.)
                    db.close()
                    db = _empty_database()
                    box.install(db, sql)
                self._load(db, repo_id, reads, txn, box)
                return self._run(db, sql, box)
            finally:
                db.close()
                box.close()

    def _run(self, db: sqlite3.Connection, sql: str, box: "_Sandbox") -> QueryResult:
        """Run `sql` on `db`, its tables loaded, in the sandbox (which it stays in)."""
        # No value the query makes may be longer than an answer can be (a single function
        # call, such as printf('%.999999999c', 'x'), is out of the time budget's reach), nor
        # shorter than the longest value loaded, which sqlite would refuse to read. (The
        # limit also bounds the records sqlite sorts: 16 contents' worth at least.)
        longest_message = db.execute(
            "SELECT ifnull(max(length(CAST(message AS BLOB))), 0) FROM commits"
        ).fetchone()[0]
        box.set_length_limit(db, max(self._max_bytes, 16 * MAX_CONTENT_BYTES, longest_message))
        db.set_authorizer(_authorize)
        db.set_progress_handler(box.expired, PROGRESS_STEPS)
        box.check()
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
        except (sqlite3.Warning, sqlite3.DatabaseError) as exc:
            if box.error is not None:  # a bounded function refused its arguments
                raise box.error from None
            if box.late or "interrupted" in str(exc):
                raise box.over_time() from None
            if isinstance(exc, sqlite3.DataError) and "too big" in str(exc):
                raise ResourceExhausted(
                    f"sql_query makes a value longer than {box.limit} bytes (sqlite's length limit)"
                ) from None
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
        box: "_Sandbox",
    ) -> None:
        """Fill the tables the query reads (all of them when that is not known); the content
        column only when it is read. Within the query's time budget."""

        def wanted(table: str) -> bool:
            return reads is None or table in reads

        vc = self._vc
        reading = (
            contextlib.nullcontext(txn) if txn is not None else self._storage.read(buffers=True)
        )
        with reading as txn:
            if not txn.repos.exists(repo_id):
                raise NotFound(f"repository {repo_id!r} not found")
            box.check()
            branches, current = vc.branch_tips(txn, repo_id)
            db.executemany(
                "INSERT INTO branches VALUES (?, ?, ?)",
                [(name, tip, int(name == current)) for name, tip in branches],
            )
            if wanted("commits") or wanted("changes"):
                commits = self._history.commits(txn, repo_id, [tip for _, tip in branches])
                box.check()
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
                box.check()
                files = self._files(txn, repo_id, with_content, box)
                db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", files)
            if wanted("tags"):
                box.check()
                db.executemany(
                    "INSERT INTO tags VALUES (?, ?, ?, ?, ?, ?)",
                    [_tag_row(tag) for tag in vc.list_tags(txn, repo_id)],
                )
            if wanted("blobs"):
                box.check()
                db.executemany("INSERT INTO blobs VALUES (?, ?, ?)", vc.blob_rows(txn, repo_id))
        db.commit()
        box.check()

    def _files(
        self, txn: Txn, repo_id: str, with_content: bool, box: "_Sandbox"
    ) -> list[tuple[Any, ...]]:
        """The work tree's files, last_modified as `History.file_times` says."""
        vc = self._vc
        work = vc.worktree_entries(txn, repo_id)
        times = self._history.file_times(txn, repo_id, work)
        rows = []
        for count, (path, entry) in enumerate(sorted(work.items())):
            if count % 64 == 0:
                box.check()
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


# printf's conversions whose precision caps what they print rather than pads it.
_CAPPING = frozenset("sSzqQw")
_PRINTF_FLAGS = frozenset("-+ 0#!,")


def _int_arg(value: Any) -> int:
    """What sqlite's printf takes from an argument for `*` (sqlite3_value_int64, roughly)."""
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        return int(max(min(value, 2.0**63 - 1), -(2.0**63))) if value == value else 0
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        match = re.match(r"\s*([+-]?\d+)", value)
        return int(match.group(1)) if match else 0
    return 0


def _int32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


def _printf_number(fmt: str, i: int, args: tuple[Any, ...], arg: int) -> tuple[int, int, int]:
    """A printf width or precision at fmt[i]: `*` (the next argument) or digits, as sqlite
    reads them; (its value, the index after it, the next argument's index)."""
    if i < len(fmt) and fmt[i] == "*":
        value = abs(_int32(_int_arg(args[arg]) if arg < len(args) else 0))
        return value, i + 1, arg + 1
    start = i
    while i < len(fmt) and fmt[i].isdigit() and fmt[i].isascii():
        i += 1
    return (int(fmt[start:i] or "0") % 2**32) & 0x7FFFFFFF, i, arg


def _printf_least(fmt: str, args: tuple[Any, ...]) -> int:
    """How many characters printf(fmt, *args) prints at least, from its widths and padding
    precisions (sqlite's printf repeats %c one character at a time, which no progress handler
    interrupts: `printf('%.999999999c', 'x')` runs for seconds only to give NULL)."""
    least = 0
    arg = 0
    i = fmt.find("%")
    while i >= 0:
        i += 1
        while i < len(fmt) and fmt[i] in _PRINTF_FLAGS:
            i += 1
        width, i, arg = _printf_number(fmt, i, args, arg)
        precision = 0
        if i < len(fmt) and fmt[i] == ".":
            precision, i, arg = _printf_number(fmt, i + 1, args, arg)
        while i < len(fmt) and fmt[i] == "l":
            i += 1
        conversion = fmt[i] if i < len(fmt) else ""
        if conversion != "%":
            arg += 1
        least += width + (0 if conversion in _CAPPING else precision)
        i = fmt.find("%", i + 1)
    return least


_WORDS = re.compile(r"\w+")
_LINEAR = [
    ("upper", 1),
    ("lower", 1),
    ("hex", 1),
    ("quote", 1),
    ("length", 1),
    ("unicode", 1),
    ("substr", 2),
    ("substr", 3),
    ("substring", 2),
    ("substring", 3),
    ("like", 2),
    ("like", 3),
    ("glob", 2),
    ("trim", 1),
    ("ltrim", 1),
    ("rtrim", 1),
]
# printf or format called with a literal format string (the ' quotes doubled inside).
_LITERAL_PRINTF = re.compile(r"(?<!\w)(?:printf|format)\s*\(\s*'((?:[^']|'')*)'\s*[,)]", re.I)
CHEAP_PRINTF_CHARS = 10_000  # a literal format printing at most this much runs as sqlite's


def _cheap_printf(sql: str) -> bool:
    """Whether every printf and format the statement names is a call with a literal format
    that prints little (no `*`): those may stay sqlite's own, which is several times faster
    than the bounded one; the progress handler comes between two calls."""
    words = [w for w in _WORDS.findall(sql.lower()) if w in ("printf", "format")]
    calls = [m.group(1).replace("''", "'") for m in _LITERAL_PRINTF.finditer(sql)]
    return len(calls) == len(words) and all(
        "*" not in fmt and _printf_least(fmt, ()) <= CHEAP_PRINTF_CHARS for fmt in calls
    )


def _plain_text(value: Any) -> Any:
    """An integer as the text sqlite makes of it (the same digits); anything else as is."""
    return str(value) if isinstance(value, int) else value


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes) else 24


@dataclass
class _Sandbox:
    """One query's budget: its deadline, its length limit, and the bounded functions that
    replace sqlite's own where one call could run for long (no progress handler runs inside
    a function call)."""

    deadline: float
    budget: float
    limit: int = MAX_RESULT_BYTES
    error: Exception | None = None  # why a bounded function refused to run
    late: bool = False
    _plain: sqlite3.Connection | None = field(default=None, repr=False)

    def expired(self) -> int:
        if time.monotonic() > self.deadline:
            self.late = True
        return int(self.late)

    def over_time(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"sql_query ran over its time budget of {self.budget:g} s")

    def check(self) -> None:
        if self.expired():
            raise self.over_time()

    def set_length_limit(self, db: sqlite3.Connection, limit: int) -> None:
        self.limit = limit
        db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)
        if self._plain is not None:
            self._plain.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)

    def install(self, db: sqlite3.Connection, sql: str) -> None:
        """The bounded functions in place of sqlite's, those `sql` may call (a function is
        called by its name, which the statement then holds: the others keep sqlite's speed)."""
        named = set(_WORDS.findall(sql.lower()))
        if _cheap_printf(sql):
            named -= {"printf", "format"}
        functions: list[tuple[str, int, Callable[..., Any]]] = [
            ("printf", -1, self._printf),
            ("format", -1, self._printf),
            ("instr", 2, self._instr),
            ("replace", 3, self._replace),
            ("trim", 2, self._trimmer("trim")),
            ("ltrim", 2, self._trimmer("ltrim")),
            ("rtrim", 2, self._trimmer("rtrim")),
        ]
        # Linear in their arguments, but a statement can call them hundreds of times on one
        # row, on values as long as the length limit, between two looks of the progress
        # handler: each call looks at the clock first.
        functions += [(name, args, self._timed(name)) for name, args in _LINEAR]
        for name, args, fn in functions:
            if name in named:
                db.create_function(name, args, fn, deterministic=True)

    def _timed(self, name: str) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self._begin()
            return self._builtin(name, *args)

        return call

    def close(self) -> None:
        if self._plain is not None:
            self._plain.close()

    def _builtin(self, name: str, *args: Any) -> Any:
        """sqlite's own function, on arguments checked to be cheap for it."""
        if self._plain is None:
            self._plain = sqlite3.connect(":memory:", check_same_thread=False)
            self._plain.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.limit)
        marks = ", ".join("?" * len(args))
        try:
            return self._plain.execute(f"SELECT {name}({marks})", args).fetchone()[0]
        except sqlite3.DataError as exc:
            if "too big" in str(exc):
                self._refuse(f"{name} makes a value longer than {self.limit} bytes")
            raise

    def _begin(self) -> None:
        if self.expired():
            raise sqlite3.OperationalError("interrupted")

    def _refuse(self, message: str) -> NoReturn:
        self.error = ResourceExhausted(f"sql_query: {message}")
        raise self.error

    def _printf(self, fmt: Any = None, *args: Any) -> Any:
        self._begin()
        if isinstance(fmt, str) and _printf_least(fmt, args) > self.limit:
            return None  # what sqlite gives for a value over its length limit
        return self._builtin("printf", fmt, *args)

    def _instr(self, haystack: Any, needle: Any) -> Any:
        self._begin()
        if haystack is None or needle is None:
            return None
        if not (isinstance(haystack, bytes) and isinstance(needle, bytes)):
            haystack, needle = _plain_text(haystack), _plain_text(needle)
        if isinstance(haystack, str) and isinstance(needle, str):
            return haystack.find(needle) + 1
        if isinstance(haystack, bytes) and isinstance(needle, bytes):
            return haystack.find(needle) + 1
        if _length(haystack) * _length(needle) > MAX_WORK_PER_CALL:
            self._refuse("instr's arguments are too long to mix text, numbers and blobs")
        return self._builtin("instr", haystack, needle)

    def _replace(self, text: Any, old: Any, new: Any) -> Any:
        self._begin()
        if text is None or old is None or new is None:
            return None
        text, old, new = _plain_text(text), _plain_text(old), _plain_text(new)
        if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
            if not old:
                return text
            made = len(text) + text.count(old) * (len(new) - len(old))
            if made > self.limit:
                self._refuse(f"replace makes a value longer than {self.limit} bytes")
            return text.replace(old, new)
        if _length(text) * (_length(old) + 1) > MAX_WORK_PER_CALL:
            self._refuse("replace's arguments are too long to mix text, numbers and blobs")
        return self._builtin("replace", text, old, new)

    def _trimmer(self, name: str) -> Callable[[Any, Any], Any]:
        def trim(text: Any, characters: Any) -> Any:
            self._begin()
            if _length(text) * _length(characters) > MAX_WORK_PER_CALL:
                self._refuse(
                    f"{name} would compare each of {_length(text)} characters with each of "
                    f"{_length(characters)}; trim fewer characters"
                )
            return self._builtin(name, text, characters)

        return trim
