"""git's three-way file merge (xdiff's `xdl_merge`), ported to Python so merges agree with git.

This follows git 2.39.5's `xdiff/` (xprepare.c, xdiffi.c, xhistogram.c, xmerge.c and the helpers
of xutils.c they need) step by step: the same classic Myers diff with its cost heuristics and
discarding of unmatched lines, the same histogram diff with its fallback to Myers when a region
holds only lines that repeat too often, the same sliding of change groups (xdl_change_compact,
without the indent heuristic, which no merge turns on), and the same assembly of the merge:
levels, conflict refinement, favor modes, output styles, conflict markers and their CR/LF
choice. Anything less faithful would disagree with git on repetitive text, which is exactly
where diff algorithms differ, and a conflict git would not report is a wrong merge.

Which settings git's own tools use (read in git 2.39.5's sources):

- `git merge`, `git merge-tree --write-tree`, rebase, cherry-pick, revert (strategy "ort",
  merge-ort.c -> ll-merge.c): histogram diff (merge-ort hardcodes it), level ZEALOUS (ll_xdl_merge),
  favor from `-X ours` / `-X theirs` (union through the `merge=union` attribute), style from
  `merge.conflictStyle`, marker size 7 unless the `conflict-marker-size` attribute says otherwise
  (ort widens it by 2 per level of recursion when it merges merge bases into a virtual one).
  The labels are the branch names, with `:<path>` appended when a rename made the three paths
  differ. Those are this module's defaults.
- `git merge -s recursive` (merge-recursive.c): the same through ll-merge, but Myers diff unless
  `-X diff-algorithm=...` (or `-X patience` / `-X histogram`) says otherwise.
- `git merge-file` (builtin/merge-file.c): Myers diff (its xpparam flags are 0) and level
  ZEALOUS_ALNUM; `--ours` / `--theirs` / `--union`, `--diff3` / `--zdiff3` (or
  `merge.conflictStyle` inside a repository), `--marker-size`, and `-L` labels that default to
  the file names.

Callers decide what is text: git merges a file as binary (no line merge at all) when a NUL is in
its first 8000 bytes or it is bigger than MAX_XDIFF_SIZE; that is ll-merge's job, not xdiff's.

Lines are split on "\\n" only (a "\\r" stays part of its line), and a line's "\\n" belongs to it as
in xdiff's records: a last line without one is a different line from the same text with one.
Labels are written as given after a space: an empty label leaves "<<<<<<< " (with the space, as
git 2.39.5 writes it for `-L ""`; newer git drops the space), and None leaves the bare marker.

For speed every line is interned once to an int and the algorithms run on int lists; runs of
equal lines are compared by slices (C speed) rather than one element at a time, and per-line
flags live in bytearrays searched with find(), so the Python-level work grows with the number of
changes rather than with the length of the files. Where a diff provably changes just what lies
between the common head and tail of the two files (see _plain), its search is skipped.
"""

import enum
import re
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import cache
from itertools import compress, count, repeat

__all__ = [
    "Algorithm",
    "Favor",
    "Level",
    "MergeFileResult",
    "Style",
    "XDiffError",
    "merge_file",
]


class Algorithm(enum.Enum):
    """The line diff run between the base and each side (and inside conflicts)."""

    MYERS = "myers"
    HISTOGRAM = "histogram"


class Level(enum.IntEnum):
    """How hard the merge tries to avoid or shrink conflicts (xdiff's XDL_MERGE_* levels)."""

    MINIMAL = 0  # every overlapping change is a conflict
    EAGER = 1  # ... unless both sides made the identical change
    ZEALOUS = 2  # ... and conflicts are shrunk to the lines where the sides really differ
    ZEALOUS_ALNUM = 3  # ... and conflicts separated only by lines without letters/digits join


class Favor(enum.Enum):
    """What a conflict resolves to instead of markers (xdiff's XDL_MERGE_FAVOR_*)."""

    NORMAL = 0
    OURS = 1
    THEIRS = 2
    UNION = 3


class Style(enum.Enum):
    """Conflict output: two sides, or with the base between `|||||||` and `=======`."""

    MERGE = 0
    DIFF3 = 1
    ZDIFF3 = 2


# Plain names for the members merge_file tests on every call (an enum's attribute costs more).
_HISTOGRAM = Algorithm.HISTOGRAM
_MINIMAL, _EAGER, _ZEALOUS = int(Level.MINIMAL), int(Level.EAGER), int(Level.ZEALOUS)
_NORMAL = Favor.NORMAL
_MERGE, _ZDIFF3 = Style.MERGE, Style.ZDIFF3


class XDiffError(Exception):
    """xdiff gave up (git's merge then fails too): a histogram hash chain grew too long."""


@dataclass(frozen=True)
class MergeFileResult:
    """The merged file and how many conflict hunks it contains (0 means a clean merge)."""

    content: bytes
    conflicts: int


# --------------------------------------------------------------------------------------------
# Constants from xdiff (xprepare.c, xdiffi.c, xhistogram.c, xmerge.c).

_KPDIS_RUN = 4
_MAX_EQLIMIT = 1024
_SIMSCAN_WINDOW = 100
_MAX_COST_MIN = 256
_HEUR_MIN_COST = 256
_LINE_MAX = (1 << 63) - 1
_SNAKE_CNT = 20
_K_HEUR = 4
_MAX_CHAIN_LENGTH = 64
_DEFAULT_MARKER_SIZE = 7
_PLAIN_CHECK_MAX = 256  # see _plain and _Lines.distinct

_HIGH_BYTE = bytes([0]) + bytes([2]) * 255  # a count of 256 or more: class 2
_THREE_IS_TWO = bytes([0, 1, 2, 2]) + bytes(252)
_FLIP = bytes([1]) + bytes(255)  # kept (1, 2) or not (0) -> changed flag: only 0 -> 1
_ALNUM = re.compile(rb"[0-9A-Za-z]")  # git's ctype is ASCII-only

# A hunk of an edit script: (start in file 1, start in file 2, count in 1, count in 2).
_Hunk = tuple[int, int, int, int]


def _bogosqrt(n: int) -> int:
    """xdl_bogosqrt: the power of two near sqrt(n) that xdiff uses for its limits."""
    i = 1
    while n > 0:
        n >>= 2
        i <<= 1
    return i


def _hashbits(size: int) -> int:
    """xdl_hashbits: bits of the smallest power of two >= size, at least 1."""
    return max(1, (size - 1).bit_length()) if size > 0 else 1


# --------------------------------------------------------------------------------------------
# Runs of equal lines, measured by comparing slices (C speed) instead of element by element.


def _prefix(a: list[int], i: int, b: list[int], j: int, n: int) -> int:
    """How many of a[i:], b[j:] agree from the start, at most n."""
    k = 0
    while k < n and k < 4:
        if a[i + k] != b[j + k]:
            return k
        k += 1
    step = 8
    while k < n:
        m = min(step, n - k)
        if a[i + k : i + k + m] == b[j + k : j + k + m]:
            k += m
            step <<= 1
            continue
        lo, hi = 0, m  # the first lo agree; the first mismatch is in [lo, hi)
        while hi - lo > 4:
            mid = (lo + hi) >> 1
            if a[i + k + lo : i + k + mid] == b[j + k + lo : j + k + mid]:
                lo = mid
            else:
                hi = mid
        k += lo
        while a[i + k] == b[j + k]:
            k += 1
        return k
    return n


def _suffix(a: list[int], i: int, b: list[int], j: int, n: int) -> int:
    """How many of a[:i], b[:j] agree from the end, at most n."""
    k = 0
    while k < n and k < 4:
        if a[i - 1 - k] != b[j - 1 - k]:
            return k
        k += 1
    step = 8
    while k < n:
        m = min(step, n - k)
        if a[i - k - m : i - k] == b[j - k - m : j - k]:
            k += m
            step <<= 1
            continue
        lo, hi = 0, m
        while hi - lo > 4:
            mid = (lo + hi) >> 1
            if a[i - k - mid : i - k - lo] == b[j - k - mid : j - k - lo]:
                lo = mid
            else:
                hi = mid
        k += lo
        while a[i - 1 - k] == b[j - 1 - k]:
            k += 1
        return k
    return n


# --------------------------------------------------------------------------------------------
# Classic Myers diff (xprepare.c's trimming and discarding, xdiffi.c's xdl_split/xdl_recs_cmp).


def _clean_mmatch(dis: bytes, i: int, s: int, e: int) -> bool:
    """xdl_clean_mmatch: discard a multi-match line sitting in a run of unmatched lines?"""
    if i - s > _SIMSCAN_WINDOW:
        s = i - _SIMSCAN_WINDOW
    if e - i > _SIMSCAN_WINDOW:
        e = i + _SIMSCAN_WINDOW
    rdis0 = 0
    rpdis0 = 1
    r = 1
    while i - r >= s:
        d = dis[i - r]
        if d == 0:
            rdis0 += 1
        elif d == 2:
            rpdis0 += 1
        else:
            break
        r += 1
    if rdis0 == 0:
        return False
    rdis1 = 0
    rpdis1 = 1
    r = 1
    while i + r <= e:
        d = dis[i + r]
        if d == 0:
            rdis1 += 1
        elif d == 2:
            rpdis1 += 1
        else:
            break
        r += 1
    if rdis1 == 0:
        return False
    rdis1 += rdis0
    rpdis1 += rpdis0
    return rpdis1 * _KPDIS_RUN < rpdis1 + rdis1


def _discard(
    seg: list[int], other: Counter[int], nrec: int, dstart: int, rchg: bytearray
) -> tuple[list[int], list[int]]:
    """xdl_cleanup_records for one side: mark lines that cannot match as changed up front and
    return the indexes (xdfile_t.rindex) and ids (xdfile_t.ha) of those that go into the diff
    proper."""
    mlim = min(_bogosqrt(nrec), _MAX_EQLIMIT)
    counts = list(map(other.get, seg, repeat(0)))  # occurrences in the other file
    # dis: 0 no match, 1 a match, 2 at least mlim matches; made by C-level maps and a
    # translation table rather than a loop per line.
    try:
        dis = bytes(counts).translate(_dis_table(mlim))
    except ValueError:  # a count above 255 (blank lines of a long file, say)
        dis = _dis_wide(counts, mlim)
    n = len(seg)
    mask: bytearray | None = None  # dis with the discarded multi-match lines zeroed
    if dis.find(2) >= 0:
        # A multi-match line goes only if unmatched lines surround it, and xdl_clean_mmatch
        # looks no further than the nearest line with an ordinary match: so only stretches
        # between such lines that hold an unmatched line need looking at, usually few.
        zero = dis.find(0)
        while zero >= 0:
            start = dis.rfind(1, 0, zero) + 1
            end = dis.find(1, zero)
            if end < 0:
                end = n
            i = dis.find(2, start, end)
            while i >= 0:
                if _clean_mmatch(dis, i, 0, n - 1):
                    if mask is None:
                        mask = bytearray(dis)
                    mask[i] = 0
                i = dis.find(2, i + 1, end)
            zero = dis.find(0, end)
    keep = dis if mask is None else mask  # 1 and 2 both mean kept
    rchg[dstart : dstart + n] = keep.translate(_FLIP)
    return list(compress(range(dstart, dstart + n), keep)), list(compress(seg, keep))


def _dis_wide(counts: list[int], mlim: int) -> bytes:
    """The classes of counts that do not fit a byte: from their 16-bit low and high bytes,
    classified apart and combined by one bitwise or of the two as big integers (0 | 0 = 0,
    1 | 0 = 1, and 2 or 3 when the count reaches mlim)."""
    if mlim < 256:
        try:
            raw = array("H", counts).tobytes()
        except OverflowError:
            pass
        else:
            low, high = (
                (raw[0::2], raw[1::2]) if sys.byteorder == "little" else (raw[1::2], raw[0::2])
            )
            low = low.translate(_dis_table(mlim))
            high = high.translate(_HIGH_BYTE)
            both = int.from_bytes(low, "little") | int.from_bytes(high, "little")
            return both.to_bytes(len(counts), "little").translate(_THREE_IS_TWO)
    return bytes(0 if c == 0 else 2 if c >= mlim else 1 for c in counts)


@cache
def _dis_table(mlim: int) -> bytes:
    """Translation of a count below 256 into its discard class (0, 1, 2) for this mlim."""
    return bytes(0 if c == 0 else 2 if c >= mlim else 1 for c in range(256))


def _split(
    ha1: list[int],
    off1: int,
    lim1: int,
    ha2: list[int],
    off2: int,
    lim2: int,
    kvdf: list[int],
    kvdb: list[int],
    need_min: bool,
    mxcost: int,
) -> tuple[int, int, bool, bool]:
    """xdl_split: the middle snake of the box, or a good-enough split point when the search
    gets too expensive. kvdf/kvdb are indexed by diagonal; negative diagonals use Python's
    wrap-around, which the caller sized the lists for."""
    dmin = off1 - lim2
    dmax = lim1 - off2
    fmid = off1 - off2
    bmid = lim1 - lim2
    odd = (fmid - bmid) & 1
    fmin = fmax = fmid
    bmin = bmax = bmid
    kvdf[fmid] = off1
    kvdb[bmid] = lim1
    ec = 0
    while True:
        ec += 1
        got_snake = False
        if fmin > dmin:
            fmin -= 1
            kvdf[fmin - 1] = -1
        else:
            fmin += 1
        if fmax < dmax:
            fmax += 1
            kvdf[fmax + 1] = -1
        else:
            fmax -= 1
        for d in range(fmax, fmin - 1, -2):
            i1 = kvdf[d - 1] + 1
            hi = kvdf[d + 1]
            if i1 < hi:
                i1 = hi
            i2 = i1 - d
            if i1 < lim1 and i2 < lim2 and ha1[i1] == ha2[i2]:
                # The snake: its first step inline, as most are that short.
                i1 += 1
                i2 += 1
                if i1 < lim1 and i2 < lim2 and ha1[i1] == ha2[i2]:
                    k = _prefix(ha1, i1, ha2, i2, min(lim1 - i1, lim2 - i2))
                    if k >= _SNAKE_CNT:
                        got_snake = True
                    i1 += k
                    i2 += k
            kvdf[d] = i1
            if odd and bmin <= d <= bmax and kvdb[d] <= i1:
                return i1, i2, True, True

        if bmin > dmin:
            bmin -= 1
            kvdb[bmin - 1] = _LINE_MAX
        else:
            bmin += 1
        if bmax < dmax:
            bmax += 1
            kvdb[bmax + 1] = _LINE_MAX
        else:
            bmax -= 1
        for d in range(bmax, bmin - 1, -2):
            i1 = kvdb[d - 1]
            hi = kvdb[d + 1] - 1
            if i1 > hi:
                i1 = hi
            i2 = i1 - d
            if i1 > off1 and i2 > off2 and ha1[i1 - 1] == ha2[i2 - 1]:
                i1 -= 1
                i2 -= 1
                if i1 > off1 and i2 > off2 and ha1[i1 - 1] == ha2[i2 - 1]:
                    k = _suffix(ha1, i1, ha2, i2, min(i1 - off1, i2 - off2))
                    if k >= _SNAKE_CNT:
                        got_snake = True
                    i1 -= k
                    i2 -= k
            kvdb[d] = i1
            if not odd and fmin <= d <= fmax and i1 <= kvdf[d]:
                return i1, i2, True, True

        if need_min:
            continue

        # Past the heuristic trigger with a long snake seen: take a diagonal that has come
        # far along a snake of at least _SNAKE_CNT lines as the split.
        if got_snake and ec > _HEUR_MIN_COST:
            best = 0
            spl1 = spl2 = 0
            for d in range(fmax, fmin - 1, -2):
                dd = d - fmid if d > fmid else fmid - d
                i1 = kvdf[d]
                i2 = i1 - d
                v = (i1 - off1) + (i2 - off2) - dd
                if (
                    v > _K_HEUR * ec
                    and v > best
                    and off1 + _SNAKE_CNT <= i1 < lim1
                    and off2 + _SNAKE_CNT <= i2 < lim2
                ):
                    k = 1
                    while ha1[i1 - k] == ha2[i2 - k]:
                        if k == _SNAKE_CNT:
                            best = v
                            spl1, spl2 = i1, i2
                            break
                        k += 1
            if best > 0:
                return spl1, spl2, True, False

            best = 0
            for d in range(bmax, bmin - 1, -2):
                dd = d - bmid if d > bmid else bmid - d
                i1 = kvdb[d]
                i2 = i1 - d
                v = (lim1 - i1) + (lim2 - i2) - dd
                if (
                    v > _K_HEUR * ec
                    and v > best
                    and off1 < i1 <= lim1 - _SNAKE_CNT
                    and off2 < i2 <= lim2 - _SNAKE_CNT
                ):
                    k = 0
                    while ha1[i1 + k] == ha2[i2 + k]:
                        if k == _SNAKE_CNT - 1:
                            best = v
                            spl1, spl2 = i1, i2
                            break
                        k += 1
            if best > 0:
                return spl1, spl2, False, True

        # Enough is enough: split at the furthest-reaching path found so far.
        if ec >= mxcost:
            fbest = fbest1 = -1
            for d in range(fmax, fmin - 1, -2):
                i1 = min(kvdf[d], lim1)
                i2 = i1 - d
                if lim2 < i2:
                    i1 = lim2 + d
                    i2 = lim2
                if fbest < i1 + i2:
                    fbest = i1 + i2
                    fbest1 = i1
            bbest = bbest1 = _LINE_MAX
            for d in range(bmax, bmin - 1, -2):
                i1 = max(off1, kvdb[d])
                i2 = i1 - d
                if i2 < off2:
                    i1 = off2 + d
                    i2 = off2
                if i1 + i2 < bbest:
                    bbest = i1 + i2
                    bbest1 = i1
            if (lim1 + lim2) - bbest < fbest - (off1 + off2):
                return fbest1, fbest - fbest1, True, False
            return bbest1, bbest - bbest1, False, True


def _trim(a: list[int], b: list[int]) -> tuple[int, int, int]:
    """xdl_trim_ends: the length of the common head, and where the common tail begins in a
    and in b (the tail no longer than what the head leaves of the shorter file)."""
    n1 = len(a)
    n2 = len(b)
    lim = min(n1, n2)
    head = _prefix(a, 0, b, 0, lim) if lim else 0
    tail = _suffix(a, n1, b, n2, lim - head) if lim > head else 0
    return head, n1 - tail, n2 - tail


def _myers(
    a: list[int],
    b: list[int],
    a_counts: Callable[[], Counter[int]] | None = None,
    trimmed: tuple[int, int, int] | None = None,
) -> tuple[bytearray, bytearray]:
    """xdl_do_diff without an algorithm flag: changed-line flags for both files.

    Each flag array has one extra zero at the end, which doubles as the zero xdiff keeps before
    the first line (index -1 wraps around to it). `trimmed` is _trim(a, b) if already known."""
    n1 = len(a)
    n2 = len(b)
    rchg1 = bytearray(n1 + 1)
    rchg2 = bytearray(n2 + 1)
    # xdl_trim_ends: common head and tail never enter the diff.
    head, end1, end2 = _trim(a, b) if trimmed is None else trimmed
    seg1 = a[head:end1]
    seg2 = b[head:end2]
    # xdl_cleanup_records: the classifier counted every line of both whole files.
    rindex1, ha1 = _discard(seg1, Counter(b), n1, head, rchg1)
    rindex2, ha2 = _discard(seg2, Counter(a) if a_counts is None else a_counts(), n2, head, rchg2)
    nreff1 = len(ha1)
    nreff2 = len(ha2)
    ndiags = nreff1 + nreff2 + 3
    kvdf = [0] * ndiags
    kvdb = [0] * ndiags
    mxcost = max(_bogosqrt(ndiags), _MAX_COST_MIN)
    # xdl_recs_cmp, with an explicit stack visiting boxes in the recursion's order.
    stack = [(0, nreff1, 0, nreff2, False)]
    while stack:
        off1, lim1, off2, lim2, need_min = stack.pop()
        if off1 < lim1 and off2 < lim2 and ha1[off1] == ha2[off2]:
            k = _prefix(ha1, off1, ha2, off2, min(lim1 - off1, lim2 - off2))
            off1 += k
            off2 += k
        if off1 < lim1 and off2 < lim2 and ha1[lim1 - 1] == ha2[lim2 - 1]:
            k = _suffix(ha1, lim1, ha2, lim2, min(lim1 - off1, lim2 - off2))
            lim1 -= k
            lim2 -= k
        if off1 == lim1:
            for r in rindex2[off2:lim2]:
                rchg2[r] = 1
        elif off2 == lim2:
            for r in rindex1[off1:lim1]:
                rchg1[r] = 1
        else:
            i1, i2, min_lo, min_hi = _split(
                ha1, off1, lim1, ha2, off2, lim2, kvdf, kvdb, need_min, mxcost
            )
            stack.append((i1, lim1, i2, lim2, min_hi))
            stack.append((off1, i1, off2, i2, min_lo))
    return rchg1, rchg2


# --------------------------------------------------------------------------------------------
# Histogram diff (xhistogram.c).


class _Histogram:
    """One histogram diff of a against b (an xdfenv_t with its records)."""

    def __init__(self, a: list[int], b: list[int], positions: dict[int, list[int]]) -> None:
        self.a = a
        self.b = b
        self.rchg1 = bytearray(len(a) + 1)
        self.rchg2 = bytearray(len(b) + 1)
        self.positions = positions  # where each line of a occurs: scanA's chains, once
        self.back: dict[int, int] = {}
        self.fwd: dict[int, int] = {}
        self.classes: list[int] | None = None

    def run(self) -> None:
        a = self.a
        work = [(0, len(a), 0, len(self.b))]
        while work:
            line1, count1, line2, count2 = work.pop()
            # histogram_diff, its tail call turned into this loop and the other call into work.
            while True:
                if count1 <= 0 and count2 <= 0:
                    break
                if not count1:
                    self.rchg2[line2 : line2 + count2] = b"\x01" * count2
                    break
                if not count2:
                    self.rchg1[line1 : line1 + count1] = b"\x01" * count1
                    break
                found = self._find_lcs(line1, count1, line2, count2)
                if found is None:
                    sub1, sub2 = _myers(a[line1 : line1 + count1], self.b[line2 : line2 + count2])
                    self.rchg1[line1 : line1 + count1] = sub1[:count1]
                    self.rchg2[line2 : line2 + count2] = sub2[:count2]
                    break
                begin1, end1, begin2, end2 = found
                if begin1 < 0:
                    self.rchg1[line1 : line1 + count1] = b"\x01" * count1
                    self.rchg2[line2 : line2 + count2] = b"\x01" * count2
                    break
                work.append((line1, begin1 - line1, line2, begin2 - line2))
                count1 = line1 + count1 - 1 - end1
                line1 = end1 + 1
                count2 = line2 + count2 - 1 - end2
                line2 = end2 + 1

    def _check_chains(self, line1: int, count1: int) -> None:
        """scanA fails when 65 distinct lines of the region share one bucket of its hash table:
        bucket (v + (v >> bits)) mod 2**bits of xdiff's class number v, which numbers distinct
        lines in order of first appearance. As v + (v >> bits) increases with v, 65 numbers in
        one bucket must reach 64 times the table size, so only big inputs are examined at all."""
        bits = _hashbits(count1)
        top = len(self.a)  # a's lines are numbered first, so their numbers stay below this
        if count1 <= _MAX_CHAIN_LENGTH or top + (top >> bits) < (_MAX_CHAIN_LENGTH << bits):
            return
        if self.classes is None:
            numbering: dict[int, int] = {}
            self.classes = [numbering.setdefault(x, len(numbering)) for x in self.a]
        mask = (1 << bits) - 1
        distinct = set(self.classes[line1 : line1 + count1])
        if len(distinct) <= _MAX_CHAIN_LENGTH:
            return
        buckets = Counter((v + (v >> bits)) & mask for v in distinct)
        if max(buckets.values()) > _MAX_CHAIN_LENGTH:
            raise XDiffError("histogram diff: hash chain too long")

    def _find_lcs(
        self, line1: int, count1: int, line2: int, count2: int
    ) -> tuple[int, int, int, int] | None:
        """find_lcs + try_lcs: the longest run of common lines among those rarest in the
        region of a; (-1, ...) when there is none, None when the classic diff must take over
        (common lines exist but all occur more than 64 times)."""
        self._check_chains(line1, count1)
        a = self.a
        b = self.b
        positions = self.positions
        end1 = line1 + count1 - 1
        end2 = line2 + count2 - 1
        region_counts: Counter[int] | None = None
        # The runs through a pair of lines, measured without the region's bounds and clipped
        # to them, are remembered: the regions of the recursion meet the same runs again.
        back = self.back
        fwd = self.fwd
        na = len(a)
        nb = len(b)
        stride = nb + 1
        best = _MAX_CHAIN_LENGTH + 1  # index.cnt
        has_common = False
        lb1 = le1 = lb2 = le2 = -1
        b_ptr = line2
        while b_ptr <= end2:
            b_next = b_ptr + 1
            occ = positions.get(b[b_ptr])
            if occ is not None:
                lo = bisect_left(occ, line1)
                hi = bisect_right(occ, end1, lo)
                cnt = hi - lo
                if cnt:
                    has_common = True
                    if cnt <= best:
                        idx = lo
                        while True:
                            seed = occ[idx]
                            as_ = seed
                            bs = b_ptr
                            k = min(as_ - line1, bs - line2)
                            if k and a[as_ - 1] == b[bs - 1]:
                                key = seed * stride + b_ptr
                                run = back.get(key)
                                if run is None:
                                    run = back[key] = _suffix(a, seed, b, b_ptr, min(seed, b_ptr))
                                k = min(k, run)
                                as_ -= k
                                bs -= k
                            ae = seed
                            be = b_ptr
                            k = min(end1 - ae, end2 - be)
                            if k and a[ae + 1] == b[be + 1]:
                                key = seed * stride + b_ptr
                                run = fwd.get(key)
                                if run is None:
                                    run = fwd[key] = _prefix(
                                        a, seed + 1, b, b_ptr + 1, min(na - seed, nb - b_ptr) - 1
                                    )
                                k = min(k, run)
                                ae += k
                                be += k
                            rc = cnt
                            if rc > 1:
                                # rc is the smallest occurrence count along the run.
                                if region_counts is None:
                                    region_counts = Counter(a[line1 : end1 + 1])
                                p = as_
                                while p <= ae:
                                    c = region_counts[a[p]]
                                    if c < rc:
                                        rc = c
                                        if rc == 1:
                                            break
                                    p += 1
                            if b_next <= be:
                                b_next = be + 1
                            if le1 - lb1 < ae - as_ or rc < best:
                                lb1, lb2, le1, le2 = as_, bs, ae, be
                                best = rc
                            idx += 1
                            if idx >= hi:
                                break
                            # Occurrences inside the run just measured would only find it again.
                            idx = bisect_right(occ, ae, idx, hi)
                            if idx >= hi:
                                break
            b_ptr = b_next
        if has_common and best > _MAX_CHAIN_LENGTH:
            return None
        return lb1, le1, lb2, le2


# --------------------------------------------------------------------------------------------
# Edit scripts: xdl_change_compact and xdl_build_script.


def _unchanged(rchg: bytearray, n: int) -> list[int]:
    """Indexes of the unchanged lines among the first n."""
    return list(compress(range(n), rchg[:n].translate(_FLIP)))


def _change_compact(recs: list[int], rchg: bytearray, rchgo: bytearray, nreco: int) -> None:
    """xdl_change_compact without the indent heuristic: slide each group of changed lines as
    far down as it goes, merging groups it bumps into, then back up to line up with a change in
    the other file if it can.

    Groups are numbered by how many unchanged lines precede them, which is the same in both
    files; the other file's flags never change here, so its groups are found by that number
    and only non-empty groups of this file are visited. The other file's groups are looked at
    only for a group that slides down, and listed only then."""
    nrec = len(recs)
    unch: list[int] = []
    listed = False

    def other_nonempty(k: int) -> bool:
        nonlocal unch, listed
        if not listed:
            unch = _unchanged(rchgo, nreco)
            listed = True
        start = unch[k - 1] + 1 if k else 0
        end = unch[k] if k < len(unch) else nreco
        return end > start

    start = rchg.find(1)
    if start < 0 or start >= nrec:
        return
    k = start  # unchanged lines before the group
    end = rchg.find(0, start)
    while True:
        while True:
            groupsize = end - start
            end_matching_other = -1
            # Shift the group up as far as possible, merging with groups above.
            while start > 0 and recs[start - 1] == recs[end - 1]:
                start -= 1
                rchg[start] = 1
                end -= 1
                rchg[end] = 0
                start = rchg.rfind(0, 0, start) + 1
                k -= 1
            earliest_end = end
            # Then down as far as possible, merging with groups below. If the group does not
            # move, end_matching_other goes unread (a further pass resets it, and after the
            # last end == earliest_end), so the other file is consulted only when it moves.
            if end < nrec and recs[start] == recs[end] and other_nonempty(k):
                end_matching_other = end
            while end < nrec and recs[start] == recs[end]:
                rchg[start] = 0
                start += 1
                rchg[end] = 1
                end = rchg.find(0, end + 1)
                k += 1
                if other_nonempty(k):
                    end_matching_other = end
            if groupsize == end - start:
                break
        if end != earliest_end and end_matching_other != -1:
            # Move back up to line up with the last change of the other file it can meet.
            while not other_nonempty(k):
                start -= 1
                rchg[start] = 1
                end -= 1
                rchg[end] = 0
                start = rchg.rfind(0, 0, start) + 1
                k -= 1
        nxt = rchg.find(1, end + 1)
        if nxt < 0 or nxt >= nrec:
            return
        k += nxt - end
        start = nxt
        end = rchg.find(0, nxt)


def _runs(rchg: bytearray, n: int) -> list[tuple[int, int]]:
    """The (start, end) of each run of changed lines."""
    runs = []
    i = rchg.find(1)
    while 0 <= i < n:
        j = rchg.find(0, i)
        runs.append((i, j))
        i = rchg.find(1, j)
    return runs


def _build_script(rchg1: bytearray, n1: int, rchg2: bytearray, n2: int) -> list[_Hunk]:
    """xdl_build_script: pair the runs of changed lines of both files into hunks."""
    runs1 = _runs(rchg1, n1)
    runs2 = _runs(rchg2, n2)
    script: list[_Hunk] = []
    p = q = 0
    changed1 = changed2 = 0
    big = n1 + n2 + 1
    while p < len(runs1) or q < len(runs2):
        k1 = runs1[p][0] - changed1 if p < len(runs1) else big
        k2 = runs2[q][0] - changed2 if q < len(runs2) else big
        k = min(k1, k2)  # unchanged lines before this hunk, in either file
        if k1 == k:
            s1, e1 = runs1[p]
            p += 1
        else:
            s1 = e1 = k + changed1
        if k2 == k:
            s2, e2 = runs2[q]
            q += 1
        else:
            s2 = e2 = k + changed2
        script.append((s1, s2, e1 - s1, e2 - s2))
        changed1 += e1 - s1
        changed2 += e2 - s2
    return script


def _positions(a: list[int]) -> dict[int, list[int]]:
    """Each line's positions in a, ascending."""
    positions: dict[int, list[int]] = {}
    for i, x in enumerate(a):
        p = positions.get(x)
        if p is None:
            positions[x] = [i]
        else:
            p.append(i)
    return positions


class _Lines:
    """A file's line ids and what the diffs derive from them alone, each made once and only
    when needed: the merge diffs the base twice."""

    __slots__ = ("_counts", "_distinct", "_positions", "ids")

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self._distinct: AbstractSet[int] | None = None
        self._positions: dict[int, list[int]] | None = None
        self._counts: Counter[int] | None = None

    def distinct(self) -> AbstractSet[int]:
        """The distinct lines: a set for a short file, else the positions' keys (which the
        histogram diff needs anyway, unless its search is skipped)."""
        if self._distinct is None:
            ids = self.ids
            self._distinct = set(ids) if len(ids) <= _PLAIN_CHECK_MAX else self.positions().keys()
        return self._distinct

    def positions(self) -> dict[int, list[int]]:
        if self._positions is None:
            self._positions = _positions(self.ids)
        return self._positions

    def counts(self) -> Counter[int]:
        if self._counts is None:
            self._counts = Counter(self.ids)
        return self._counts


def _plain(a_lines: _Lines, b: list[int], histogram: bool, head: int, end1: int, end2: int) -> bool:
    """Does the diff of a and b (a_lines.ids) change exactly a[head:end1] and b[head:end2],
    what lies between their common head and tail (_trim)? Answers yes only where that is
    certain, without running the diff:

    - Myers (xdiff's own diff trims head and tail first): when no line left in a has an equal
      among those left in b. Whatever xdl_cleanup_records discards and wherever xdl_split cuts,
      no diagonal step exists then, so every line of both is changed.
    - Histogram (which does not trim): when every line of a is unique in a (the caller checks
      this first) and none of b[head:end2] occurs in a at all. Then the only pairs of equal
      lines are those of the head and of the tail, which neither reaches into the other's lines
      (that would need a line of b[head:end2] in a, or a line twice in a); every count is 1, so
      find_lcs takes the longer run, the first met in b on a tie (the head). Each region of the
      recursion loses the run chosen, and what is left when both are gone, or when a region's
      side of a or b is empty, holds no equal pair and is all changed. Nor can scanA's hash
      chain check fail on the way: a's lines, all distinct, are numbered 0, 1, ... in order, so
      a region of count1 lines holds consecutive numbers v, whose buckets v + (v >> bits) rise
      strictly and span at most count1 <= 2**bits, two to a bucket at most."""
    if histogram:
        return a_lines.distinct().isdisjoint(b[head:end2])
    if head in (end1, end2):
        return True
    seg1 = a_lines.ids[head:end1]
    seg2 = b[head:end2]
    if len(seg2) < len(seg1):
        seg1, seg2 = seg2, seg1
    # Only a short segment is worth a set: long ones rarely are disjoint, and _myers copes.
    return len(seg1) <= _PLAIN_CHECK_MAX and set(seg1).isdisjoint(seg2)


def _diff(a_lines: _Lines, b: list[int], histogram: bool) -> list[_Hunk]:
    """xdl_do_diff, xdl_change_compact both ways and xdl_build_script.

    Where the diff provably changes exactly what lies between the common head and tail of a
    and b (see _plain), its search is skipped, and so is the compaction and pairing of runs
    where the two groups that leaves cannot slide."""
    a = a_lines.ids
    n1 = len(a)
    n2 = len(b)
    trimmed: tuple[int, int, int] | None = None
    if not histogram or len(a_lines.distinct()) == n1:
        trimmed = head, end1, end2 = _trim(a, b)
        if _plain(a_lines, b, histogram, head, end1, end2):
            if head == end1 and head == end2:
                return []
            if (
                head == end1
                or ((not head or a[head - 1] != a[end1 - 1]) and (end1 == n1 or a[head] != a[end1]))
            ) and (
                head == end2
                or ((not head or b[head - 1] != b[end2 - 1]) and (end2 == n2 or b[head] != b[end2]))
            ):
                # xdl_change_compact moves neither group, and they pair into one hunk.
                return [(head, head, end1 - head, end2 - head)]
            rchg1 = bytearray(n1 + 1)
            rchg2 = bytearray(n2 + 1)
            rchg1[head:end1] = b"\x01" * (end1 - head)
            rchg2[head:end2] = b"\x01" * (end2 - head)
            _change_compact(a, rchg1, rchg2, n2)
            _change_compact(b, rchg2, rchg1, n1)
            return _build_script(rchg1, n1, rchg2, n2)
    if histogram:
        env = _Histogram(a, b, a_lines.positions())
        env.run()
        rchg1, rchg2 = env.rchg1, env.rchg2
    else:
        rchg1, rchg2 = _myers(a, b, a_lines.counts, trimmed)
    _change_compact(a, rchg1, rchg2, n2)
    _change_compact(b, rchg2, rchg1, n1)
    return _build_script(rchg1, n1, rchg2, n2)


# --------------------------------------------------------------------------------------------
# The merge (xmerge.c).

# A merge hunk (xdmerge_t) as a mutable list: mode, i0, chg0 (base), i1, chg1 (ours),
# i2, chg2 (theirs). mode 0 is a conflict, 1 takes ours, 2 theirs, 3 both, 4 is a conflict
# found to be the same change on both sides.
_MODE, _I0, _CHG0, _I1, _CHG1, _I2, _CHG2 = range(7)


def _append_merge(
    changes: list[list[int]], mode: int, i0: int, c0: int, i1: int, c1: int, i2: int, c2: int
) -> None:
    """xdl_append_merge: a hunk touching the previous one extends it (a conflict if the
    modes differ)."""
    if changes:
        m = changes[-1]
        if i1 <= m[_I1] + m[_CHG1] or i2 <= m[_I2] + m[_CHG2]:
            if mode != m[_MODE]:
                m[_MODE] = 0
            m[_CHG0] = i0 + c0 - m[_I0]
            m[_CHG1] = i1 + c1 - m[_I1]
            m[_CHG2] = i2 + c2 - m[_I2]
            return
    changes.append([mode, i0, c0, i1, c1, i2, c2])


def _refine_conflicts(
    changes: list[list[int]], ours: list[int], theirs: list[int], histogram: bool
) -> list[list[int]]:
    """xdl_refine_conflicts: diff the two sides of each conflict and keep only the hunks where
    they differ (all of it disappears when both made the same change)."""
    out: list[list[int]] = []
    for m in changes:
        if m[_MODE] or m[_CHG1] == 0 or m[_CHG2] == 0:
            out.append(m)
            continue
        i1 = m[_I1]
        i2 = m[_I2]
        script = _diff(_Lines(ours[i1 : i1 + m[_CHG1]]), theirs[i2 : i2 + m[_CHG2]], histogram)
        if not script:
            m[_MODE] = 4
            out.append(m)
            continue
        s1, s2, c1, c2 = script[0]
        m[_I1] = s1 + i1
        m[_CHG1] = c1
        m[_I2] = s2 + i2
        m[_CHG2] = c2
        out.append(m)
        for s1, s2, c1, c2 in script[1:]:
            # xdiff leaves the base range of these pieces unset; no output reads it.
            out.append([0, 0, 0, s1 + i1, c1, s2 + i2, c2])
    return out


def _refine_zdiff3_conflicts(changes: list[list[int]], ours: list[int], theirs: list[int]) -> None:
    """xdl_refine_zdiff3_conflicts: move lines common to both sides' start and end out of each
    conflict."""
    for m in changes:
        if m[_MODE]:
            continue
        while m[_CHG1] and m[_CHG2] and ours[m[_I1]] == theirs[m[_I2]]:
            m[_CHG1] -= 1
            m[_CHG2] -= 1
            m[_I1] += 1
            m[_I2] += 1
        while (
            m[_CHG1] and m[_CHG2] and ours[m[_I1] + m[_CHG1] - 1] == theirs[m[_I2] + m[_CHG2] - 1]
        ):
            m[_CHG1] -= 1
            m[_CHG2] -= 1


def _simplify_non_conflicts(
    changes: list[list[int]], ours_lines: list[bytes], if_no_alnum: bool
) -> None:
    """xdl_simplify_non_conflicts: fold up to 3 lines between two conflicts into one conflict
    (or any number of lines without a letter or digit, at ZEALOUS_ALNUM)."""
    idx = 0
    while idx + 1 < len(changes):
        m = changes[idx]
        nm = changes[idx + 1]
        begin = m[_I1] + m[_CHG1]
        end = nm[_I1]
        if (
            m[_MODE] != 0
            or nm[_MODE] != 0
            or (
                end - begin > 3
                and (not if_no_alnum or _ALNUM.search(b"".join(ours_lines[begin:end])))
            )
        ):
            idx += 1
        else:
            m[_CHG1] = nm[_I1] + nm[_CHG1] - m[_I1]
            m[_CHG2] = nm[_I2] + nm[_CHG2] - m[_I2]
            del changes[idx + 1]


class _File:
    """One side of the merge as xdiff's records: its lines without their "\\n" (so splitting
    costs no copy per line), whether the last one had a "\\n", and the lines' interned ids."""

    __slots__ = ("ids", "n", "parts", "terminated")

    def __init__(
        self, data: bytes, intern: Callable[[bytes, int], int], counter: Iterator[int]
    ) -> None:
        parts = data.split(b"\n")
        last = parts.pop()
        self.terminated = not last
        if last:
            parts.append(last)
        self.parts = parts
        self.n = len(parts)
        # Ids need only be equal for equal records, not dense, so a counter feeds setdefault.
        ids = list(map(intern, parts, counter))
        if last:
            # An unterminated last line differs from the same text with its "\\n"; no other
            # key can end in "\\n".
            ids[-1] = intern(last + b"\n", next(counter))
        self.ids = ids

    def copy(self, emit: Callable[[bytes], object], i: int, count: int, cr: int, nl: int) -> None:
        """xdl_recs_copy: `count` lines from line i. With `nl`, a copy ending in the
        unterminated last line gets a newline (CR LF if `cr`), so a marker after it starts a
        line of its own."""
        if count < 1:
            return
        j = i + count
        emit(b"\n".join(self.parts[i:j]))
        if j < self.n or self.terminated:
            emit(b"\n")
        elif nl:
            emit(b"\r\n" if cr else b"\n")

    def is_eol_crlf(self, i: int) -> int:
        """is_eol_crlf: 1 if line i ends in CR LF (for an unterminated last line: the line
        before it), 0 if in LF only, -1 if that cannot be told."""
        n = self.n
        parts = self.parts
        if i < n - 1:
            return int(parts[i][-1:] == b"\r")
        if not n:
            return -1
        if self.terminated:
            return int(parts[i][-1:] == b"\r")
        if not i:
            return -1
        return int(parts[i - 1][-1:] == b"\r")


def _label(label: str | None) -> bytes:
    return b"" if label is None else b" " + label.encode("utf-8", "surrogateescape")


def merge_file(
    base: bytes,
    ours: bytes,
    theirs: bytes,
    *,
    ours_label: str | None = "ours",
    theirs_label: str | None = "theirs",
    base_label: str | None = "base",
    favor: Favor = Favor.NORMAL,
    level: Level = Level.ZEALOUS,
    algorithm: Algorithm = Algorithm.HISTOGRAM,
    style: Style = Style.MERGE,
    marker_size: int = 7,
) -> MergeFileResult:
    """Merge `ours` and `theirs`, both descended from `base`, as git's xdl_merge does.

    The defaults are those of `git merge` (ort); `git merge-file` corresponds to
    algorithm=MYERS, level=ZEALOUS_ALNUM. `conflicts` counts conflict hunks (0 with a favor
    other than NORMAL); git merge-file exits with it, capped at 127. A marker_size of 0 or
    less means the default 7, as in xdiff. Raises XDiffError where xdiff itself fails.
    """
    table: dict[bytes, int] = {}
    counter = count()
    base_file = _File(base, table.setdefault, counter)
    ours_file = _File(ours, table.setdefault, counter)
    theirs_file = _File(theirs, table.setdefault, counter)
    base_ids = base_file.ids
    ours_ids = ours_file.ids
    theirs_ids = theirs_file.ids
    histogram = algorithm is _HISTOGRAM

    base_lines = _Lines(base_ids)
    script1 = _diff(base_lines, ours_ids, histogram)
    script2 = _diff(base_lines, theirs_ids, histogram)
    if not script1:
        return MergeFileResult(theirs, 0)
    if not script2:
        return MergeFileResult(ours, 0)

    lvl = int(level)
    with_base = style is not _MERGE
    if with_base and lvl > _EAGER:
        lvl = _EAGER  # "diff3 -m" output makes no sense for more aggressive levels

    # xdl_do_merge: walk both scripts over the base together.
    changes: list[list[int]] = []
    p = q = 0
    len1 = len(script1)
    len2 = len(script2)
    while p < len1 and q < len2:
        x1 = script1[p]
        x2 = script2[q]
        x1i1, x1i2, x1c1, x1c2 = x1
        x2i1, x2i2, x2c1, x2c2 = x2
        if x1i1 + x1c1 < x2i1:
            _append_merge(changes, 1, x1i1, x1c1, x1i2, x1c2, x2i2 - x2i1 + x1i1, x1c1)
            p += 1
            continue
        if x2i1 + x2c1 < x1i1:
            _append_merge(changes, 2, x2i1, x2c1, x1i2 - x1i1 + x2i1, x2c1, x2i2, x2c2)
            q += 1
            continue
        if (
            lvl == _MINIMAL
            or x1i1 != x2i1
            or x1c1 != x2c1
            or x1c2 != x2c2
            or ours_ids[x1i2 : x1i2 + x1c2] != theirs_ids[x2i2 : x2i2 + x2c2]
        ):
            off = x1i1 - x2i1
            ffo = off + x1c1 - x2c1
            i0 = x1i1
            i1 = x1i2
            i2 = x2i2
            if off > 0:
                i0 -= off
                i1 -= off
            else:
                i2 += off
            chg0 = x1i1 + x1c1 - i0
            chg1 = x1i2 + x1c2 - i1
            chg2 = x2i2 + x2c2 - i2
            if ffo < 0:
                chg0 -= ffo
                chg1 -= ffo
            else:
                chg2 += ffo
            _append_merge(changes, 0, i0, chg0, i1, chg1, i2, chg2)
        e1 = x1i1 + x1c1
        e2 = x2i1 + x2c1
        if e1 >= e2:
            q += 1
        if e2 >= e1:
            p += 1
    nbase = len(base_ids)
    while p < len1:
        x1i1, x1i2, x1c1, x1c2 = script1[p]
        _append_merge(changes, 1, x1i1, x1c1, x1i2, x1c2, x1i1 + len(theirs_ids) - nbase, x1c1)
        p += 1
    while q < len2:
        x2i1, x2i2, x2c1, x2c2 = script2[q]
        _append_merge(changes, 2, x2i1, x2c1, x2i1 + len(ours_ids) - nbase, x2c1, x2i2, x2c2)
        q += 1

    if style is _ZDIFF3:
        _refine_zdiff3_conflicts(changes, ours_ids, theirs_ids)
    elif lvl >= _ZEALOUS:
        changes = _refine_conflicts(changes, ours_ids, theirs_ids, histogram)
        _simplify_non_conflicts(changes, ours_file.parts, lvl > _ZEALOUS)

    content, conflicts = _fill(
        changes,
        base_file,
        ours_file,
        theirs_file,
        0 if favor is _NORMAL else favor.value,
        with_base,
        marker_size if marker_size > 0 else _DEFAULT_MARKER_SIZE,
        (ours_label, base_label, theirs_label),
    )
    return MergeFileResult(content, conflicts)


def _fill(
    changes: list[list[int]],
    base: _File,
    ours: _File,
    theirs: _File,
    favor: int,
    with_base: bool,
    marker_size: int,
    labels: tuple[str | None, str | None, str | None],
) -> tuple[bytes, int]:
    """xdl_fill_merge_buffer: the merged file, conflict markers included, and how many
    conflicts it holds. A favor turns every conflict into that mode first (so no conflict is
    left to count).

    What comes from ours between and in hunks that take ours (mode 1, and 4: the same change
    on both sides) is copied in one piece up to the next hunk that does not: copies without
    the newline fix-up join up exactly (a copy's last line keeps its own newline)."""
    out: list[bytes] = []
    emit = out.append

    def cr_needed(m: list[int]) -> int:
        # is_cr_needed: markers end in CR LF only when the lines around them all do.
        needs_cr = ours.is_eol_crlf(m[_I1] - 1 if m[_I1] else 0)
        if needs_cr:
            needs_cr = theirs.is_eol_crlf(m[_I2] - 1 if m[_I2] else 0)
        if needs_cr:
            needs_cr = base.is_eol_crlf(0)
        return 0 if needs_cr < 0 else needs_cr

    markers: tuple[bytes, bytes, bytes, bytes] | None = None
    conflicts = 0
    i = 0
    for m in changes:
        mode = m[_MODE]
        if not mode and favor:
            m[_MODE] = mode = favor
        if mode == 0:
            conflicts += 1
            if markers is None:
                ours_label, base_label, theirs_label = labels
                markers = (
                    b"<" * marker_size + _label(ours_label),
                    b"|" * marker_size + _label(base_label),
                    b"=" * marker_size,
                    b">" * marker_size + _label(theirs_label),
                )
            needs_cr = cr_needed(m)
            eol = b"\r\n" if needs_cr else b"\n"
            ours.copy(emit, i, m[_I1] - i, 0, 0)
            emit(markers[0] + eol)
            ours.copy(emit, m[_I1], m[_CHG1], needs_cr, 1)
            if with_base:
                emit(markers[1] + eol)
                base.copy(emit, m[_I0], m[_CHG0], needs_cr, 1)
            emit(markers[2] + eol)
            theirs.copy(emit, m[_I2], m[_CHG2], needs_cr, 1)
            emit(markers[3] + eol)
        elif mode & 2:
            if mode & 1:
                # Union: ours' side, with the newline fix-up if it ends in the unterminated
                # last line (the only case where the CR choice is read).
                j = m[_I1] + m[_CHG1]
                ours.copy(emit, i, m[_I1] - i, 0, 0)
                cr = cr_needed(m) if m[_CHG1] > 0 and j == ours.n and not ours.terminated else 0
                ours.copy(emit, m[_I1], m[_CHG1], cr, 2)
            else:
                ours.copy(emit, i, m[_I1] - i, 0, 0)
            theirs.copy(emit, m[_I2], m[_CHG2], 0, 0)
        else:
            continue  # ours (1) or the same change on both sides (4): copied with what follows
        i = m[_I1] + m[_CHG1]
    ours.copy(emit, i, ours.n - i, 0, 0)
    return b"".join(out), conflicts
