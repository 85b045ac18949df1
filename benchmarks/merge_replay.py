"""Every merge of a git history made again by govc and by `git merge-tree`, compared; and merge
speed against git on synthetic cases. A section of `make bench` (`run`); alone:
`python -m benchmarks.merge_replay PATH...` replays the merges of the repositories at PATH
(`--speed` adds the synthetic cases).

`replay(path)` imports the repository into a temporary govc storage in process (relaxed
durability) and, for every two-parent merge commit (`git rev-list --merges --all --parents`,
octopus merges skipped), merges its first parent (ours) with its second (theirs) twice:
govc's `VersionControl.merge_commits` in a write transaction, labels the two commit ids, and
`git merge-tree --write-tree --name-only -z --allow-unrelated-histories <p1> <p2>` with the
same two strings. They agree when both call the merge clean with the same tree id, or both call
it conflicted with the same set of conflicted paths; whether the trees of conflicted merges
(conflict markers included) are also identical is counted, not held against govc.

git runs with no system or user configuration (GIT_CONFIG_NOSYSTEM, HOME in a temporary
directory), so merge.renameLimit, merge.conflictStyle and the like are git's defaults, and in a
scratch bare repository that borrows the source's objects (objects/info/alternates): whatever
merge-tree writes lands there, never in the repository replayed, and govc imports every object
of the source (whatever its refs; merges are named by commit id).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import GIT_ENV, markdown_table
from govc.core.database import Database
from govc.core.gitio import import_repository
from govc.core.objects import FileMap
from govc.core.registry import Registry
from govc.core.versioncontrol import VersionControl
from govc.core.xdiff import Algorithm, Level, merge_file
from govc.storage import Storage, StorageConfig, Txn

REPO_ID = "replay"
SHOWN = 5  # paths named in a reason before "..."

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


# ---- git ----


def _git_env(home: Path) -> dict[str, str]:
    return {**os.environ, **GIT_ENV, "HOME": str(home), "GIT_CONFIG_GLOBAL": os.devnull}


def _git(
    git_dir: Path, home: Path, *args: str, check: bool = True, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        ["git", "--git-dir", str(git_dir), *args],
        env=_git_env(home),
        input=stdin,
        capture_output=True,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:3])} failed: {result.stderr.decode().strip()}")
    return result


def _objects_dir(path: Path) -> Path:
    """The object directory of the repository at `path` (bare, work tree or linked worktree)."""
    result = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True,
    )
    if result.returncode != 0:
        raise ValueError(f"{path} is not a git repository")
    return Path(result.stdout.decode().strip()) / "objects"


def list_merges(path: Path, home: Path) -> list[tuple[str, str, str]]:
    """(merge, first parent, second parent) of every two-parent merge reachable from any ref."""
    source = Path(_objects_dir(path)).parent
    listing = _git(source, home, "rev-list", "--merges", "--all", "--parents").stdout
    merges = []
    for line in listing.decode().splitlines():
        ids = line.split()
        if len(ids) == 3:  # octopus merges (more parents) are skipped
            merges.append((ids[0], ids[1], ids[2]))
    return merges


@dataclass(frozen=True)
class MergeView:
    """One side's answer: clean or not, the tree written, the conflicted paths."""

    clean: bool
    tree: str
    paths: frozenset[str]
    messages: tuple[str, ...] = ()  # the CONFLICT messages


def git_merge_tree(scratch: Path, home: Path, ours: str, theirs: str) -> MergeView:
    """`git merge-tree --write-tree --name-only -z`: exit 0 clean, 1 conflicted; the tree id,
    then the conflicted paths up to an empty field, then the messages."""
    result = _git(
        scratch,
        home,
        "merge-tree",
        "--write-tree",
        "--name-only",
        "-z",
        "--allow-unrelated-histories",
        ours,
        theirs,
        check=False,
    )
    if result.returncode not in (0, 1):
        raise RuntimeError(f"git merge-tree failed: {result.stderr.decode().strip()}")
    fields = result.stdout.decode("utf-8", "surrogateescape").split("\0")
    tree, paths = fields[0], set()
    at = 1
    while at < len(fields) and fields[at]:
        paths.add(fields[at])
        at += 1
    return MergeView(
        result.returncode == 0, tree, frozenset(paths), _conflict_messages(fields, at + 1)
    )


def _conflict_messages(fields: list[str], at: int) -> tuple[str, ...]:
    """The CONFLICT messages of merge-tree's -z output: records of a path count, the paths,
    a type and the message (a submodule conflict ends with advice in plain text)."""
    messages = []
    while at < len(fields) and fields[at].isdigit():
        count = int(fields[at])
        if at + count + 2 >= len(fields):
            break
        kind, text = fields[at + count + 1], fields[at + count + 2]
        if kind.startswith("CONFLICT"):
            messages.append(text.strip())
        at += count + 3
    return tuple(messages)


def _git_tree_files(scratch: Path, home: Path, tree: str) -> FileMap:
    listing = _git(scratch, home, "ls-tree", "-r", "-z", "--full-tree", tree).stdout
    files: FileMap = {}
    for item in listing.split(b"\0"):
        if item:
            meta, path = item.split(b"\t", 1)
            mode, _, oid = meta.split(b" ")
            files[path.decode("utf-8", "surrogateescape")] = (
                int(mode, 8),
                bytes.fromhex(oid.decode()),
            )
    return files


# ---- govc ----


@dataclass
class Imported:
    """A repository imported into a temporary govc storage, and its scratch git directory."""

    source: Path
    scratch: Path  # bare repository borrowing the source's objects: git writes here
    home: Path  # HOME for git: no user configuration
    db: Database
    vc: VersionControl
    import_seconds: float
    objects: int

    def merge(self, ours: str, theirs: str) -> tuple[MergeView, FileMap]:
        """govc's merge of two commits (labels: the two ids) in one write transaction."""

        def run(txn: Txn) -> tuple[MergeView, FileMap]:
            outcome, tree = self.vc.merge_commits(txn, REPO_ID, ours, theirs, ours, theirs)
            paths = frozenset(c.path for c in outcome.conflicts)
            said = tuple(m for m in outcome.messages if m.startswith("CONFLICT"))
            return MergeView(outcome.clean, tree, paths, said), outcome.files

        return self.db.write(REPO_ID, run).result()


@contextlib.contextmanager
def imported(path: Path) -> Iterator[Imported]:
    """`path` imported into a temporary govc storage (removed on exit)."""
    objects = _objects_dir(path)
    with tempfile.TemporaryDirectory(prefix="govc-merge-replay-") as tmp:
        root = Path(tmp)
        home = root / "home"
        home.mkdir()
        scratch = root / "scratch.git"
        subprocess.run(
            ["git", "init", "-q", "--bare", str(scratch)],
            env=_git_env(home),
            check=True,
            capture_output=True,
        )
        (scratch / "objects" / "info" / "alternates").write_text(f"{objects}\n")
        storage = Storage(StorageConfig(path=str(root / "govc-data"), durable=False))
        try:
            db, vc = Database(storage, Registry()), VersionControl()
            start = time.perf_counter()
            result = import_repository(db, vc, scratch, REPO_ID)
            elapsed = time.perf_counter() - start
            yield Imported(path, scratch, home, db, vc, elapsed, result.objects)
        finally:
            storage.close()


# ---- comparison ----


def _names(paths: Sequence[str] | frozenset[str] | set[str]) -> str:
    ordered = sorted(paths)
    shown = ", ".join(ordered[:SHOWN])
    return shown + (f" ... ({len(ordered)} in all)" if len(ordered) > SHOWN else "")


def _tree_difference(ours: FileMap, theirs: FileMap) -> list[str]:
    return sorted(p for p in ours.keys() | theirs.keys() if ours.get(p) != theirs.get(p))


@dataclass(frozen=True)
class Outcome:
    merge: str
    ours: str
    theirs: str
    govc: MergeView | None  # None: govc raised (see `error`)
    git: MergeView
    govc_seconds: float
    git_seconds: float
    error: str = ""
    differing: tuple[str, ...] = ()  # paths whose version differs between the two trees

    @property
    def agree(self) -> bool:
        govc, git = self.govc, self.git
        if govc is None or govc.clean != git.clean:
            return False
        return govc.tree == git.tree if git.clean else govc.paths == git.paths

    @property
    def trees_match(self) -> bool:
        return self.govc is not None and self.govc.tree == self.git.tree

    @property
    def reason(self) -> str:
        govc, git = self.govc, self.git
        said = f" (git: {git.messages[0]})" if git.messages else ""
        if govc is None:
            return f"govc failed: {self.error}"
        if govc.clean and not git.clean:
            return f"govc clean, git conflicts in {_names(git.paths)}{said}"
        if git.clean and not govc.clean:
            govc_said = f" (govc: {govc.messages[0]})" if govc.messages else ""
            return f"git clean, govc conflicts in {_names(govc.paths)}{govc_said}"
        if govc.clean:
            return f"both clean, trees differ at {_names(self.differing)}"
        if govc.paths != git.paths:
            parts = []
            if govc.paths - git.paths:
                parts.append(f"only govc: {_names(govc.paths - git.paths)}")
            if git.paths - govc.paths:
                parts.append(f"only git: {_names(git.paths - govc.paths)}")
            return "conflicted paths differ, " + "; ".join(parts) + said
        return f"same conflicts, conflicted trees differ at {_names(self.differing)}"


def compare(repo: Imported, merge: str, ours: str, theirs: str) -> Outcome:
    start = time.perf_counter()
    git = git_merge_tree(repo.scratch, repo.home, ours, theirs)
    git_seconds = time.perf_counter() - start
    start = time.perf_counter()
    try:
        govc, files = repo.merge(ours, theirs)
    except Exception as exc:  # a crash is a disagreement to report, not the end of the replay
        return Outcome(
            merge, ours, theirs, None, git, time.perf_counter() - start, git_seconds, repr(exc)
        )
    govc_seconds = time.perf_counter() - start
    differing: list[str] = []
    if govc.tree != git.tree:
        differing = _tree_difference(files, _git_tree_files(repo.scratch, repo.home, git.tree))
    return Outcome(
        merge, ours, theirs, govc, git, govc_seconds, git_seconds, differing=tuple(differing)
    )


@dataclass
class Replay:
    repository: str
    objects: int
    import_seconds: float
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def agreed(self) -> int:
        return sum(o.agree for o in self.outcomes)

    @property
    def disagreements(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.agree]

    @property
    def conflicted(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.git.clean]

    @property
    def conflicted_tree_mismatches(self) -> list[Outcome]:
        """Merges both call conflicted with the same paths whose trees still differ."""
        return [o for o in self.outcomes if o.agree and not o.git.clean and not o.trees_match]

    @property
    def govc_seconds(self) -> float:
        return sum(o.govc_seconds for o in self.outcomes)

    @property
    def git_seconds(self) -> float:
        return sum(o.git_seconds for o in self.outcomes)

    def summary(self) -> str:
        n = len(self.outcomes)
        agreeing = [o for o in self.conflicted if o.agree]
        mismatched = self.conflicted_tree_mismatches
        lines = [
            f"{self.repository}: {n} merges, {self.agreed} agree, "
            f"{len(self.disagreements)} disagree ({len(self.conflicted)} conflicted in git; "
            f"conflicted trees identical in {len(agreeing) - len(mismatched)} of the "
            f"{len(agreeing)} agreeing)",
            f"  govc {self.govc_seconds:.2f} s ({_per(self.govc_seconds, n)} per merge), "
            f"git merge-tree {self.git_seconds:.2f} s ({_per(self.git_seconds, n)} per merge, "
            f"process start included); import {self.import_seconds:.1f} s "
            f"({self.objects} objects)",
        ]
        for o in self.disagreements:
            lines.append(f"  DISAGREE {o.merge} ({o.ours} {o.theirs}): {o.reason}")
        for o in mismatched:
            lines.append(f"  conflicted tree differs {o.merge}: {o.reason}")
        return "\n".join(lines)


def _per(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e3:.1f} ms" if n else "-"


def replay(path: Path, progress: Progress = _quiet, limit: int | None = None) -> Replay:
    """Replay every two-parent merge of the repository at `path` (the first `limit` of them,
    newest first, with a limit)."""
    with imported(path) as repo:
        merges = list_merges(path, repo.home)[:limit]
        result = Replay(str(path), repo.objects, repo.import_seconds)
        progress(f"{path}: {repo.objects} objects imported in {repo.import_seconds:.1f} s")
        for k, (merge, ours, theirs) in enumerate(merges, 1):
            result.outcomes.append(compare(repo, merge, ours, theirs))
            if k % 200 == 0:
                progress(f"{path}: {k}/{len(merges)} merges, {result.agreed} agree")
        return result


# ---- speed on synthetic cases ----

SPEED_FILES = 1000
SPEED_LINES = 3000
SPEED_REPEAT = 15
SPEED_WARMUP = 5
BAR = 2.0  # govc at most this many times git's time

SpeedRow = tuple[str, float, float, float]  # (case, govc seconds, git seconds, govc/git)


def _text(name: str, lines: int) -> bytes:
    return b"".join(b"%s line %d: some text to merge\n" % (name.encode(), i) for i in range(lines))


def _edit(text: bytes, every: int, offset: int, tag: bytes) -> bytes:
    lines = text.splitlines(keepends=True)
    for i in range(offset, len(lines), every):
        lines[i] = lines[i].rstrip(b"\n") + b" " + tag + b"\n"
    return b"".join(lines)


def _fast_import(files: dict[str, bytes], branch: str, parent: str | None, when: int) -> bytes:
    out = [
        f"commit refs/heads/{branch}\n".encode(),
        f"committer bench <bench@example.com> {when} +0000\n".encode(),
        b"data 2\nc\n",
    ]
    if parent is not None:
        out.append(f"from {parent}\n".encode())
    for path, content in files.items():
        out.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(content), content))
    return b"".join(out)


def _speed_history(git_dir: Path, home: Path, same_files: bool) -> tuple[str, str]:
    """base: 2,000 files of 20 lines; ours edits files 0-999 (line 2); theirs edits files
    1000-1999, or with `same_files` the same files 0-999 (line 15). Returns (ours, theirs)."""
    base = {f"d{i % 20}/f{i:04d}.txt": _text(f"f{i}", 20) for i in range(2 * SPEED_FILES)}
    names = list(base)
    ours = {p: _edit(base[p], 100, 2, b"ours") for p in names[:SPEED_FILES]}
    theirs_paths = names[:SPEED_FILES] if same_files else names[SPEED_FILES:]
    theirs = {p: _edit(base[p], 100, 15, b"theirs") for p in theirs_paths}
    stream = b"".join(
        [
            _fast_import(base, "base", None, 1_700_000_000),
            _fast_import(ours, "ours", "refs/heads/base", 1_700_000_100),
            _fast_import(theirs, "theirs", "refs/heads/base", 1_700_000_200),
        ]
    )
    _git(git_dir, home, "fast-import", "--quiet", stdin=stream)
    return (
        _git(git_dir, home, "rev-parse", "ours").stdout.decode().strip(),
        _git(git_dir, home, "rev-parse", "theirs").stdout.decode().strip(),
    )


def _paired_medians(
    govc: Callable[[], object], git: Callable[[], object], repeat: int = SPEED_REPEAT
) -> tuple[float, float]:
    """Median seconds of each, the runs interleaved (a burst of outside load hits both), after
    SPEED_WARMUP unrecorded runs of each (caches, the storage's first pages, the CPU's clock)."""
    for _ in range(SPEED_WARMUP):
        govc()
        git()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for call, out in ((govc, times[0]), (git, times[1])):
            start = time.perf_counter()
            call()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def _tree_merge_case(workdir: Path, same_files: bool) -> tuple[float, float]:
    """(govc merge_commits, git merge-tree --write-tree) median seconds on one history."""
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    source = workdir / ("same.git" if same_files else "disjoint.git")
    subprocess.run(
        ["git", "init", "-q", "--bare", str(source)],
        env=_git_env(home),
        check=True,
        capture_output=True,
    )
    ours, theirs = _speed_history(source, home, same_files)
    with imported(source) as repo:
        merged, _ = repo.merge(ours, theirs)
        expected = git_merge_tree(repo.scratch, repo.home, ours, theirs)
        if (merged.clean, merged.tree) != (expected.clean, expected.tree):
            raise AssertionError(f"govc and git disagree on the synthetic merge: {merged}")
        return _paired_medians(
            lambda: repo.merge(ours, theirs),
            lambda: git_merge_tree(repo.scratch, repo.home, ours, theirs),
        )


def _file_merge_case(workdir: Path) -> list[SpeedRow]:
    """A 3,000-line file edited on both sides (every 50th line from 0 on one, from 25 on the
    other): merge_file with git merge-file's settings (Myers, ZEALOUS_ALNUM) and with ort's
    (histogram, ZEALOUS), against `git merge-file -p` (process start included)."""
    base = _text("file", SPEED_LINES)
    ours, theirs = _edit(base, 50, 0, b"ours"), _edit(base, 50, 25, b"theirs")
    paths = []
    for name, content in (("base", base), ("ours", ours), ("theirs", theirs)):
        target = workdir / f"{name}.txt"
        target.write_bytes(content)
        paths.append(str(target))
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = _git_env(home)

    def git_merge_file() -> bytes:
        return subprocess.run(
            ["git", "merge-file", "-p", paths[1], paths[0], paths[2]],
            env=env,
            capture_output=True,
            check=True,
        ).stdout

    expected = git_merge_file()

    def as_merge_file() -> bytes:
        return merge_file(
            base, ours, theirs, algorithm=Algorithm.MYERS, level=Level.ZEALOUS_ALNUM
        ).content

    if as_merge_file() != expected:
        raise AssertionError("merge_file and git merge-file disagree on the 3,000-line file")
    myers, git = _paired_medians(as_merge_file, git_merge_file)
    histogram, git_again = _paired_medians(lambda: merge_file(base, ours, theirs), git_merge_file)
    return [
        (
            f"{SPEED_LINES:,}-line file, merge_file as git merge-file (Myers)",
            myers,
            git,
            myers / git,
        ),
        (
            f"{SPEED_LINES:,}-line file, merge_file as ort (histogram)",
            histogram,
            git_again,
            histogram / git_again,
        ),
    ]


def speed_cases(workdir: Path) -> list[SpeedRow]:
    """(case, govc seconds, git seconds, govc/git): medians of SPEED_REPEAT runs each."""
    rows: list[SpeedRow] = []
    for same_files, name in (
        (False, f"{SPEED_FILES:,} files edited on each side (disjoint)"),
        (True, f"the same {SPEED_FILES:,} files edited on both sides"),
    ):
        govc, git = _tree_merge_case(workdir, same_files)
        rows.append((name, govc, git, govc / git))
    rows.extend(_file_merge_case(workdir))
    return rows


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def _verdict(case: str, ratio: float) -> str:
    if "(histogram)" in case:
        return "—"  # git merge-file has no histogram mode: for information
    return "met" if ratio <= BAR else "NOT met"


def speed_table(rows: Sequence[SpeedRow]) -> str:
    return markdown_table(
        [
            ["case", "govc", "git", "govc/git", f"bar <= {BAR:g}x"],
            *(
                [case, _ms(govc), _ms(git), f"{ratio:.2f}", _verdict(case, ratio)]
                for case, govc, git, ratio in rows
            ),
        ]
    )


def _repository_name(path: str) -> str:
    """The name to show for a repository: its directory, or the one above a `repo` or `.git`."""
    where = Path(path)
    name = where.name if where.name not in ("repo", ".git") else where.parent.name
    return name.removesuffix(".git")


def replay_table(replays: Sequence[Replay]) -> str:
    rows = [["repository", "merges", "agree", "disagree", "govc per merge", "git per merge"]]
    for r in replays:
        n = len(r.outcomes)
        rows.append(
            [
                _repository_name(r.repository),
                str(n),
                str(r.agreed),
                str(len(r.disagreements)),
                _per(r.govc_seconds, n),
                _per(r.git_seconds, n),
            ]
        )
    return markdown_table(rows)


def _paragraph(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=100, break_on_hyphens=False)


def run(workdir: Path, repositories: Sequence[Path] = ()) -> str:
    """The `make bench` section: the synthetic speed cases, and the replay of the repositories
    named in GOVC_BENCH_REPOS (os.pathsep-separated) plus `repositories`."""
    named = [Path(p) for p in os.environ.get("GOVC_BENCH_REPOS", "").split(os.pathsep) if p]
    speed_dir = workdir / "merge-speed"
    speed_dir.mkdir(parents=True, exist_ok=True)
    notes = _paragraph(
        f"""govc's merge (`VersionControl.merge_commits` in a write transaction of an in-process
        storage, relaxed durability: merge bases, trees read, merged, blobs and trees stored)
        against `git merge-tree --write-tree` (a process per merge, its start included), on a
        history of 2,000 files of 20 lines in 20 directories where each side edits one line
        of 1,000 files (its own, or the same ones: 1,000 line merges); and `merge_file` against
        `git merge-file -p` (a process) on a 3,000-line file with 60 edits on each side, with
        git merge-file's settings and, for information, with ort's. Medians of {SPEED_REPEAT}
        interleaved runs after one checked against git's result."""
    )
    parts = ["## Merges against git", speed_table(speed_cases(speed_dir)), notes]
    replays = [replay(p) for p in [*named, *repositories]]
    if replays:
        parts.append(replay_table(replays))
        parts.extend(f"```\n{r.summary()}\n```" for r in replays)
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.merge_replay", description=__doc__)
    parser.add_argument("paths", nargs="*", type=Path, help="git repositories to replay")
    parser.add_argument("--limit", type=int, default=None, help="at most this many merges each")
    parser.add_argument("--speed", action="store_true", help="also run the synthetic cases")
    args = parser.parse_args(argv)
    if not args.paths and not args.speed:
        parser.error("name a repository to replay, or --speed")

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    all_agree = True
    if args.speed:
        with tempfile.TemporaryDirectory(prefix="govc-merge-speed-") as tmp:
            print(speed_table(speed_cases(Path(tmp))), flush=True)
    for path in args.paths:
        result = replay(path, progress, args.limit)
        print(result.summary(), flush=True)
        all_agree = all_agree and not result.disagreements
    return 0 if all_agree else 1


if __name__ == "__main__":
    sys.exit(main())
