"""Three-way merge of trees as git's default strategy (ort) makes it (pure functions, no storage).

A port of git 2.39.5's merge-ort.c (merge_ort_nonrecursive_internal) working on flattened trees,
in its three phases:

1. collect_merge_info: every path of the three trees whose versions are not all equal becomes an
   entry (so does every directory above one, and a path that is a file on one side and a
   directory on another); entries that one side left as the base had them, or that both sides
   changed the same way, are resolved at once. The deleted paths whose rename matters are noted
   as ort notes them: those the other side changed or deleted too ("content"), and those in a
   directory the other side added files to while this side removed it ("location", what
   directory rename detection needs).
2. detect_and_process_renames: renames are found on each side as ort finds them
   (`govc.core.renames`); at the top level (not inside a virtual merge base) the renamed
   directories are deduced from them by majority, and a file the other side added (or renamed)
   into a directory this side renamed is moved with it and marked conflicted, as ort's default
   `merge.directoryRenames=conflict` does ("CONFLICT (file location)"), unless paths collide or
   something is in the way. Then every rename is applied to the entries: renames on one side
   meeting edits on the other, rename/rename (1to1 and 1to2), rename/add, rename/delete and
   rename against a type change, exactly as process_renames does.
3. process_entries: each entry, children before their directory, as process_entry decides it:
   content merges with git's own algorithm (`govc.core.xdiff`, histogram diff, level ZEALOUS, as
   ll-merge runs it; binary files take a side), mode merges, modify/delete, add/add, distinct
   types and file/directory conflicts (a file that a directory still occupies moves to
   `path~branch`, with `_0`, `_1`... as unique_path picks).

Several merge bases (a criss-cross history) are merged first into a virtual base by the caller
(`VersionControl`), as git does; `depth` says how deep in that recursion a merge is, which
changes what a conflict leaves behind (the base version, longer markers, no directory renames).

What is reported: the merged files (conflicted text files with markers), the conflicted paths
(the paths git's index would hold at stages 1-3, with those stages), the conflicts that leave no
such path (directory rename split, implicit directory rename collisions), and ort's messages.

Modes are read as ort reads them: canonical (100664 is 100644) where ort walks the trees, as
they are in the trees it takes whole (unchanged directories, and the directories it defers and
then takes from one side because no rename there matters).

Not modelled: submodule merging (a gitlink changed on both sides is a conflict keeping ours, as
ort leaves it when the submodule is not checked out, which is always the case in a bare
repository), attributes (ort reads none in a bare repository), renormalization, and ort's cache
of renames across the merges of a rebase. The order in which ort meets the destinations of
renames is taken to be path order (ort walks the directories it deferred last); it decides only
which of several colliding paths a message names first. Two details of ort's rename detection
live in `govc.core.renames` and are not modelled there yet: the relevance ort gives removed
directories (RELEVANT_FOR_SELF) when guessing renames by basename, and the culling of sources
that matter only for their location once a directory's rename is settled
(handle_early_known_dir_renames); `dirs_removed` here computes what both need.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from govc.core.objects import FileMap
from govc.core.renames import detect_renames, directories
from govc.core.xdiff import Favor, XDiffError, merge_file
from govc.errors import FailedPrecondition

BlobReader = Callable[[bytes], bytes]  # blob id -> content
BlobWriter = Callable[[bytes], bytes]  # content -> blob id (stored)
FileVersion = tuple[int, bytes]  # (mode, blob id)

EMPTY_BLOB = bytes.fromhex("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")
BINARY_PROBE = 8000  # git looks for a NUL in this many leading bytes
MAX_TEXT_MERGE = 1024 * 1024 * 1023  # git's MAX_XDIFF_SIZE: bigger files merge as binary

S_IFMT = 0o170000
S_IFREG = 0o100000
S_IFLNK = 0o120000
S_IFDIR = 0o040000
S_IFGITLINK = 0o160000
_DIR: FileVersion = (S_IFDIR, b"")  # a stage holding a directory (ort keeps its tree there)
_CANONICAL = frozenset((0o100644, 0o100755, S_IFLNK, S_IFGITLINK))

# dirs_removed relevance (diffcore.h enum dir_rename_relevance)
_NOT_RELEVANT = 0
_RELEVANT_FOR_ANCESTOR = 1
_RELEVANT_FOR_SELF = 2

# porcelain status of a conflicted path, by the stages it has (1 base, 2 ours, 3 theirs)
_CODES = {1: "DD", 2: "AU", 3: "UD", 4: "UA", 5: "DU", 6: "AA", 7: "UU"}


class Strategy(enum.Enum):
    """MergeBranch `strategy`: git's default merge and its -X ours / -X theirs, and union."""

    ORT = ""
    OURS = "ours"
    THEIRS = "theirs"
    UNION = "union"


FAVOR = {
    Strategy.ORT: Favor.NORMAL,
    Strategy.OURS: Favor.OURS,
    Strategy.THEIRS: Favor.THEIRS,
    Strategy.UNION: Favor.UNION,
}


def is_binary(data: bytes) -> bool:
    return data.find(b"\0", 0, BINARY_PROBE) >= 0


def _kind(mode: int) -> int:
    return mode & S_IFMT  # regular file, symlink, gitlink or directory


def _mode(version: FileVersion | None) -> int:
    return version[0] if version is not None else 0


def canon_mode(mode: int) -> int:
    """tree-walk.c canon_mode: what ort sees of a mode read from a tree."""
    kind = mode & S_IFMT
    if kind == S_IFREG:
        return 0o100755 if mode & 0o100 else 0o100644
    if kind in (S_IFLNK, S_IFDIR):
        return kind
    return S_IFGITLINK


def _canon(version: FileVersion) -> FileVersion:
    mode = version[0]
    if mode == 0o100644 or mode == 0o100755:
        return version
    return canon_mode(mode), version[1]


def _dirname(path: str) -> str:
    slash = path.rfind("/")
    return path[:slash] if slash >= 0 else ""


@dataclass(frozen=True)
class Conflict:
    """A conflicted path: git's porcelain code for it, the three stages git's index would
    hold, and the file as the merge leaves it (with markers; empty for binary files and for
    conflicts that are not about content)."""

    path: str
    code: str  # UU, AA, AU, UA, DU, UD or DD
    base: FileVersion | None
    ours: FileVersion | None
    theirs: FileVersion | None
    merged: bytes = b""


@dataclass
class TreeMerge:
    files: FileMap  # the merged tree; conflicted text files hold git's markers
    conflicts: list[Conflict] = field(default_factory=list)
    # Conflicts that leave no conflicted path (directory rename split, implicit directory
    # renames colliding or blocked): git's merge is not clean, yet its index has no stages.
    other_conflicts: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # ort's CONFLICT and info messages

    @property
    def clean(self) -> bool:
        return not self.conflicts and not self.other_conflicts


class _Info:
    """merge-ort's conflict_info: one path's stages (base, side 1, side 2), where they came
    from, which sides have a file (filemask) or a directory (dirmask) there, and the result."""

    __slots__ = (
        "clean",
        "df_conflict",
        "dirmask",
        "filemask",
        "match_mask",
        "merged_text",
        "path_conflict",
        "pathnames",
        "result",
        "stages",
    )

    def __init__(
        self,
        path: str,
        stages: list[FileVersion | None],
        filemask: int,
        dirmask: int,
        match_mask: int,
    ) -> None:
        self.stages = stages
        self.pathnames = [path, path, path]
        self.filemask = filemask
        self.dirmask = dirmask
        self.match_mask = match_mask
        self.df_conflict = bool(filemask and dirmask)
        self.path_conflict = False
        self.clean = False
        self.result: FileVersion | None = None  # None: the path is removed (is_null)
        self.merged_text = b""

    def copy(self) -> _Info:
        other = _Info.__new__(_Info)
        for name in _Info.__slots__:
            setattr(other, name, getattr(self, name))
        other.stages = list(self.stages)
        other.pathnames = list(self.pathnames)
        return other


@dataclass
class _Pair:
    """A diff_filepair of one side after rename detection: an added path or a rename."""

    one: str  # the source (an add: the path itself)
    two: str  # the destination
    side: int
    renamed: bool


@dataclass
class _Collision:
    sources: list[str] = field(default_factory=list)
    reported: bool = False


class _OrtMerge:
    def __init__(
        self,
        trees: tuple[FileMap, FileMap, FileMap],
        read_blob: BlobReader,
        store_blob: BlobWriter,
        labels: tuple[str, str, str],
        favor: Favor,
        depth: int,
    ) -> None:
        self.trees = trees
        self._read = read_blob
        self._store = store_blob
        self.ancestor, self.branch1, self.branch2 = labels
        self.favor = favor
        self.depth = depth  # 0 for the merge asked for; 1+ inside a virtual merge base
        self.files: FileMap = {}
        self.infos: dict[str, _Info] = {}  # the unresolved entries of ort's `paths`
        self.removed: set[str] = set()  # entries taken out of `paths`
        self.visited: set[str] = {""}  # directories whose three versions are not all equal
        self.conflicted: dict[str, _Info] = {}
        self.messages: list[str] = []
        self.other_conflicts: list[str] = []
        self._dirs: list[set[str]] | None = None
        self._occupied: set[str] | None = None
        self.changed: list[str] = []
        self._unchanged_dirs: set[str] = set()
        self.noncanonical = False  # a mode of a tree entry that tree-walk.c would change
        self.activated: set[str] = set()  # where ort's dir_rename_mask becomes 0x07

    # ---- the three trees ----

    def dirs(self, side: int) -> set[str]:
        """The directories of one of the three trees: those of its unchanged files (the same
        on every side) and those of its changed ones."""
        if self._dirs is None:
            self._dirs = [
                self._unchanged_dirs | directories(p for p in self.changed if p in tree)
                for tree in self.trees
            ]
        return self._dirs[side]

    def in_paths(self, path: str) -> bool:
        """Whether ort's `paths` holds `path`: every name in a directory it walked into (files
        and directories of any of the three trees), and what the merge put there since."""
        if path in self.infos:
            return True
        if path in self.removed or _dirname(path) not in self.visited:
            return False
        return any(path in tree for tree in self.trees) or any(
            path in self.dirs(i) for i in range(3)
        )

    def path_in_way(self, path: str, side_mask: int) -> bool:
        info = self.infos.get(path)
        if info is not None:
            return info.clean or bool(side_mask & (info.filemask | info.dirmask))
        return self.in_paths(path)  # a path resolved while collecting: clean

    def unique_path(self, path: str, branch: str) -> str:
        base = f"{path}~{branch.replace('/', '_')}"
        candidate, suffix = base, 0
        while self.in_paths(candidate):
            candidate = f"{base}_{suffix}"
            suffix += 1
        return candidate

    # ---- 1. collect_merge_info ----

    def collect(self) -> tuple[set[str], set[str]]:
        """Entries for every path whose versions differ; returns the deleted paths whose
        rename matters to the merge, per side (relevant_sources)."""
        base, ours, theirs = self.trees
        files = self.files
        changed: list[str] = []
        for path, version in base.items():
            if ours.get(path) == version and theirs.get(path) == version:
                files[path] = version
            else:
                changed.append(path)
        changed.extend(ours.keys() - base.keys())
        changed.extend(theirs.keys() - base.keys() - ours.keys())
        visited = self.visited
        visited.update(directories(changed))
        trees = self.trees
        self.changed = changed
        self._unchanged_dirs = directories(files)  # directories on all three sides
        self.noncanonical = bool({v[0] for v in base.values()} - _CANONICAL) or any(
            trees[i][p][0] not in _CANONICAL for p in changed for i in (1, 2) if p in trees[i]
        )
        if self.noncanonical:
            # Unchanged files in a directory ort walks into are read (and their modes made
            # canonical); those in untouched directories keep their tree entries as they are.
            for path in [p for p in files if _dirname(p) in visited]:
                files[path] = _canon(files[path])

        relevant: tuple[set[str], set[str]] = (set(), set())
        canon = _canon if self.noncanonical else None
        for path in changed:
            o, a, b = base.get(path), ours.get(path), theirs.get(path)
            if o is not None and a is not None and b is not None and canon is None:
                # A file on all three sides (the common case): no directory is at its path.
                if a in (o, b):
                    files[path] = b
                    continue
                if b == o:
                    files[path] = a
                    continue
                self.infos[path] = _Info(path, [o, a, b], 7, 0, 0)
                continue
            stages: list[FileVersion | None] = [o, a, b]
            filemask = dirmask = 0
            for i in range(3):
                stage = stages[i]
                if stage is not None:
                    if canon is not None:
                        stages[i] = canon(stage)
                    filemask |= 1 << i
            if path in visited:  # also a directory somewhere: a directory/file conflict
                for i in range(3):
                    if path in self.dirs(i):
                        stages[i] = _DIR
                        dirmask |= 1 << i
            o, a, b = stages
            side1_matches = a is not None and o is not None and a == o
            side2_matches = b is not None and o is not None and b == o
            sides_match = a is not None and b is not None and a == b
            if side1_matches and side2_matches:
                files[path] = o  # type: ignore[assignment]  # equal once made canonical
                continue
            if filemask == 7:
                if sides_match or side2_matches:
                    files[path] = a  # type: ignore[assignment]
                    continue
                if side1_matches:
                    files[path] = b  # type: ignore[assignment]
                    continue
            match_mask = 3 if side1_matches else 5 if side2_matches else 6 if sides_match else 0
            if filemask & 1:
                # A deletion on a side matters when the other side did not keep the file as is.
                for side in (1, 2):
                    if not filemask & (1 << side) and not match_mask & filemask:
                        relevant[side - 1].add(path)
            if dirmask:
                match_mask &= filemask
            self.infos[path] = _Info(path, stages, filemask, dirmask, match_mask)
        for directory in visited:
            if directory and directory not in self.infos:
                dirmask = sum(1 << i for i in range(3) if directory in self.dirs(i))
                self.infos[directory] = _Info(directory, [None, None, None], 0, dirmask, 0)
        return relevant

    def dirs_removed(self, side: int) -> tuple[dict[str, int], set[str]]:
        """collect_rename_info's dirs_removed for `side` (1 or 2) with ort's relevance, and the
        paths deleted there whose location matters (RELEVANT_LOCATION).

        A directory of the base that `side` removed is walked with dir_rename_mask set to the
        other side; when the other side added a file right in it, the mask becomes 0x07 there
        and below: the directory is RELEVANT_FOR_SELF, those below it RELEVANT_FOR_ANCESTOR
        (or SELF when the other side added into them too), and every path this side deleted
        in that region becomes a rename source that matters for its location."""
        other = 3 - side
        base, other_tree = self.trees[0], self.trees[other]
        removed = self.dirs(0) - self.dirs(side)
        if not removed:
            return {}, set()
        added_in: set[str] = set()  # directories the other side added files right into
        for path in other_tree.keys() - base.keys():
            added_in.add(_dirname(path))
        other_dirs = self.dirs(other)
        activated = {d for d in removed if d in added_in and d in other_dirs}
        self.activated |= activated

        def in_region(directory: str) -> bool:
            while directory:
                if directory in activated:
                    return True
                directory = _dirname(directory)
            return False

        relevance: dict[str, int] = {}
        for directory in removed:
            if in_region(directory):
                self_relevant = directory in added_in
                relevance[directory] = _RELEVANT_FOR_SELF if self_relevant else 1
            else:
                relevance[directory] = _NOT_RELEVANT
        located: set[str] = set()
        if activated:
            for path in base.keys() - self.trees[side].keys():
                if in_region(_dirname(path)):
                    located.add(path)
        return relevance, located

    # ---- 2. renames ----

    def renames(self, relevant: tuple[set[str], set[str]]) -> None:
        base = self.trees[0]
        removed_dirs: list[dict[str, int]] = [{}, {}, {}]
        location_only: list[set[str]] = [set(), set(), set()]
        for side in (1, 2):
            relevance, located = self.dirs_removed(side)
            removed_dirs[side] = relevance
            location_only[side] = located - relevant[side - 1]
            relevant[side - 1].update(located)
        if not relevant[0] and not relevant[1]:
            return  # possible_renames: no rename matters, none is looked for
        found: list[dict[str, str]] = [{}, {}, {}]
        for side in (1, 2):
            if relevant[side - 1]:
                found[side] = detect_renames(
                    base,
                    self.trees[side],
                    self._read,
                    relevant_sources=relevant[side - 1],
                    location_sources=location_only[side],
                    dirs_removed=removed_dirs[side],
                )
        dir_renames: list[dict[str, str]] = [{}, {}, {}]
        if not self.depth:
            for side in (1, 2):
                dir_renames[side] = self.provisional_dir_renames(found[side], removed_dirs[side])
            for directory in dir_renames[1].keys() & dir_renames[2].keys():
                del dir_renames[1][directory], dir_renames[2][directory]

        pairs: list[list[_Pair]] = [[], [], []]
        for side in (1, 2):
            sources = {new: old for old, new in found[side].items()}
            for path in sorted(self.trees[side].keys() - base.keys()):
                old = sources.get(path)
                pairs[side].append(_Pair(old or path, path, side, old is not None))
        collisions: list[dict[str, _Collision]] = [{}, {}, {}]
        for side in (1, 2):
            collisions[side] = _collisions(dir_renames[3 - side], pairs[side])
        combined: list[_Pair] = []
        for side in (1, 2):
            combined.extend(self.collect_renames(side, pairs[side], dir_renames, collisions))
        combined.sort(key=lambda pair: pair.one)  # stable: side 1 before side 2
        self.process_renames(combined)

    def provisional_dir_renames(
        self, renames: dict[str, str], relevance: dict[str, int]
    ) -> dict[str, str]:
        """update_dir_rename_counts for every rename of one side, the counts of directories
        whose rename is not relevant dropped (cleanup_dir_rename_info), then
        get_provisional_directory_renames: old directory -> the new one most of its files went
        to; a tie for the most is a "directory rename split" conflict."""
        counts: dict[str, dict[str, int]] = {}
        for old, new in renames.items():
            _count_dir_rename(counts, relevance, old, new)
        out: dict[str, str] = {}
        for source in sorted(counts):
            if not relevance.get(source, _NOT_RELEVANT):
                continue
            per_dir = counts[source]
            best = max(per_dir.values())
            winners = [d for d, n in per_dir.items() if n == best]
            if len(winners) > 1:
                message = (
                    f"CONFLICT (directory rename split): Unclear where to rename {source} to; "
                    "it was renamed to multiple other directories, with no destination getting "
                    "a majority of the files."
                )
                self.messages.append(message)
                self.other_conflicts.append(message)
            else:
                out[source] = winners[0]
        return out

    def collect_renames(
        self,
        side: int,
        pairs: list[_Pair],
        dir_renames: list[dict[str, str]],
        collisions: list[dict[str, _Collision]],
    ) -> list[_Pair]:
        kept: list[_Pair] = []
        for pair in pairs:
            new_path = self.check_for_directory_rename(
                pair.two, side, dir_renames[3 - side], dir_renames[side], collisions
            )
            if not pair.renamed and new_path is None:
                continue
            if new_path is not None:
                self.apply_directory_rename(pair, new_path)
            kept.append(pair)
        return kept

    def check_for_directory_rename(
        self,
        path: str,
        side: int,
        dir_renames: dict[str, str],
        exclusions: dict[str, str],
        collisions: list[dict[str, _Collision]],
    ) -> str | None:
        if not dir_renames or path in collisions[3 - side]:
            return None
        found = _check_dir_renamed(path, dir_renames)
        if found is None:
            return None
        old_dir, new_dir = found
        if new_dir in exclusions:
            self.messages.append(
                f"WARNING: Avoiding applying {old_dir} -> {new_dir} rename to {path}, because "
                f"{new_dir} itself was renamed."
            )
            return None
        new_path = _apply_dir_rename(old_dir, new_dir, path)
        collision = collisions[side][new_path]
        listed = ", ".join(collision.sources)
        if collision.reported:
            problem = ""
        elif self.path_in_way(new_path, 1 << side):
            collision.reported = True
            problem = (
                f"CONFLICT (implicit dir rename): Existing file/dir at {new_path} in the way of "
                f"implicit directory rename(s) putting the following path(s) there: {listed}."
            )
        elif len(collision.sources) > 1:
            collision.reported = True
            problem = (
                f"CONFLICT (implicit dir rename): Cannot map more than one path to {new_path}; "
                f"implicit directory renames tried to put these paths there: {listed}"
            )
        else:
            return new_path
        if problem:
            self.messages.append(problem)
        self.other_conflicts.append(problem or f"implicit dir rename of {path}")
        return None

    def apply_directory_rename(self, pair: _Pair, new_path: str) -> None:
        """apply_directory_rename_modifications: the entry at the added (or renamed-to) path
        moves to `new_path`, marked as a path conflict."""
        old_path = pair.two
        info = self.infos[old_path]
        missing: list[str] = []
        current = new_path
        while True:
            slash = current.rfind("/")
            if slash < 0:
                break
            parent = current[:slash]
            if self.in_paths(parent):
                break
            missing.append(parent)
            current = parent
        for directory in reversed(missing):
            self.infos[directory] = _Info(directory, [None, None, None], 0, info.filemask, 0)
            self.visited.add(directory)
        if not info.dirmask:
            del self.infos[old_path]
            self.removed.add(old_path)
        else:
            # A directory stays at the old path: the file part moves, the directory stays.
            moved = info.copy()
            moved.dirmask = 0
            moved.stages[1] = None  # as ort does (it clears stage 1 whichever side it was)
            moved.df_conflict = False
            info.filemask = 0
            info.clean = True
            for i in range(3):
                if not info.dirmask & (1 << i):
                    info.stages[i] = None
            info = moved
        with_new_path = self.branch1 if info.filemask == 2 else self.branch2
        with_dir_rename = self.branch2 if info.filemask == 2 else self.branch1
        existing = self.infos.get(new_path)
        if existing is None:
            self.infos[new_path] = info
            self.removed.discard(new_path)
        else:
            existing.filemask |= info.filemask
            if existing.dirmask:
                existing.df_conflict = True
            index = info.filemask >> 1
            existing.pathnames[index] = info.pathnames[index]
            existing.stages[index] = info.stages[index]
            info = existing
        info.path_conflict = True
        if pair.renamed:
            what = f"{pair.one} renamed to {old_path} in {with_new_path}"
        else:
            what = f"{old_path} added in {with_new_path}"
        self.messages.append(
            f"CONFLICT (file location): {what}, inside a directory that was renamed in "
            f"{with_dir_rename}, suggesting it should perhaps be moved to {new_path}."
        )
        pair.two = new_path

    def process_renames(self, renames: list[_Pair]) -> None:
        infos = self.infos
        i = 0
        while i < len(renames):
            pair = renames[i]
            i += 1
            old_info = infos.get(pair.one)
            new_info = infos.get(pair.two)
            if old_info is None or old_info.clean or new_info is None:
                continue
            old_path, new_path = pair.one, pair.two
            if i < len(renames) and renames[i].one == old_path:
                other_new = renames[i].two
                i += 1  # both renames handled here
                self._rename_rename(old_path, new_path, other_new)
                continue
            target = pair.side
            other = 3 - target
            source_deleted = old_info.filemask == 1
            collision = bool(new_info.filemask & (1 << other))
            type_changed = not source_deleted and (
                _kind(_mode(old_info.stages[other])) == S_IFREG
            ) != (_kind(_mode(new_info.stages[target])) == S_IFREG)
            if type_changed and collision:
                collision = False
            rename_branch = self.branch1 if target == 1 else self.branch2
            delete_branch = self.branch2 if target == 1 else self.branch1
            if collision and not source_deleted:
                # rename/add or rename/rename(2to1): the rename's merge result meets the
                # other side's file at the new path (merged in process_entry, two-way).
                names = [old_path, old_path, old_path]
                names[target] = new_path
                merged, clean, _ = self.content_merge(
                    old_path,
                    infos[names[0]].stages[0],
                    infos[names[1]].stages[1],
                    infos[names[2]].stages[2],
                    names,
                    1 + 2 * self.depth,
                )
                new_info.stages[target] = merged
                if not clean:
                    self.messages.append(
                        f"CONFLICT (rename involved in collision): rename of {old_path} -> "
                        f"{new_path} has content conflicts AND collides with another path; "
                        "this may result in nested conflict markers."
                    )
            elif collision and source_deleted:
                new_info.path_conflict = True
                self.messages.append(
                    f"CONFLICT (rename/delete): {old_path} renamed to {new_path} in "
                    f"{rename_branch}, but deleted in {delete_branch}."
                )
            else:
                new_info.stages[0] = old_info.stages[0]
                new_info.filemask |= 1
                new_info.pathnames[0] = old_path
                if type_changed:
                    old_info.stages[0] = None
                    old_info.filemask &= 6
                elif source_deleted:
                    new_info.path_conflict = True
                    self.messages.append(
                        f"CONFLICT (rename/delete): {old_path} renamed to {new_path} in "
                        f"{rename_branch}, but deleted in {delete_branch}."
                    )
                else:
                    new_info.stages[other] = old_info.stages[other]
                    new_info.filemask |= 1 << other
                    new_info.pathnames[other] = old_path
            if not type_changed:
                old_info.result = None
                old_info.clean = True

    def _rename_rename(self, old_path: str, new1: str, new2: str) -> None:
        infos = self.infos
        base, side1, side2 = infos[old_path], infos[new1], infos[new2]
        if new1 == new2:  # rename/rename(1to1): both sides made the same rename
            side1.stages[0] = base.stages[0]
            side1.filemask |= 1
            base.result = None
            base.clean = True
            return
        merged, clean, text = self.content_merge(
            old_path,
            base.stages[0],
            side1.stages[1],
            side2.stages[2],
            [old_path, new1, new2],
            1 + 2 * self.depth,
        )
        was_binary = not clean and merged == side1.stages[1]
        side1.stages[1] = merged
        side2.stages[2] = side2.stages[2] if was_binary else merged
        side1.merged_text = side2.merged_text = text
        side1.path_conflict = side2.path_conflict = base.path_conflict = True
        self.messages.append(
            f"CONFLICT (rename/rename): {old_path} renamed to {new1} in {self.branch1} and to "
            f"{new2} in {self.branch2}."
        )

    # ---- content ----

    def content_merge(
        self,
        path: str,
        o: FileVersion | None,
        a: FileVersion | None,
        b: FileVersion | None,
        pathnames: list[str],
        extra_marker: int,
    ) -> tuple[FileVersion | None, bool, bytes]:
        """handle_content_merge: (result, clean, merged text when the text merge conflicted).
        A result of mode 0 (None) means the path goes away."""
        assert a is not None and b is not None
        o_mode = _mode(o)
        a_mode, a_oid = a
        b_mode, b_oid = b
        o_oid = o[1] if o is not None else None
        clean = True
        if a_mode in (b_mode, o_mode):
            mode = b_mode
        else:
            mode = a_mode
            clean = b_mode == o_mode
        if a_oid in (b_oid, o_oid):
            return (mode, b_oid), clean, b""
        if b_oid == o_oid:
            return (mode, a_oid), clean, b""
        kind = _kind(a_mode)
        two_way = _kind(o_mode) != kind
        if kind == S_IFREG:
            base_data = b"" if two_way or o is None else self._read(o[1])
            text, ok, markers = self._merge_text(
                base_data, self._read(a_oid), self._read(b_oid), pathnames, extra_marker
            )
            oid = self._store(text)
            return (mode, oid), clean and ok, text if markers else b""
        if kind == S_IFGITLINK:
            # merge_submodule cannot look into the submodule: ours (the base inside a virtual
            # merge base), not clean.
            if self.depth:
                if two_way:
                    return (o if o_mode else None), False, b""
                return (mode, o_oid or b""), False, b""
            return (mode, a_oid), False, b""
        if kind == S_IFLNK:
            if self.depth:
                return (o if o_mode else None), False, b""
            if self.favor == Favor.THEIRS:
                return (mode, b_oid), clean, b""
            return (mode, a_oid), clean and self.favor == Favor.OURS, b""
        raise ValueError(f"unsupported object type in the tree: {a_mode:06o} for {path}")

    def _merge_text(
        self,
        base: bytes,
        ours: bytes,
        theirs: bytes,
        pathnames: list[str],
        extra_marker: int,
    ) -> tuple[bytes, bool, bool]:
        """ll_merge: (result, clean, whether the result holds conflict markers)."""
        if (
            max(len(base), len(ours), len(theirs)) > MAX_TEXT_MERGE
            or is_binary(base)
            or is_binary(ours)
            or is_binary(theirs)
        ):
            # ll_binary_merge: a virtual base takes the common version, a final merge takes
            # ours (or the side the strategy favours, which is then clean).
            if self.depth:
                return base, True, False
            if self.favor == Favor.THEIRS:
                return theirs, True, False
            return ours, self.favor == Favor.OURS, False
        if pathnames[0] == pathnames[1] == pathnames[2]:
            labels = (self.ancestor, self.branch1, self.branch2)
        else:
            labels = (
                f"{self.ancestor}:{pathnames[0]}",
                f"{self.branch1}:{pathnames[1]}",
                f"{self.branch2}:{pathnames[2]}",
            )
        try:
            result = merge_file(
                base,
                ours,
                theirs,
                base_label=labels[0],
                ours_label=labels[1],
                theirs_label=labels[2],
                favor=Favor.NORMAL if self.depth else self.favor,
                marker_size=7 + extra_marker,
            )
        except XDiffError as exc:
            # git gives up on the whole merge here too ("failure to merge").
            path = pathnames[1]
            raise FailedPrecondition(f"git's line merge cannot merge {path}: {exc}") from None
        return result.content, result.conflicts == 0, result.conflicts > 0

    # ---- 3. process_entries ----

    def record(self, path: str, info: _Info) -> None:
        if info.result is None:
            return
        self.files[path] = info.result
        occupied = self._occupied
        if occupied is not None:
            directory = _dirname(path)
            while directory and directory not in occupied:
                occupied.add(directory)
                directory = _dirname(directory)

    def directory_holds_files(self, path: str) -> bool:
        """Whether the merged tree has anything under `path/` (write_completed_directory gave
        the directory a tree): asked once every entry below it was processed."""
        if self._occupied is None:
            self._occupied = directories(self.files)
        return path in self._occupied

    def process_entries(self) -> None:
        order = sorted(self.infos, key=lambda p: p + "/", reverse=True)
        for path in order:
            info = self.infos.get(path)
            if info is None:
                continue
            if info.clean:
                self.record(path, info)
            else:
                self.process_entry(path, info)

    def process_entry(self, path: str, ci: _Info) -> None:
        df_file_index = 0
        if ci.dirmask and ci.filemask == 0:
            return  # a directory: its files are entries of their own
        if ci.df_conflict and not self.directory_holds_files(path):
            # The directory merged to nothing: the file can stay.
            ci.df_conflict = False
            ci.match_mask &= ~ci.dirmask
            ci.dirmask = 0
            for i in range(3):
                if not ci.filemask & (1 << i):
                    ci.stages[i] = None
        elif ci.df_conflict:
            if ci.filemask == 1:
                ci.filemask = 0
                return
            moved = ci.copy()
            moved.match_mask &= ~moved.dirmask
            moved.dirmask = 0
            for i in range(3):
                if not moved.filemask & (1 << i):
                    moved.stages[i] = None
            df_file_index = 2 if ci.dirmask & 2 else 1
            branch = self.branch1 if df_file_index == 1 else self.branch2
            old_path = path
            path = self.unique_path(path, branch)
            self.infos[path] = moved
            self.messages.append(
                f"CONFLICT (file/directory): directory in the way of {old_path} from {branch}; "
                f"moving it to {path} instead."
            )
            ci.filemask = 0
            ci = moved

        o, a, b = ci.stages
        if ci.match_mask:
            ci.clean = not ci.df_conflict and not ci.path_conflict
            if ci.match_mask == 6:
                ci.result = a
            else:
                side = 2 if (7 & ~ci.match_mask) == 4 else 1
                ci.result = ci.stages[side]
                if ci.result is None:
                    ci.clean = True
        elif ci.filemask >= 6 and _kind(_mode(a)) != _kind(_mode(b)):
            path = self._distinct_types(path, ci)
        elif ci.filemask >= 6:
            merged, clean, text = self.content_merge(path, o, a, b, ci.pathnames, self.depth * 2)
            ci.clean = clean and not ci.df_conflict and not ci.path_conflict
            ci.result = merged if _mode(merged) else None
            if text:
                ci.merged_text = text
            if clean and ci.df_conflict:
                ci.filemask = 1 << df_file_index
                ci.stages[df_file_index] = merged
            if not clean:
                reason = "add/add" if ci.filemask == 6 else "content"
                if _kind(_mode(merged)) == S_IFGITLINK:
                    reason = "submodule"
                self.messages.append(f"CONFLICT ({reason}): Merge conflict in {path}")
        elif ci.filemask in (3, 5):
            side = 2 if ci.filemask == 5 else 1
            ci.result = ci.stages[0 if self.depth else side]
            ci.clean = False
            if not (ci.path_conflict and o is not None and o == ci.stages[side]):
                modify_branch = self.branch1 if side == 1 else self.branch2
                delete_branch = self.branch2 if side == 1 else self.branch1
                self.messages.append(
                    f"CONFLICT (modify/delete): {path} deleted in {delete_branch} and modified "
                    f"in {modify_branch}.  Version {modify_branch} of {path} left in tree."
                )
        elif ci.filemask in (2, 4):
            ci.result = ci.stages[2 if ci.filemask == 4 else 1]
            ci.clean = not ci.df_conflict and not ci.path_conflict
        elif ci.filemask == 1:
            ci.result = None
            ci.clean = not ci.path_conflict
        if ci.result is not None and not ci.result[0]:
            ci.result = None
        if not ci.clean:
            self.conflicted[path] = ci
        self.record(path, ci)

    def _distinct_types(self, path: str, ci: _Info) -> str:
        """Two different kinds of thing (file, symlink, submodule) on the two sides; returns
        the path processing continues with."""
        o, a, b = ci.stages
        ci.clean = False
        if self.depth:
            ci.result = o if _mode(o) else None
            return path
        a_mode, b_mode, o_mode = _mode(a), _mode(b), _mode(o)
        rename_a = _kind(a_mode) == S_IFREG
        rename_b = not rename_a and _kind(b_mode) == S_IFREG
        if not rename_a and not rename_b:
            rename_a = rename_b = True
        a_path = self.unique_path(path, self.branch1) if rename_a else None
        b_path = self.unique_path(path, self.branch2) if rename_b else path
        if rename_a and rename_b:
            self.messages.append(
                f"CONFLICT (distinct types): {path} had different types on each side; renamed "
                "both of them so each can be recorded somewhere."
            )
        else:
            self.messages.append(
                f"CONFLICT (distinct types): {path} had different types on each side; renamed "
                "one of them so each can be recorded somewhere."
            )
        theirs = ci.copy()
        theirs.result = b
        theirs.stages[1] = None
        theirs.filemask = 5
        if _kind(b_mode) != _kind(o_mode):
            theirs.stages[0] = None
            theirs.filemask = 4
        ci.result = a
        ci.stages[2] = None
        ci.filemask = 3
        if _kind(a_mode) != _kind(o_mode):
            ci.stages[0] = None
            ci.filemask = 2
        if a_path is not None:
            self.infos[a_path] = ci
        self.infos[b_path] = theirs
        if rename_a and rename_b:
            del self.infos[path]
            self.removed.add(path)
        self.conflicted[b_path] = theirs
        self.record(b_path, theirs)
        return a_path if a_path is not None else path

    # ---- all of it ----

    def keep_trivialdirectories(self, relevant: tuple[set[str], set[str]]) -> None:
        """The tree entries of directories ort never walks into, as they are.

        ort defers a directory that one side left as the base has it (or that only one side
        has, new), and takes the other side's tree for it whole when no rename on that side
        matters (no deletion there is relevant), unless directory rename detection needs its
        contents (dir_rename_mask 0x07). Walking it instead gives the same files, but with
        modes made canonical (tree-walk.c canon_mode), so this matters only to trees that hold
        a mode such as 100664."""
        base = self.trees[0]
        differs: list[set[str]] = [set(), set(), set()]
        for path in self.changed:
            version = base.get(path)
            for side in (1, 2):
                if self.trees[side].get(path) != version:
                    directory = _dirname(path)
                    while directory and directory not in differs[side]:
                        differs[side].add(directory)
                        directory = _dirname(directory)

        def in_region(directory: str) -> bool:
            while directory:
                if directory in self.activated:
                    return True
                directory = _dirname(directory)
            return False

        trivial: dict[str, int] = {}
        for directory in sorted(self.visited - {""}):
            parent = _dirname(directory)
            if any(parent == d or parent.startswith(d + "/") for d in trivial):
                continue
            if in_region(parent):
                continue
            present = [directory in self.dirs(i) for i in range(3)]
            if present[0] and present[1] and directory not in differs[1]:
                side = 2
            elif present[0] and present[2] and directory not in differs[2]:
                side = 1
            elif not present[0] and present[1] != present[2]:
                if any(directory in tree for tree in self.trees):
                    continue
                side = 1 if present[1] else 2
            else:
                continue
            if not relevant[side - 1]:
                trivial[directory] = side
        for directory, side in trivial.items():
            prefix = directory + "/"
            for path in [p for p in self.files if p.startswith(prefix)]:
                del self.files[path]
            for path, version in self.trees[side].items():
                if path.startswith(prefix):
                    self.files[path] = version

    def run(self) -> TreeMerge:
        relevant = self.collect()
        self.renames(relevant)
        self.process_entries()
        if self.noncanonical:
            self.keep_trivialdirectories(relevant)
        conflicts = []
        for path in sorted(self.conflicted):
            info = self.conflicted[path]
            if not info.filemask:
                continue
            o, a, b = (info.stages[i] if info.filemask & (1 << i) else None for i in range(3))
            conflicts.append(Conflict(path, _CODES[info.filemask], o, a, b, info.merged_text))
        return TreeMerge(self.files, conflicts, self.other_conflicts, self.messages)


def _count_dir_rename(
    counts: dict[str, dict[str, int]], relevance: dict[str, int], old: str, new: str
) -> None:
    """diffcore-rename.c update_dir_rename_counts, with ort's dirs_removed: "a/b/c/d/e/foo.c"
    -> "a/b/some/thing/else/e/foo.c" counts a/b/c/d/e -> a/b/some/thing/else/e always, and
    a/b/c/d -> a/b/some/thing/else when a/b/c/d is RELEVANT_FOR_SELF, but never a/b/c (its last
    component differs)."""
    old_dir, new_dir = old, new
    first = True
    while True:
        old_part = old_dir[old_dir.rfind("/") + 1 :]
        old_dir = _dirname(old_dir)
        if old_dir not in relevance:
            break
        new_part = new_dir[new_dir.rfind("/") + 1 :]
        new_dir = _dirname(new_dir)
        if not first and old_part != new_part:
            break
        flag = relevance[old_dir]
        if flag == _RELEVANT_FOR_SELF or first:
            per_dir = counts.setdefault(old_dir, {})
            per_dir[new_dir] = per_dir.get(new_dir, 0) + 1
        first = False
        if flag == _NOT_RELEVANT or not old_dir or not new_dir:
            break


def _check_dir_renamed(path: str, dir_renames: dict[str, str]) -> tuple[str, str] | None:
    """The deepest directory above `path` that was renamed, and where to."""
    directory = _dirname(path)
    while directory:
        new_dir = dir_renames.get(directory)
        if new_dir is not None:
            return directory, new_dir
        directory = _dirname(directory)
    return None


def _apply_dir_rename(old_dir: str, new_dir: str, path: str) -> str:
    rest = path[len(old_dir) + 1 :]
    return f"{new_dir}/{rest}" if new_dir else rest


def _collisions(dir_renames: dict[str, str], pairs: list[_Pair]) -> dict[str, _Collision]:
    """compute_collisions: where the other side's directory renames would put this side's
    added and renamed paths, and which of them each place would receive."""
    out: dict[str, _Collision] = {}
    if not dir_renames:
        return out
    for pair in pairs:
        found = _check_dir_renamed(pair.two, dir_renames)
        if found is None:
            continue
        new_path = _apply_dir_rename(found[0], found[1], pair.two)
        collision = out.setdefault(new_path, _Collision())
        if pair.two not in collision.sources:
            collision.sources.append(pair.two)
            collision.sources.sort()
    return out


def merge_trees(
    base: FileMap,
    ours: FileMap,
    theirs: FileMap,
    read_blob: BlobReader,
    store_blob: BlobWriter,
    *,
    ours_label: str = "ours",
    theirs_label: str = "theirs",
    base_label: str = "base",
    strategy: Strategy = Strategy.ORT,
    depth: int = 0,
) -> TreeMerge:
    """The merge of `ours` and `theirs` against `base`, as `git merge-tree --write-tree` makes
    it: the merged files (conflicted ones as git leaves them) and the conflicts, by path."""
    merger = _OrtMerge(
        (base, ours, theirs),
        read_blob,
        store_blob,
        (base_label, ours_label, theirs_label),
        FAVOR[strategy],
        depth,
    )
    return merger.run()
