"""Three-way merge of trees as git's default strategy (ort) makes it (pure functions, no storage).

Per path, as merge-ort.c's process_entry decides: when two of base, ours and theirs agree the
third wins; files changed on both sides are merged line by line with git's own algorithm
(`govc.core.xdiff`, histogram diff, level ZEALOUS, as ll-merge runs it); binary files, mode
clashes, modify/delete and add/add are conflicts exactly where git reports them. Renames are
detected on each side as ort detects them (`govc.core.renames`), so a file moved on one side
and edited on the other merges into the new path. Several merge bases (a criss-cross history)
are merged first into a virtual base by the caller (`VersionControl`), as git does; `depth`
says how deep in that recursion a merge is, which changes what a conflict leaves behind.

Not modelled: directory rename detection (ort's default reports a file added into a directory
the other side renamed as a conflict), submodule merging, and merge attributes.
"""

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from govc.core.objects import FileMap
from govc.core.renames import detect_renames
from govc.core.xdiff import Favor, merge_file

BlobReader = Callable[[bytes], bytes]  # blob id -> content
BlobWriter = Callable[[bytes], bytes]  # content -> blob id (stored)
FileVersion = tuple[int, bytes]  # (mode, blob id)

EMPTY_BLOB = bytes.fromhex("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")
BINARY_PROBE = 8000  # git looks for a NUL in this many leading bytes
MAX_TEXT_MERGE = 1024 * 1024 * 1023  # git's MAX_XDIFF_SIZE: bigger files merge as binary


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
    return b"\0" in data[:BINARY_PROBE]


def _kind(mode: int) -> int:
    return mode & 0o170000  # regular file, symlink or gitlink


@dataclass(frozen=True)
class Conflict:
    """A conflicted path: git's porcelain code for it, the three sides, and the file as the
    merge leaves it (with markers; empty for binary files and delete/modify)."""

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

    @property
    def clean(self) -> bool:
        return not self.conflicts


@dataclass(frozen=True)
class _Stages:
    """One path's three versions and the paths each came from (they differ after a rename)."""

    base: FileVersion | None
    ours: FileVersion | None
    theirs: FileVersion | None
    paths: tuple[str, str, str]


class _TreeMerger:
    def __init__(
        self,
        read_blob: BlobReader,
        store_blob: BlobWriter,
        labels: tuple[str, str, str],
        favor: Favor,
        depth: int,
    ) -> None:
        self._read = read_blob
        self._store = store_blob
        self._base_label, self._ours_label, self._theirs_label = labels
        self._favor = favor
        self.depth = depth  # 0 for the merge asked for; 1+ inside a virtual merge base
        self.files: FileMap = {}
        self.conflicts: dict[str, Conflict] = {}

    # ---- content ----

    def content_merge(
        self, path: str, s: _Stages, extra_marker: int
    ) -> tuple[FileVersion | None, bool, bytes]:
        """handle_content_merge: (result, clean, merged text when it conflicts)."""
        o, a, b = s.base, s.ours, s.theirs
        assert a is not None and b is not None
        o_mode = o[0] if o else 0
        clean = True
        if a[0] == b[0] or a[0] == o_mode:
            mode = b[0]
        else:
            mode = a[0]
            clean = b[0] == o_mode
        if a[1] == b[1] or (o is not None and a[1] == o[1]):
            return (mode, b[1]), clean, b""
        if o is not None and b[1] == o[1]:
            return (mode, a[1]), clean, b""
        kind = _kind(a[0])
        if kind == 0o100000:
            two_way = o is None or _kind(o[0]) != kind
            base_data = b"" if two_way or o is None else self._read(o[1])
            ours_data, theirs_data = self._read(a[1]), self._read(b[1])
            text, ok = self._merge_text(base_data, ours_data, theirs_data, s.paths, extra_marker)
            oid = self._store(text)
            return (mode, oid), clean and ok, b"" if ok else text
        if kind == 0o120000 and self.depth == 0:  # symlinks: a side, never a mix
            if self._favor == Favor.THEIRS:
                return (mode, b[1]), clean, b""
            return (mode, a[1]), clean and self._favor == Favor.OURS, b""
        # Submodules (not merged here) and, in a virtual base, symlinks: the base version.
        return (o if o is not None else None), False, b""

    def _merge_text(
        self,
        base: bytes,
        ours: bytes,
        theirs: bytes,
        paths: tuple[str, str, str],
        extra_marker: int,
    ) -> tuple[bytes, bool]:
        if (
            max(len(base), len(ours), len(theirs)) > MAX_TEXT_MERGE
            or is_binary(base)
            or is_binary(ours)
            or is_binary(theirs)
        ):
            # ll_binary_merge: a virtual base takes the common version, a final merge takes
            # ours (or the side the strategy favours, which is then clean).
            if self.depth:
                return base, True
            if self._favor == Favor.THEIRS:
                return theirs, True
            return ours, self._favor == Favor.OURS
        if paths[0] == paths[1] == paths[2]:
            labels = (self._base_label, self._ours_label, self._theirs_label)
        else:
            labels = (
                f"{self._base_label}:{paths[0]}",
                f"{self._ours_label}:{paths[1]}",
                f"{self._theirs_label}:{paths[2]}",
            )
        result = merge_file(
            base,
            ours,
            theirs,
            base_label=labels[0],
            ours_label=labels[1],
            theirs_label=labels[2],
            favor=Favor.NORMAL if self.depth else self._favor,
            marker_size=7 + extra_marker,
        )
        return result.content, result.conflicts == 0

    # ---- one path ----

    def process(self, path: str, s: _Stages, renamed: bool = False) -> None:
        """process_entry for one path (after renames have been paired)."""
        o, a, b = s.base, s.ours, s.theirs
        if a == b or o in (a, b):
            result = a if o == b else b
            if result is not None:
                self.files[path] = result
            return
        if a is not None and b is not None and _kind(a[0]) != _kind(b[0]):
            self._distinct_types(path, s)
            return
        if a is not None and b is not None:
            result, clean, merged = self.content_merge(path, s, self.depth * 2)
            if result is not None:
                self.files[path] = result
            if not clean:
                code = "UU" if o is not None else "AA"
                self.add_conflict(Conflict(path, code, o, a, b, merged))
            return
        # Modified on one side, deleted on the other: the modified version stays (a virtual
        # base keeps the base version).
        kept = a if a is not None else b
        result = o if self.depth else kept
        if result is not None:
            self.files[path] = result
        code = "UD" if a is not None else "DU"
        self.add_conflict(Conflict(path, code, o, a, b))

    def _distinct_types(self, path: str, s: _Stages) -> None:
        o, a, b = s.base, s.ours, s.theirs
        assert a is not None and b is not None
        if self.depth:
            if o is not None:
                self.files[path] = o
            self.add_conflict(Conflict(path, "AA" if o is None else "UU", o, a, b))
            return
        # Each side's version is recorded somewhere: the regular file moves to path~branch.
        move_ours = _kind(a[0]) == 0o100000 or _kind(b[0]) != 0o100000
        move_theirs = _kind(a[0]) != 0o100000
        ours_path = unique_path(path, self._ours_label) if move_ours else path
        theirs_path = unique_path(path, self._theirs_label) if move_theirs else path
        self.files[ours_path] = a
        self.files[theirs_path] = b
        ours_base = o if o is not None and _kind(o[0]) == _kind(a[0]) else None
        theirs_base = o if o is not None and _kind(o[0]) == _kind(b[0]) else None
        self.add_conflict(
            Conflict(ours_path, "UD" if ours_base else "AU", ours_base, a, None),
        )
        self.add_conflict(
            Conflict(theirs_path, "DU" if theirs_base else "UA", theirs_base, None, b),
        )

    def add_conflict(self, conflict: Conflict) -> None:
        self.conflicts[conflict.path] = conflict


def unique_path(path: str, branch: str) -> str:
    """Where ort records a version that cannot stay at `path`: path~branch."""
    return f"{path}~{branch.replace('/', '_')}"


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
    merger = _TreeMerger(
        read_blob, store_blob, (base_label, ours_label, theirs_label), FAVOR[strategy], depth
    )
    # ort pairs a deleted file by similarity only where the rename matters: where the other
    # side changed or deleted it (which changes which renames it finds, as git's do).
    ours_renames = detect_renames(
        base, ours, read_blob, relevant_sources=_changed_elsewhere(base, ours, theirs)
    )
    theirs_renames = detect_renames(
        base, theirs, read_blob, relevant_sources=_changed_elsewhere(base, theirs, ours)
    )
    handled: set[str] = set()

    for old, new in ours_renames.items():
        other = theirs_renames.get(old)
        if other is not None and other != new:
            _rename_rename(merger, base, ours, theirs, old, new, other)
            handled.update((old, new, other))
            continue
        handled.update((old, new))
        if other == new:  # both sides made the same rename
            stages = _Stages(base[old], ours[new], theirs[new], (old, new, new))
        else:
            stages = _Stages(base[old], ours[new], theirs.get(old), (old, new, old))
        _merge_renamed(merger, new, stages, ours, theirs, side=1)
    for old, new in theirs_renames.items():
        if old in handled:
            continue
        handled.update((old, new))
        stages = _Stages(base[old], ours.get(old), theirs[new], (old, old, new))
        _merge_renamed(merger, new, stages, ours, theirs, side=2)

    for path in base.keys() | ours.keys() | theirs.keys():
        if path not in handled:
            merger.process(
                path, _Stages(base.get(path), ours.get(path), theirs.get(path), (path,) * 3)
            )
    _file_directory_clashes(merger, ours_label, theirs_label, ours, theirs)
    return TreeMerge(merger.files, sorted(merger.conflicts.values(), key=lambda c: c.path))


def _changed_elsewhere(base: FileMap, side: FileMap, other: FileMap) -> list[str]:
    """Paths `side` deleted that `other` changed or deleted."""
    return [p for p, version in base.items() if p not in side and other.get(p) != version]


def _merge_renamed(
    merger: _TreeMerger, new: str, s: _Stages, ours: FileMap, theirs: FileMap, side: int
) -> None:
    """A rename on one side (`side` 1 = ours): the file continues at `new`."""
    renamed, other = (s.ours, s.theirs) if side == 1 else (s.theirs, s.ours)
    assert renamed is not None
    occupant = (theirs if side == 1 else ours).get(new)  # the other side added a file at `new`
    if other is None:
        # rename/delete: the renamed version stays, a conflict.
        merger.files[new] = s.base if merger.depth and s.base else renamed
        code = "AU" if side == 1 else "UA"
        merger.add_conflict(
            Conflict(
                new, code, s.base, renamed if side == 1 else None, None if side == 1 else renamed
            )
        )
        if occupant is not None:
            merger.add_conflict(Conflict(new, "AA", None, ours.get(new), theirs.get(new)))
        return
    if occupant is not None and s.paths[1] != s.paths[2]:
        # rename/add: the rename's merge result and the other side's new file, two-way.
        first, clean, merged = merger.content_merge(new, s, 1 + 2 * merger.depth)
        assert first is not None
        pair = (
            _Stages(None, first, occupant, (new,) * 3)
            if side == 1
            else _Stages(None, occupant, first, (new,) * 3)
        )
        result, _, merged = merger.content_merge(new, pair, merger.depth * 2)
        if result is not None:
            merger.files[new] = result
        merger.add_conflict(Conflict(new, "AA", None, pair.ours, pair.theirs, merged))
        return
    result, clean, merged = merger.content_merge(new, s, merger.depth * 2)
    if result is not None:
        merger.files[new] = result
    if not clean:
        merger.add_conflict(Conflict(new, "UU", s.base, s.ours, s.theirs, merged))


def _rename_rename(
    merger: _TreeMerger,
    base: FileMap,
    ours: FileMap,
    theirs: FileMap,
    old: str,
    ours_new: str,
    theirs_new: str,
) -> None:
    """rename/rename(1to2): each side moved the file somewhere else; the merged content goes
    to both places, a conflict."""
    stages = _Stages(base[old], ours[ours_new], theirs[theirs_new], (old, ours_new, theirs_new))
    result, _, merged = merger.content_merge(old, stages, 1 + 2 * merger.depth)
    if merger.depth:
        merger.files[old] = base[old]
        return
    if result is not None:
        merger.files[ours_new] = result
        merger.files[theirs_new] = result
    merger.add_conflict(Conflict(old, "DD", base[old], None, None))
    merger.add_conflict(Conflict(ours_new, "AU", None, ours[ours_new], None, merged))
    merger.add_conflict(Conflict(theirs_new, "UA", None, None, theirs[theirs_new], merged))


def _file_directory_clashes(
    merger: _TreeMerger, ours_label: str, theirs_label: str, ours: FileMap, theirs: FileMap
) -> None:
    """A file where the other side has a directory moves aside to path~branch, a conflict."""
    directories: set[str] = set()
    for path in merger.files:
        slash = path.find("/")
        while slash != -1:
            directories.add(path[:slash])
            slash = path.find("/", slash + 1)
    for path in sorted(directories & merger.files.keys()):
        version = merger.files.pop(path)
        label = ours_label if ours.get(path) == version else theirs_label
        moved = unique_path(path, label)
        merger.files[moved] = version
        in_ours = ours.get(path) == version
        merger.add_conflict(
            Conflict(
                moved,
                "AU" if in_ours else "UA",
                None,
                version if in_ours else None,
                None if in_ours else version,
            )
        )
