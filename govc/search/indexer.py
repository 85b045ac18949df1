"""Keeping the search index in step with storage, off the write path.

Every write that can change a repository's files calls `touch(repo, paths)` once it is durable:
file writes, removes and moves name their paths; commits, checkouts, merges, batches and
repository deletion say "anything". That records the paths, bumps the repository's wanted
version and wakes the indexer thread, and costs the writer nothing else. The indexer takes every
touched repository at once. For named paths (HEAD unchanged) it re-reads just the files at or
below them; otherwise it compares all current files (path -> blob id) with what the index
holds. Either way it deletes and adds only the documents that differ and refreshes the files'
times (last change, last author: kept beside the index, see `fulltext`). It commits when a
search is waiting, or at most every COMMIT_INTERVAL under a stream of writes (a tantivy commit
syncs files), and then publishes the versions it reached. A search first waits (bounded) until
the index has reached the version its repository had when the search arrived, so a client
always sees its own acknowledged writes.

The index is derived data. Beside it, `state.json` records a fingerprint of every indexed
repository's state (HEAD and the XOR of a digest per work-tree entry, so a few changed files
update it cheaply). After start-up, while the server already serves, `_catch_up` fingerprints
every repository and queues those whose fingerprint differs (or is missing), so writes the
index missed (a crash, an offline import) are caught up; a search for a repository it has not
reached yet compares that repository first. An index that is missing, unreadable or of another
format is rebuilt from storage. `catch_up_progress` tells how far that is until every queued
repository is indexed (not only compared).

Both background threads are supervised: they survive their own errors. When the indexer cannot
work (too many open files, no space left, a tantivy writer killed by such an error: anything
that is not one repository's fault), nothing is given up: what was uncommitted is rolled back
(a rollback that fails costs the writer, and a new one is opened) and queued again, and the
thread retries with exponential backoff (BACKOFF_MIN .. BACKOFF_MAX). Meanwhile `trouble` says
why: health reports it and searches that would wait for the index answer UNAVAILABLE with it.
The first commit that works again (or an idle indexer with a writer) clears it.

Indexing a repository the index does not hold yet reads all its files: seconds for a big one.
So the indexer thread takes such repositories one at a time, each batch with the repositories
whose documents it keeps (cheap to update), and a repository a search waits for comes first:
a search never waits behind the whole catch-up, only behind the repository in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import tantivy

from govc.core.cache import LruCache
from govc.core.registry import Registry
from govc.core.versioncontrol import VersionControl
from govc.errors import GovcError
from govc.search import fulltext
from govc.search.fulltext import FileDoc
from govc.search.history import FileTime, History
from govc.storage import Storage, Txn
from govc.storage.tables import Entry

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
DEFAULT_WAIT_SECONDS = 10.0  # how long a search waits for the index by default
WRITER_HEAP_BYTES = 128 * 1024 * 1024
READ_CHUNK = 256  # files read per storage transaction while indexing
SCAN_CHUNK = 64  # repositories fingerprinted per storage transaction by `_catch_up`
REPOSITORIES_KEPT = 256  # repositories whose documents and file times stay in memory
# With nobody waiting, applied documents are committed at most this often (a tantivy commit
# syncs files: under a stream of writes, one per write would cost more than the writes).
COMMIT_INTERVAL = 0.25
RETRIES = 1  # a repository whose indexing failed is tried again this many times, then given up
UNCOMMITTED_MAX = REPOSITORIES_KEPT // 2  # repositories with uncommitted changes, at most
# A background thread that cannot work waits this long before it retries, doubling each time.
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
REASON_MAX_CHARS = 300  # of an error's text, in `trouble`
# tantivy reports I/O errors as ValueError; these say the process or the disk is in trouble
# (or that the writer was killed by such an error), not the document.
_TANTIVY_TROUBLE = re.compile(r"IoError|Os \{ code|TooManyOpenFiles|Lockfile|killed|No space")


class CatchUpProgress(NamedTuple):
    """How far catching up with storage is: repositories compared with the index, of how many
    (while `_catch_up` runs), and of those queued since all were last indexed, how many are."""

    compared: int
    to_compare: int
    indexed: int
    to_index: int
    comparing: bool  # `_catch_up` is still running
    rebuilding: bool  # the index was created empty at start (missing, unreadable, old format)


class _RepositoryFailed(Exception):
    """Indexing one repository failed (the cause is chained)."""

    def __init__(self, repo_id: str) -> None:
        super().__init__(f"indexing repository {repo_id!r} failed")
        self.repo_id = repo_id


class _Trouble(Exception):
    """The indexer cannot work (the cause, if any, is chained): `_run` backs off and retries."""


def _cannot_work(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the process, the disk or the writer is in trouble
    (too many open files, no space left, a writer killed by such an error: tantivy's I/O errors
    are ValueErrors, its panics BaseExceptions) rather than that a repository's documents cannot
    be indexed."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (OSError, _Trouble)) or not isinstance(cause, Exception):
            return True
        if isinstance(cause, ValueError) and _TANTIVY_TROUBLE.search(str(cause)):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _reason(exc: BaseException) -> str:
    """`exc` and its cause in a line, short enough for health and an error message."""
    if isinstance(exc, (_RepositoryFailed, _Trouble)) and exc.__cause__ is not None:
        text = f"{exc}: {_reason(exc.__cause__)}"
    elif isinstance(exc, OSError):
        text = str(exc) or type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "…"


class Indexer:
    def __init__(
        self,
        storage: Storage,
        repositories: Registry,
        vc: VersionControl,
        history: History,
        directory: str,
    ) -> None:
        self._storage = storage
        self._repositories = repositories
        self._vc = vc
        self._history = history
        self._directory = directory
        self._cond = threading.Condition()
        self._wanted: dict[str, int] = {}  # repo -> version the index must reach
        self._indexed: dict[str, int] = {}  # repo -> version the index has reached
        self._dirty: dict[str, int] = {}  # repos to index, with the version they are at
        # ...and the paths that changed in each (None: anything may have)
        self._changed: dict[str, set[str] | None] = {}
        # repo -> path -> what the index holds (the indexer thread's; reloaded from the index
        # when dropped).
        self._docs: LruCache[str, dict[str, FileDoc]] = LruCache(REPOSITORIES_KEPT)
        # repo -> path -> FileTime, beside the index (derived again from storage when dropped);
        # read by searches in worker threads.
        self._times: LruCache[str, dict[str, FileTime]] = LruCache(REPOSITORIES_KEPT)
        # repo -> the HEAD commit ("" when unborn) the documents and times were derived at
        self._heads: LruCache[str, str] = LruCache(REPOSITORIES_KEPT)
        # repo -> path -> digest of its work-tree entry (the parts of the fingerprint)
        self._digests: LruCache[str, dict[str, int]] = LruCache(REPOSITORIES_KEPT)
        self._times_lock = threading.Lock()
        self._fingerprints: dict[str, str] = {}
        # Repositories compared with the index (or touched) since start; others (not reached
        # by `_catch_up` yet, or one `govc import` wrote beside the running server) are compared
        # on their first search.
        self._known: set[str] = set()
        # The indexer thread's: repositories with changes in the writer, not yet committed;
        # those committed in the middle of the current batch; failed attempts per repository
        # since its last success.
        self._uncommitted: set[str] = set()
        self._committed_early: set[str] = set()
        self._failures: dict[str, int] = {}
        self._stale: set[str] = set()  # found out of step with storage since start
        # Repositories queued because the index was found out of step with them -> the version
        # that brings it up to date, until published; and how many were queued since this was
        # last empty (under `_cond`).
        self._behind: dict[str, int] = {}
        self._behind_queued = 0
        self._rebuilding = False  # the index was created empty at start
        # Searches waiting per repository (under `_cond`): those repositories go first.
        self._awaited: dict[str, int] = {}
        #: Why the indexer thread stopped, if it did (nothing indexes any more).
        self.failure: BaseException | None = None
        # Why the indexer thread, and the catch-up, cannot work now (they retry): see `trouble`.
        self._index_trouble: str | None = None
        self._catch_up_trouble: str | None = None
        # The indexer thread's: repository -> version applied in the writer, not yet published.
        self._applied: dict[str, int] = {}
        self._scan_total = 0  # repositories `_catch_up` compares, how many it has done...
        self._scanned = 0
        self._scan_done = threading.Event()  # ...and whether it has finished
        self._scan_done.set()  # (none running)
        self._stopping = False
        self._waiting = 0  # searches waiting for the index
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._published: asyncio.Event | None = None
        #: Batches committed (tests, metrics).
        self.batches = 0
        self.index = self._open()
        # Only the indexer thread reloads the reader: after each commit, before it publishes
        # the versions that commit holds (`_commit_writer`). tantivy's default reader also
        # reloads itself from a thread watching meta.json; such a reload may read an older
        # meta.json and store its searcher after ours, and a search would then see an index
        # older than the version it was told is indexed.
        self.index.config_reader(reload_policy="Manual")
        # None after a rollback failed, until the indexer thread opens a new one.
        self._writer: tantivy.IndexWriter | None = self._open_writer()

    @property
    def trouble(self) -> str | None:
        """Why indexing (or catching up with storage) cannot work at the moment, or None. It is
        retried with backoff; health reports this and waiting searches answer with it."""
        troubles = [t for t in (self._index_trouble, self._catch_up_trouble) if t is not None]
        return "; ".join(troubles) if troubles else None

    # ---- lifetime ----

    def _open_writer(self) -> tantivy.IndexWriter:
        return self.index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=2)

    def _open(self) -> tantivy.Index:
        state_path = os.path.join(self._directory, STATE_FILE)
        state: dict[str, Any] = {}
        try:
            with open(state_path) as f:
                state = json.load(f)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("search index state %s unreadable (%s)", state_path, exc)
        if state.get("format") == fulltext.FORMAT:
            index, reused = fulltext.open_index(self._directory, reuse=True)
            if reused:
                self._fingerprints = dict(state.get("repositories", {}))
            return index
        if os.path.isdir(self._directory) and os.listdir(self._directory):
            log.warning("search index in %s is not current; rebuilding it", self._directory)
        else:
            log.info("no search index in %s; building it from storage", self._directory)
        index, _ = fulltext.open_index(self._directory, reuse=False)
        self._rebuilding = True
        return index

    def _catch_up(self) -> None:
        """(Thread started by `start`.) Queue every repository whose state differs from the
        index, and drop the documents of those deleted meanwhile. It reads every work tree, so
        it runs while the server serves; `close` stops it. When that fails it starts again
        (repositories compared meanwhile are skipped) after a backoff, until it has finished;
        searches still compare each repository they ask for."""
        delay = BACKOFF_MIN
        try:
            while not self._stopping:
                try:
                    self._compare_all()
                    self._catch_up_trouble = None
                    return
                except Exception as exc:
                    log.exception("search index: comparing repositories with storage failed")
                    self._catch_up_trouble = f"comparing repositories failed: {_reason(exc)}"
                if not self._back_off(delay):
                    return
                delay = min(delay * 2, BACKOFF_MAX)
        finally:
            self._catch_up_trouble = None
            self._scan_done.set()

    def _compare_all(self) -> None:
        with self._storage.read() as txn:
            ids = self._repositories.ids(txn)
        self._scan_total = len(ids)
        self._scanned = 0
        gone = set(self._fingerprints).difference(ids)
        for start in range(0, len(ids), SCAN_CHUNK):
            if self._stopping:
                return
            with self._storage.read() as txn:
                for repo_id in ids[start : start + SCAN_CHUNK]:
                    if repo_id not in self._known:
                        self._compare_in(txn, repo_id)
                    self._scanned += 1
        for repo_id in gone:
            self._touch(repo_id, None, behind=True)
        if self._stale or gone:
            log.info(
                "search index: catching up %d repositories, dropping %d",
                len(self._stale),
                len(gone),
            )

    def _back_off(self, delay: float) -> bool:
        """Wait `delay` seconds, or until `close`; False when closing."""
        with self._cond:
            return not self._cond.wait_for(lambda: self._stopping, delay)

    def catch_up_progress(self) -> CatchUpProgress | None:
        """How far catching up with storage is; None once every repository has been compared
        and every one found behind is indexed (a search may find another behind later, as
        after an import beside the running server: then it is not None again until that is
        indexed)."""
        with self._cond:
            comparing = not self._scan_done.is_set()
            if not comparing and not self._behind:
                return None
            return CatchUpProgress(
                compared=self._scanned,
                to_compare=self._scan_total,
                indexed=self._behind_queued - len(self._behind),
                to_index=self._behind_queued,
                comparing=comparing,
                rebuilding=self._rebuilding,
            )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start indexing, and catching up with storage in the background; searches on `loop`
        wait for it."""
        self._loop = loop
        self._published = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="govc-indexer", daemon=True)
        self._thread.start()
        self._scan_done.clear()
        threading.Thread(target=self._catch_up, name="govc-index-catch-up", daemon=True).start()

    def close(self) -> None:
        """Stop `_catch_up`, finish the batch in progress and stop. Anything not indexed yet is
        caught up at the next start."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._scan_done.wait()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._drop_writer()

    # ---- the write side's view ----

    def touch(self, repo_id: str, paths: Iterable[str] | None = None) -> None:
        """`repo_id`'s files changed (call after the write is durable): the work-tree files at
        or below `paths` only, or (None) anything, HEAD included."""
        self._touch(repo_id, paths, behind=False)

    def _touch(self, repo_id: str, paths: Iterable[str] | None, behind: bool) -> None:
        """`touch`; `behind`: the index was found out of step with storage (catching up)."""
        with self._cond:
            version = self._wanted.get(repo_id, 0) + 1
            self._wanted[repo_id] = version
            # Known only once its wanted version is up: a search that finds it known waits.
            self._known.add(repo_id)
            self._dirty[repo_id] = version
            pending = self._changed.get(repo_id, set())
            if paths is None or pending is None:
                self._changed[repo_id] = None
            else:
                pending.update(paths)
                self._changed[repo_id] = pending
            if behind:
                if not self._behind:
                    self._behind_queued = 0
                if repo_id not in self._behind:
                    self._behind_queued += 1
                self._behind[repo_id] = version
            self._cond.notify()

    async def caught_up(self, repo_id: str, timeout: float) -> bool:
        """Wait until the index reflects every write to `repo_id` acknowledged before this call;
        False when `timeout` passed first, or at once while the indexer cannot work (`trouble`,
        `failure`)."""
        if repo_id not in self._known:
            await asyncio.to_thread(self._compare, repo_id)
        target = self._wanted.get(repo_id, 0)
        if self._indexed.get(repo_id, 0) >= target:
            return True
        if self._index_trouble is not None or self.failure is not None:
            return False
        assert self._loop is not None and self._published is not None, "indexer not started"
        deadline = self._loop.time() + timeout
        # Somebody waits: commit what is applied without delay, and take this repository
        # before any other that is not cheap to index.
        with self._cond:
            self._waiting += 1
            self._awaited[repo_id] = self._awaited.get(repo_id, 0) + 1
            self._cond.notify()
        try:
            while self._indexed.get(repo_id, 0) < target:
                remaining = deadline - self._loop.time()
                if remaining <= 0 or self.failure is not None or self._index_trouble is not None:
                    return False
                try:
                    await asyncio.wait_for(self._published.wait(), remaining)
                except TimeoutError:
                    return False
            return True
        finally:
            with self._cond:
                self._waiting -= 1
                if self._awaited[repo_id] > 1:
                    self._awaited[repo_id] -= 1
                else:
                    del self._awaited[repo_id]

    def _compare(self, repo_id: str) -> None:
        with self._storage.read() as txn:
            self._compare_in(txn, repo_id)

    def _compare_in(self, txn: Txn, repo_id: str) -> None:
        """Queue `repo_id` if storage holds a state of it the index has not seen."""
        exists = self._repositories.exists(txn, repo_id)
        fingerprint = self._fingerprint(txn, repo_id) if exists else None
        if fingerprint != self._fingerprints.get(repo_id):
            self._stale.add(repo_id)
            self._touch(repo_id, None, behind=True)
        elif exists:  # (an id nobody created is compared again when asked: that costs nothing)
            self._known.add(repo_id)

    def _publish(self) -> None:  # on the loop
        assert self._published is not None
        published, self._published = self._published, asyncio.Event()
        published.set()

    # ---- the indexer thread ----

    def _run(self) -> None:
        """The indexer thread: `_index`, supervised. Whatever it raises (tantivy's panics are
        BaseExceptions) is survived: what was uncommitted is rolled back and queued again,
        `trouble` says why, waiting searches are told at once, and after a backoff (doubling
        while the failures go on) indexing resumes with a writer, a new one if need be."""
        delay = BACKOFF_MIN
        while True:
            try:
                if self._writer is None:
                    self._writer = self._open_writer()
                self._index()
                return
            except (KeyboardInterrupt, SystemExit) as exc:
                # Nothing indexes any more: health says so, and waiting searches give up now
                # rather than at their time limit.
                log.critical("search indexer stopped", exc_info=True)
                self.failure = exc
                self._wake_searches()
                return
            except BaseException as exc:
                # Failing again before anything worked: wait longer.
                delay = BACKOFF_MIN if self._index_trouble is None else min(delay * 2, BACKOFF_MAX)
                self._index_trouble = f"indexing failed: {_reason(exc)}"
                log.error(
                    "search indexing cannot work (%s); retrying in %g s",
                    self._index_trouble,
                    delay,
                    exc_info=not isinstance(exc, _Trouble),
                )
                self._requeue_uncommitted()
                self._wake_searches()
            if not self._back_off(delay):
                return

    def _wake_searches(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._publish)

    def _requeue_uncommitted(self) -> None:
        """Roll back what the writer holds, forget what we believed the index holds for those
        repositories (re-read next time) and queue them again, compared whole. Never raises."""
        try:
            self._roll_back()
            self._uncommitted.clear()
            self._committed_early.clear()
            applied, self._applied = self._applied, {}
            for repo_id in applied:
                self._forget(repo_id)
            with self._cond:
                for repo_id, version in applied.items():
                    self._dirty[repo_id] = max(version, self._dirty.get(repo_id, 0))
                    self._changed[repo_id] = None
        except Exception:  # (a bug) the next start catches up what this leaves out
            log.exception("search index: requeueing uncommitted repositories failed")

    def _roll_back(self) -> None:
        """Drop the writer's uncommitted changes. Never raises: a writer whose rollback fails
        is dropped (tantivy's rollback builds a new writer, and when that fails the old one
        holds no lock and panics at every later rollback); `_run` opens a new one."""
        if self._writer is None:
            return
        try:
            self._writer.rollback()
        except BaseException as exc:  # (tantivy panics: BaseException)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            log.warning("search index: rollback failed (%s); the writer is dropped", _reason(exc))
            self._drop_writer()

    def _live_writer(self) -> tantivy.IndexWriter:
        if self._writer is None:  # (`_run` opens one before indexing)
            raise _Trouble("no index writer")
        return self._writer

    def _drop_writer(self) -> None:
        """Close the writer (its lock is released), if there is one. Never raises."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.wait_merging_threads()  # consumes the writer even when it fails
        except BaseException as exc:  # (tantivy panics: BaseException)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            log.warning("search index: closing the writer failed (%s)", _reason(exc))

    def _index(self) -> None:
        applied = self._applied  # repository -> version in the writer, not yet committed
        uncommitted = 0  # documents added or deleted since the last commit
        last_commit = 0.0
        while True:
            with self._cond:
                while not (self._stopping or self._dirty):
                    if not applied:
                        # Idle, with a writer: whatever kept the indexer from working is gone.
                        self._index_trouble = None
                        self._cond.wait()
                        continue
                    due = last_commit + COMMIT_INTERVAL - time.monotonic()
                    if self._waiting or due <= 0 or not uncommitted:
                        break
                    self._cond.wait(due)
                stopping = self._stopping
                batch, changed = ({}, {}) if stopping else self._take()
            started = time.perf_counter()
            self._committed_early.clear()
            try:
                try:
                    if batch:
                        uncommitted += self._apply(
                            {repo_id: changed.get(repo_id) for repo_id in batch}
                        )
                finally:  # (also when it failed: rolled back with the rest, or queued again)
                    for repo_id, version in batch.items():
                        applied[repo_id] = max(version, applied.get(repo_id, 0))
                commit_now = (
                    stopping
                    or not uncommitted
                    or self._waiting > 0
                    or self._index_trouble is not None  # prove it works again
                    or time.monotonic() - last_commit >= COMMIT_INTERVAL
                )
                if applied and commit_now:
                    self._commit(uncommitted)
            except Exception as failed:
                if not isinstance(failed, _RepositoryFailed) or _cannot_work(failed):
                    # Nobody's fault: the process or the disk (or the writer) is in trouble.
                    # `_run` rolls back, queues everything again and retries after a backoff.
                    raise
                # The rollback dropped every uncommitted change, of this batch and of earlier
                # ones: forget what we believed the index holds for those repositories (re-read
                # next time) and apply them again, from a whole comparison, while searches
                # wait. Never leave searches waiting on documents that cannot be applied: a
                # repository that failed is given up after RETRIES: published, and compared
                # with storage again by its next search. Those committed before the failure
                # are published as they are.
                log.exception("search indexing failed for %d repositories", len(applied))
                self._roll_back()
                if self._writer is None:
                    raise _Trouble("the writer could not roll back") from failed
                self._uncommitted.clear()
                uncommitted = 0
                culprit = failed.repo_id
                retry = {}
                for repo_id, version in applied.items():
                    if repo_id in self._committed_early:
                        continue
                    self._forget(repo_id)
                    if repo_id == culprit:
                        self._failures[repo_id] = self._failures.get(repo_id, 0) + 1
                    if self._failures.get(repo_id, 0) <= RETRIES:
                        retry[repo_id] = version
                    else:
                        del self._failures[repo_id]
                        self._known.discard(repo_id)
                with self._cond:
                    for repo_id, version in retry.items():
                        self._dirty[repo_id] = max(version, self._dirty.get(repo_id, 0))
                        self._changed[repo_id] = None
                for repo_id in retry:
                    del applied[repo_id]
                commit_now = True
            if applied and commit_now:
                log.debug(
                    "committed %d document changes of %d repositories (%.3f s)",
                    uncommitted,
                    len(applied),
                    time.perf_counter() - started,
                )
                self._publish_versions(applied)
                for repo_id in applied:
                    self._failures.pop(repo_id, None)
                applied.clear()
                uncommitted, last_commit = 0, time.monotonic()
                self._index_trouble = None
            if stopping:
                return

    def _take(self) -> tuple[dict[str, int], dict[str, set[str] | None]]:
        """(Under `_cond`.) The next batch, taken out of `_dirty` (repository -> version) and
        `_changed` (-> the paths that changed): the repositories searches wait for, first, and
        those whose documents are kept (cheap to update); and if none of these is expensive,
        the first other one. Indexing a repository whose documents are not kept reads all its
        files (or all it holds in the index): one at a time, a search does not wait behind
        many of them."""
        dirty = self._dirty
        awaited = [r for r in dirty if r in self._awaited]
        kept = [r for r in dirty if r not in self._awaited and r in self._docs]
        chosen = awaited + kept
        if all(r in self._docs for r in awaited):
            other = (r for r in dirty if r not in self._awaited and r not in self._docs)
            chosen += [r for r in (next(other, None),) if r is not None]
        batch = {r: dirty.pop(r) for r in chosen}
        return batch, {r: self._changed.pop(r, None) for r in chosen}

    def _apply(self, batch: dict[str, set[str] | None]) -> int:
        """Bring every repository of `batch` up to date in the writer (repository -> the paths
        that changed, or None); returns the documents added or deleted."""
        documents = 0
        # Repositories that failed before come last, each after a commit of what precedes it:
        # failing again, one rolls back nothing but itself.
        for repo_id in sorted(batch, key=lambda r: r in self._failures):
            paths = batch[repo_id]
            # What is kept of a repository with uncommitted changes must not be dropped:
            # re-read from the committed index it would lack them. Committing first keeps such
            # repositories well within what is kept.
            crowded = repo_id not in self._uncommitted and len(self._uncommitted) >= UNCOMMITTED_MAX
            suspect = repo_id in self._failures and bool(self._uncommitted - {repo_id})
            if crowded or suspect:
                self._committed_early |= self._uncommitted
                self._commit_writer()
            self._committed_early.discard(repo_id)  # changes of it are uncommitted again
            self._uncommitted.add(repo_id)
            try:
                applied = None if paths is None else self._apply_paths(repo_id, paths)
                documents += self._apply_repo(repo_id) if applied is None else applied
            except Exception as exc:
                raise _RepositoryFailed(repo_id) from exc
        return documents

    def _commit(self, documents: int) -> None:
        if documents:
            self._commit_writer()
            self.batches += 1
        self._uncommitted.clear()
        self._save_state()

    def _commit_writer(self) -> None:
        self._live_writer().commit()
        self.index.reload()
        self._uncommitted.clear()

    def _publish_versions(self, versions: dict[str, int]) -> None:
        with self._cond:
            for repo_id, version in versions.items():
                if version > self._indexed.get(repo_id, 0):
                    self._indexed[repo_id] = version
                if version >= self._behind.get(repo_id, version + 1):
                    del self._behind[repo_id]
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._publish)

    def has_file_times(self, repo_id: str) -> bool:
        """Whether `file_times(repo_id)` answers from memory (else it reads storage)."""
        with self._times_lock:
            return repo_id in self._times

    def file_times(self, repo_id: str) -> dict[str, FileTime]:
        """When each current file of `repo_id` last changed, and who changed it (blocking)."""
        with self._times_lock:
            times = self._times.get(repo_id)
        if times is None:
            with self._storage.read() as txn:
                work = self._vc.worktree_entries(txn, repo_id)
                times = self._history.file_times(txn, repo_id, work)
            with self._times_lock:
                times = self._times.get(repo_id) or self._times.put(repo_id, times)
        return times

    def _forget(self, repo_id: str) -> None:
        self._docs.pop(repo_id)
        self._heads.pop(repo_id)
        self._digests.pop(repo_id)
        self._fingerprints.pop(repo_id, None)
        with self._times_lock:
            self._times.pop(repo_id)

    def _apply_repo(self, repo_id: str) -> int:
        with self._storage.read() as txn:
            if not self._repositories.exists(txn, repo_id):
                had_documents = bool(self._indexed_docs(repo_id))
                if had_documents:
                    self._live_writer().delete_documents_by_term("repo", repo_id)
                self._history.forget(repo_id)
                self._forget(repo_id)
                # Once the delete commits the index holds nothing of it. Until then the
                # committed index still shows the old documents: a repository re-created under
                # this id must not take them for its own.
                self._docs.put(repo_id, {})
                return int(had_documents)
            work = self._vc.worktree_entries(txn, repo_id)
            times = self._history.file_times(txn, repo_id, work)
            branch, head = self._vc.head(txn, repo_id)
        digests = _entry_digests(work)
        fingerprint = _format_fingerprint(branch, head, _xor(digests.values()))
        with self._times_lock:
            self._times.put(repo_id, times)
        current = {path: FileDoc(entry.oid.hex(), entry.size) for path, entry in work.items()}
        indexed = self._indexed_docs(repo_id)
        removed = [path for path, doc in indexed.items() if current.get(path) != doc]
        changed = [path for path, doc in current.items() if indexed.get(path) != doc]
        if not self._replace_documents(repo_id, removed, changed, current):
            return len(removed) + len(changed)
        self._docs.put(repo_id, current)
        self._heads.put(repo_id, head or "")
        self._digests.put(repo_id, digests)
        self._fingerprints[repo_id] = fingerprint
        return len(removed) + len(changed)

    def _apply_paths(self, repo_id: str, paths: set[str]) -> int | None:
        """Bring the files at or below `paths` up to date (HEAD did not move: file writes,
        removes, moves). None when that is not enough: then the whole repository is compared."""
        indexed = self._docs.get(repo_id)
        known_head = self._heads.get(repo_id)
        digests = self._digests.get(repo_id)
        fingerprint = self._fingerprints.get(repo_id)
        with self._times_lock:
            times = self._times.get(repo_id)
        if (
            indexed is None
            or known_head is None
            or times is None
            or digests is None
            or fingerprint is None
        ):
            return None  # nothing kept for it: compare it whole
        vc = self._vc
        with self._storage.read() as txn:
            if not self._repositories.exists(txn, repo_id):
                return None
            branch, head = vc.head(txn, repo_id)
            if (head or "") != known_head:
                return None
            head_tree = vc.objects.commit(txn, repo_id, head).tree if head else None
            entries: dict[str, Entry] = {}
            for path in paths:
                entries.update(vc.worktree_under(txn, repo_id, path))
            committed = {
                p
                for p, e in entries.items()
                if vc.objects.lookup(txn, repo_id, head_tree, p) == (e.mode, e.oid)
            }
        # What the index holds at or below the changed paths (a path that is neither a file
        # before nor after may be a directory).
        stale = {p for p in paths if p in indexed}
        directories = tuple(p + "/" for p in paths if p not in indexed and p not in entries)
        if directories:
            stale.update(p for p in indexed if p.startswith(directories))
        current = {p: FileDoc(e.oid.hex(), e.size) for p, e in entries.items()}
        new_times: dict[str, FileTime] = {}
        for p, e in entries.items():
            if p not in committed:
                new_times[p] = FileTime(e.modified_us, None)
            elif indexed.get(p) == current[p] and p in times:
                new_times[p] = times[p]  # unchanged and committed: when its commit made it
            else:
                return None  # back to its committed version: its time is in the history
        removed = [p for p in stale if current.get(p) != indexed[p]]
        changed = [p for p, doc in current.items() if indexed.get(p) != doc]
        if not self._replace_documents(repo_id, removed, changed, current):
            return len(removed) + len(changed)
        # In place: a copy of every file's entry per write would cost more than the write.
        # (Searches only look paths up in `times`, which is safe while it changes.)
        for p in stale:
            del indexed[p]
        indexed.update(current)
        with self._times_lock:
            times.update(new_times)
            for p in stale.difference(new_times):
                times.pop(p, None)
        # Stale entries leave the fingerprint, the current ones come in.
        new_digests = _entry_digests(entries)
        folded = int(fingerprint.rsplit(":", 1)[1], 16)
        folded ^= _xor(digests.pop(p) for p in stale if p in digests)
        folded ^= _xor(new_digests.values())
        digests.update(new_digests)
        self._fingerprints[repo_id] = _format_fingerprint(branch, head, folded)
        return len(removed) + len(changed)

    def _replace_documents(
        self, repo_id: str, removed: list[str], changed: list[str], docs: dict[str, FileDoc]
    ) -> bool:
        """Delete the documents of `removed` and add those of `changed` (their blobs read from
        storage). False when a blob is gone (the repository was deleted meanwhile: its own touch
        follows); then what is kept for it is dropped."""
        writer = self._live_writer()
        # Every add is preceded by a delete of its key: when what is kept for a repository was
        # dropped (evicted, or after a failure) while changes were uncommitted, the committed
        # index it is re-read from lacks them, and the same document is added again; the
        # delete keeps it to one copy.
        for path in set(removed).union(changed):
            writer.delete_documents_by_term("key", fulltext.repo_key(repo_id, path))
        for start in range(0, len(changed), READ_CHUNK):
            paths = changed[start : start + READ_CHUNK]
            try:
                with self._storage.read() as txn:
                    contents = [
                        self._vc.objects.read_kind(
                            txn, repo_id, bytes.fromhex(docs[p].hash), "blob"
                        )
                        for p in paths
                    ]
            except GovcError:
                self._forget(repo_id)
                return False
            for path, content in zip(paths, contents, strict=True):
                text = fulltext.file_text(content)
                writer.add_document(fulltext.make_document(repo_id, path, docs[path], text))
        return True

    def _indexed_docs(self, repo_id: str) -> dict[str, FileDoc]:
        """What the index holds for `repo_id` (read from the index the first time)."""
        docs = self._docs.get(repo_id)
        if docs is not None:
            return docs
        searcher = self.index.searcher()
        query = tantivy.Query.term_query(fulltext.SCHEMA, "repo", repo_id)
        docs = {}
        for _, address in fulltext.scored_matches(searcher, query, 0.0):
            hit = fulltext.hit_of(searcher, address, 0.0, {})
            docs[hit.path] = FileDoc(hit.hash, hit.size)
        self._docs.put(repo_id, docs)
        return docs

    def _fingerprint(self, txn: Txn, repo_id: str) -> str:
        """Digest of everything the indexed documents derive from: HEAD and the work tree."""
        branch, head = self._vc.head(txn, repo_id)
        work = self._vc.worktree_entries(txn, repo_id)
        return _format_fingerprint(branch, head, _xor(_entry_digests(work).values()))

    def _save_state(self) -> None:
        path = os.path.join(self._directory, STATE_FILE)
        temp = path + ".tmp"
        with open(temp, "w") as f:
            json.dump({"format": fulltext.FORMAT, "repositories": self._fingerprints}, f)
        os.replace(temp, path)


# A fingerprint is HEAD plus the XOR of one digest per work-tree entry, so a change to a few
# files updates it without reading the others.


def _entry_digests(entries: dict[str, Entry]) -> dict[str, int]:
    return {
        path: int.from_bytes(
            hashlib.blake2b(path.encode() + b"\0" + entry.encode(), digest_size=16).digest()
        )
        for path, entry in entries.items()
    }


def _xor(digests: Iterable[int]) -> int:
    folded = 0
    for digest in digests:
        folded ^= digest
    return folded


def _format_fingerprint(branch: str | None, head: str | None, folded: int) -> str:
    return f"{branch or ''}:{head or ''}:{folded:032x}"
