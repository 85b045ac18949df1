"""Three-way merge of file contents and of flattened trees (pure functions, no storage).

Line merge follows diff3: each side's changes against the base are hunks in base coordinates;
hunks of the two sides that overlap or touch conflict unless they are the same change.
"""

from collections.abc import Callable
from difflib import SequenceMatcher

from govc.core.objects import FileMap

Hunk = tuple[int, int, list[bytes]]  # base[start:end] replaced by lines
BlobReader = Callable[[bytes], bytes]  # blob id -> content
BlobWriter = Callable[[bytes], bytes]  # content -> blob id (stored)


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:8000]


def _hunks(base: list[bytes], other: list[bytes]) -> list[Hunk]:
    matcher = SequenceMatcher(None, base, other, autojunk=False)
    return [
        (i1, i2, other[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"
    ]


def _lines(data: bytes) -> list[bytes]:
    """Lines as git sees them: ended by \\n only (a lone \\r stays inside its line)."""
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def merge_lines(base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """The merged text, or None if the two sides' changes conflict."""
    base_lines = _lines(base)
    ours_hunks = _hunks(base_lines, _lines(ours))
    theirs_hunks = _hunks(base_lines, _lines(theirs))
    merged: list[bytes] = []
    pos = 0  # next base line not yet emitted
    i = j = 0
    while i < len(ours_hunks) or j < len(theirs_hunks):
        # Take the earliest hunk, then absorb every hunk of either side that overlaps or
        # touches the growing region: if both sides contributed, it must be the same change.
        candidates = []
        if i < len(ours_hunks):
            candidates.append((ours_hunks[i][0], 0))
        if j < len(theirs_hunks):
            candidates.append((theirs_hunks[j][0], 1))
        _, side = min(candidates)
        first = ours_hunks[i] if side == 0 else theirs_hunks[j]
        start, end = first[0], first[1]
        mine: list[Hunk] = []
        other: list[Hunk] = []
        grew = True
        while grew:
            grew = False
            while (
                i < len(ours_hunks)
                and ours_hunks[i][0] <= end
                and (ours_hunks[i][0] >= start or ours_hunks[i][1] >= start)
            ):
                mine.append(ours_hunks[i])
                end = max(end, ours_hunks[i][1])
                i += 1
                grew = True
            while (
                j < len(theirs_hunks)
                and theirs_hunks[j][0] <= end
                and (theirs_hunks[j][0] >= start or theirs_hunks[j][1] >= start)
            ):
                other.append(theirs_hunks[j])
                end = max(end, theirs_hunks[j][1])
                j += 1
                grew = True
        merged.extend(base_lines[pos:start])
        if mine and other:
            ours_text = _apply(base_lines, start, end, mine)
            theirs_text = _apply(base_lines, start, end, other)
            if ours_text != theirs_text:
                return None
            merged.extend(ours_text)
        else:
            merged.extend(_apply(base_lines, start, end, mine or other))
        pos = end
    merged.extend(base_lines[pos:])
    return b"".join(merged)


def _apply(base: list[bytes], start: int, end: int, hunks: list[Hunk]) -> list[bytes]:
    """base[start:end] with `hunks` (sorted, within the range) applied."""
    out: list[bytes] = []
    pos = start
    for h_start, h_end, lines in hunks:
        out.extend(base[pos:h_start])
        out.extend(lines)
        pos = h_end
    out.extend(base[pos:end])
    return out


def merge_trees(
    base: FileMap,
    ours: FileMap,
    theirs: FileMap,
    read_blob: BlobReader,
    store_blob: BlobWriter,
) -> tuple[FileMap, list[str]]:
    """Merged files and the sorted list of conflicting paths (empty when clean)."""
    merged: FileMap = {}
    conflicts: list[str] = []
    for path in sorted(base.keys() | ours.keys() | theirs.keys()):
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if o == t or b == t:
            result = o
        elif b == o:
            result = t
        elif o is None or t is None or b is None:
            conflicts.append(path)  # modify/delete, or added on both sides differently
            continue
        else:
            base_data, ours_data, theirs_data = read_blob(b[1]), read_blob(o[1]), read_blob(t[1])
            if is_binary(base_data) or is_binary(ours_data) or is_binary(theirs_data):
                conflicts.append(path)
                continue
            text = merge_lines(base_data, ours_data, theirs_data)
            mode = o[0] if o[0] != b[0] else t[0]
            if text is None or (o[0] != b[0] and t[0] != b[0] and o[0] != t[0]):
                conflicts.append(path)
                continue
            result = (mode, store_blob(text))
        if result is not None:
            merged[path] = result
    # A path cannot be a file on one side and a directory on the other.
    for path in list(merged):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in merged:
                conflicts.append(prefix)
    return merged, sorted(set(conflicts))
