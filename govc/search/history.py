"""Facts derived from commits, cached per repository: what each commit changed, and when each
file of the work tree last changed and by whom.

A commit never changes, so the paths it changed (the diff against its first parent) are
computed once and kept, for the most recently used repositories. SQL (the `commits` and
`changes` tables, `files.last_modified`) and the search index (`last_modified`, last author)
both read them from here, so they agree.
"""

import threading
from dataclasses import dataclass, field

from govc.core.cache import LruCache
from govc.core.gitformat import Commit
from govc.core.objects import diff_files
from govc.core.versioncontrol import VersionControl
from govc.storage import Txn
from govc.storage.tables import Entry

# (path, "added" | "modified" | "deleted", blob id)
Change = tuple[str, str, bytes]


@dataclass(frozen=True)
class CommitFacts:
    commit: Commit
    changes: list[Change]


@dataclass(frozen=True)
class FileTime:
    """When a work-tree file last changed (us since the epoch) and who changed it: the newest
    commit that changed a committed file, or the write time of an uncommitted one (no author)."""

    modified_us: int
    author: str | None


@dataclass
class _RepoCache:
    commits: dict[str, CommitFacts] = field(default_factory=dict)


REPOSITORIES_KEPT = 256


class History:
    def __init__(self, vc: VersionControl, repositories_kept: int = REPOSITORIES_KEPT) -> None:
        self._vc = vc
        self._repos: LruCache[str, _RepoCache] = LruCache(repositories_kept)
        # Readers run in worker threads and share the cache.
        self._lock = threading.Lock()

    def commits(self, txn: Txn, repo_id: str, tips: list[str]) -> dict[str, CommitFacts]:
        """Every commit reachable from `tips`, newest first; only commits not seen before are
        read and diffed."""
        vc = self._vc
        with self._lock:
            cache = self._repos.get(repo_id) or self._repos.put(repo_id, _RepoCache())
            live: dict[str, CommitFacts] = {}
            for tip in tips:
                if tip in live:
                    continue
                for commit_id, commit in vc.walk(txn, repo_id, tip):
                    if commit_id in live:
                        continue
                    facts = cache.commits.get(commit_id)
                    if facts is None:
                        parent = commit.parents[0] if commit.parents else None
                        facts = CommitFacts(
                            commit,
                            diff_files(
                                vc.commit_files(txn, repo_id, parent),
                                vc.objects.flatten(txn, repo_id, commit.tree),
                            ),
                        )
                        cache.commits[commit_id] = facts
                    live[commit_id] = facts
            return live

    def forget(self, repo_id: str) -> None:
        """Drop what is kept for `repo_id` (it was deleted)."""
        with self._lock:
            self._repos.pop(repo_id)

    def file_times(self, txn: Txn, repo_id: str, work: dict[str, Entry]) -> dict[str, FileTime]:
        """FileTime of every work-tree file: one walk of HEAD's history for all committed ones."""
        vc = self._vc
        head_files = vc.head_files(txn, repo_id)
        committed = {p for p, e in work.items() if head_files.get(p) == (e.mode, e.oid)}
        times: dict[str, FileTime] = {}
        _, head = vc.head(txn, repo_id)
        if head is not None and committed:
            for facts in self.commits(txn, repo_id, [head]).values():
                commit = facts.commit
                for path, _, _ in facts.changes:
                    if (
                        path in committed
                        and path not in times
                        and self._changed_by(txn, repo_id, commit, path)
                    ):
                        times[path] = FileTime(
                            commit.committer.time * 1_000_000, commit.author.identity
                        )
                if len(times) == len(committed):
                    break
        for path, entry in work.items():
            if path not in times:
                times[path] = FileTime(entry.modified_us, None)
        return times

    def _changed_by(self, txn: Txn, repo_id: str, commit: Commit, path: str) -> bool:
        """Whether `commit` changed `path`, which differs from its first parent: as `git log`
        (and ReadFile) see it, a merge changed a path only if it differs from every parent, not
        when it brought the version of another parent."""
        if len(commit.parents) < 2:
            return True  # not a merge: no tree lookups (this runs for every path of every commit)
        objects = self._vc.objects
        mine = objects.lookup(txn, repo_id, commit.tree, path)
        return all(
            objects.lookup(txn, repo_id, objects.commit(txn, repo_id, parent).tree, path) != mine
            for parent in commit.parents[1:]
        )
