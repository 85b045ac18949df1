"""Rename detection as git's merge ("ort") runs it: a Python port of git 2.39.5's
diffcore-rename.c and diffcore-delta.c, driven the way merge-ort.c's detect_regular_renames
drives them.

One side of a merge is compared with the merge base. Paths deleted from the base are the
sources, paths added on the side the destinations (a path present in both is never paired, even
when its type changed). ort turns rename_empty off, so an empty blob is neither. Then, as
diffcore_rename_extended does:

1. Exact renames (find_exact_renames): a destination takes a source with the same blob id, one
   with the same basename first, else the first in path order (looking at 100 at most); a
   source is used once; regular files pair whatever their exec bit, anything else (symlink,
   gitlink) only with the same mode.
2. Basename matches (find_basename_matches): a source and a destination whose basename is
   unique among the sources and destinations left are paired when similar at >= 75% (the
   basename score, halfway from the 50% minimum to 100%). A basename that is not unique is
   tried against the destination in the directory where the exact renames out of the source's
   directory went, when that directory is gone on this side (idx_possible_rename). ort passes
   the removed directories this needs; `git diff -M` does not, so there such a file goes
   straight to step 3.
3. Everything left (the inexact matrix, skipped when destinations x sources > limit**2): each
   destination keeps its four best sources (record_if_better), then all kept pairs are taken
   best score first, a source used once, while the score is >= 50%.

Similarity (estimate_similarity) is git's "span hash" comparison: a file is cut into chunks
ending at a LF or after 64 bytes (a last piece shorter than 64 bytes without a LF is not
counted), in text files a CR before a LF is dropped, each chunk is hashed to one of 107927
values, and the score is the bytes of the destination's chunks also found in the source (a hash
counted up to the smaller of its two byte counts) * 60000 / the larger file size. Only regular
files are compared, and sizes too far apart (the larger more than twice the smaller, at the 50%
minimum) score 0 before contents are read.

Not modelled, all of it ort looking at the other side of the merge:
* Its "relevant sources": ort pairs in steps 2 and 3 only the deleted paths whose rename
  matters to the merge (the other side changed or deleted them, or a directory rename needs
  them), which changes results. `relevant_sources` passes them in; by default all matter.
* The order of paths: ort lists the paths under directories the other side left alone (and
  under new directories) after all others, in the order of a git hash map, which decides
  between equally good candidates (identical files, equal scores); here the order is always
  path order, as `git diff-tree` lists them.
* The relevance ort gives removed directories (its directory rename detection raises it),
  which widens the counts behind the guesses of step 2 to subdirectories.
Copies, break detection and directory renames are not part of this module; gitattributes (a
`binary` or `-diff` attribute) are not read.

Speed (a server merges repositories of thousands of files): exact renames by blob id in a dict;
span tables made for many blobs at once and cached by blob id across merges; the matrix scores
a destination only against the sources it shares chunks with (see `_inexact_matrix`).
"""

import sys
import threading
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from govc.core.objects import FileMap

__all__ = [
    "DEFAULT_RENAME_LIMIT",
    "MAX_SCORE",
    "MIN_SCORE",
    "detect_renames",
    "similarity",
    "span_table",
]

BlobReader = Callable[[bytes], bytes]  # blob id -> content
SpanTable = dict[int, int]  # chunk hash -> bytes of chunks with that hash

# diffcore.h: scores are fractions of MAX_SCORE, which git declares as a double (60000.0), so
# the size check and the score below are computed in floating point, as here.
MAX_SCORE = 60000
_MAX_SCORE_F = 60000.0
MIN_SCORE = 30000  # DEFAULT_RENAME_SCORE: ort passes rename_score 0, which means this
# diffcore_rename_extended: minimum_score + (int)(0.5 * (MAX_SCORE - minimum_score)), the 0.5
# being GIT_BASENAME_FACTOR's default (that environment variable is a test knob of git's).
BASENAME_SCORE = MIN_SCORE + int(0.5 * (_MAX_SCORE_F - MIN_SCORE))
NUM_CANDIDATE_PER_DST = 4
DEFAULT_RENAME_LIMIT = 7000  # merge-ort.c: merge.renameLimit unset (or <= 0) means 7000
_EXACT_ALTERNATIVES = 100  # find_identical_files looks at this many same-id sources at most

HASHBASE = 107927  # diffcore-delta.c: the prime the chunk hashes are reduced modulo
_CHUNK = 64  # hash_chars ends a chunk after this many bytes when no LF came first
_FIRST_FEW_BYTES = 8000  # buffer_is_binary: a NUL in this many leading bytes means binary

EMPTY_BLOB = bytes.fromhex("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")
_S_IFMT = 0o170000
_S_IFREG = 0o100000

# dirs_removed values (diffcore.h enum dir_rename_relevance). Without the other side of the
# merge every removed directory is NOT_RELEVANT; the loop that reads them is kept whole so the
# counting is git's.
_NOT_RELEVANT = 0
_RELEVANT_FOR_ANCESTOR = 1
_RELEVANT_FOR_SELF = 2

_M32 = 0xFFFFFFFF


def _is_reg(mode: int) -> bool:
    return mode & _S_IFMT == _S_IFREG


def _basename(path: str) -> str:
    return path[path.rfind("/") + 1 :]


def _dirname(path: str) -> str:
    slash = path.rfind("/")
    return path[:slash] if slash >= 0 else ""


# --- diffcore-delta.c: span hashes -------------------------------------------------------------


def _chunks(data: bytes) -> list[bytes]:
    """The chunks hash_chars hashes, in order: each ends at a LF or after 64 bytes; bytes after
    the last LF that do not fill 64 are dropped (hash_chars never hashes that last piece)."""
    if b"\r\n" in data and b"\0" not in data[:_FIRST_FEW_BYTES]:
        # "Ignore CR in CRLF sequence if text": a CR is skipped when a LF follows it. replace()
        # scans left to right, so in CR CR LF only the second CR goes, as in git.
        data = data.replace(b"\r\n", b"\n")
    lines = data.split(b"\n")
    tail = lines.pop()
    if max(map(len, lines), default=0) < _CHUNK:
        out = [line + b"\n" for line in lines]
    else:
        out = []
        for line in lines:
            if len(line) < _CHUNK:
                out.append(line + b"\n")
            else:
                full = line + b"\n"
                out.extend(full[i : i + _CHUNK] for i in range(0, len(full), _CHUNK))
    out.extend(tail[i : i + _CHUNK] for i in range(0, len(tail) - _CHUNK + 1, _CHUNK))
    return out


def _hash_chunk_group(chunks: Sequence[bytes]) -> list[int]:
    """hash_chars's per-chunk hash for many chunks at once.

    Per byte c git updates two 32-bit accumulators:
        accum1' = ((accum1 << 7) ^ (accum2 >> 25)) + c;  accum2' = (accum2 << 7) ^ (accum1 >> 25)
    and a chunk hashes to (accum1 + accum2 * 0x61) % HASHBASE, all arithmetic mod 2**32. A byte
    loop in Python costs ~200 ns, so the chunks are done side by side instead: chunk k's
    accumulators live in bits 64k..64k+31 of two big integers, every shift is masked back into
    its 32-bit lane (the 32 spare bits of a lane absorb the carries before the mask), and one
    big-integer step advances every chunk by one byte. Chunks are right-aligned with NUL
    padding: from the zero state a NUL byte leaves both accumulators zero, so the padding does
    not change a hash.
    """
    n = len(chunks)
    steps = max(len(c) for c in chunks)
    padded = b"".join(c.rjust(steps, b"\0") for c in chunks)
    lanes32 = int.from_bytes(b"\xff\xff\xff\xff\0\0\0\0" * n, "little")
    lanes7 = int.from_bytes(b"\x7f\0\0\0\0\0\0\0" * n, "little")
    column = bytearray(8 * n)
    a1 = a2 = 0
    for i in range(steps):
        column[0::8] = padded[i::steps]  # byte i of every chunk, one per lane
        c = int.from_bytes(column, "little")
        a1, a2 = (
            ((((a1 << 7) & lanes32) ^ ((a2 >> 25) & lanes7)) + c) & lanes32,
            ((a2 << 7) & lanes32) ^ ((a1 >> 25) & lanes7),
        )
    total = (a1 + a2 * 0x61) & lanes32
    values = array("Q")
    values.frombytes(total.to_bytes(8 * n, "little"))
    if sys.byteorder != "little":
        values.byteswap()
    return [v % HASHBASE for v in values]


_GROUP = 1 << 15  # chunks hashed per big-integer pass (bounds the integers to 2 MiB)


def _hash_chunks(chunks: Iterable[bytes]) -> dict[bytes, int]:
    """chunk -> hash for distinct chunks; grouped by length so short lines take few steps."""
    by_length = sorted(set(chunks), key=len)
    out: dict[bytes, int] = {}
    start = 0
    while start < len(by_length):
        # A group spans at most 16 lengths, so no chunk is padded by more than 15 bytes.
        limit = len(by_length[start]) + 16
        end = min(bisect_left(by_length, limit, start, key=len), start + _GROUP)
        group = by_length[start:end]
        out.update(zip(group, _hash_chunk_group(group), strict=True))
        start = end
    return out


def _span_tables(blobs: Sequence[bytes]) -> list[SpanTable]:
    """hash_chars for several blobs: for each, chunk hash -> bytes of chunks with that hash
    (what git's spanhash table counts; it is a plain map, git sorts it to merge two)."""
    per_blob = [Counter(_chunks(data)) for data in blobs]
    hashes = _hash_chunks(chunk for counted in per_blob for chunk in counted)
    tables: list[SpanTable] = []
    for counted in per_blob:
        table: SpanTable = {}
        for chunk, times in counted.items():
            h = hashes[chunk]
            table[h] = table.get(h, 0) + times * len(chunk)
        tables.append(table)
    return tables


def span_table(data: bytes) -> SpanTable:
    """hash_chars of one blob: chunk hash -> bytes of chunks with that hash."""
    return _span_tables([data])[0]


def _copied(src: SpanTable, dst: SpanTable) -> int:
    """diffcore_count_changes's src_copied: bytes of the destination's chunks that the source
    has too, a hash counted up to the smaller of its two byte counts."""
    if len(src) > len(dst):
        src, dst = dst, src
    get = dst.get
    total = 0
    for h, count in src.items():
        other = get(h)
        if other is not None:
            total += count if count < other else other
    return total


def _sizes_too_different(src_size: int, dst_size: int, minimum_score: int) -> bool:
    """estimate_similarity's check before reading contents (in git's doubles)."""
    max_size = max(src_size, dst_size)
    delta = max_size - min(src_size, dst_size)
    return float(max_size) * (_MAX_SCORE_F - minimum_score) < float(delta) * _MAX_SCORE_F


def _score(copied: int, src_size: int, dst_size: int) -> int:
    """estimate_similarity's final (int)(src_copied * MAX_SCORE / max_size)."""
    if not dst_size:
        return 0  # "should not happen": git never scores an empty destination
    return int(copied * _MAX_SCORE_F / max(src_size, dst_size))


def similarity(a: bytes, b: bytes) -> int:
    """git's score (0..60000) for source `a` renamed to destination `b`, both regular files, as
    estimate_similarity computes it at the default 50% minimum: 0 when the sizes alone rule the
    pair out. `git diff -M` prints score * 100 / 60000, rounded down, after the R."""
    if _sizes_too_different(len(a), len(b), MIN_SCORE):
        return 0
    src, dst = _span_tables([a, b])
    return _score(_copied(src, dst), len(a), len(b))


# --- span tables cached by blob id ---------------------------------------------------------------

_TABLE_CACHE_LIMIT = 500_000  # total table entries kept (a few tens of MB)


class _TableCache:
    """(size, span table) by blob id, across merges: blobs never change, and a merge of a big
    repository compares the same blobs again and again (and the next merge the same base)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[bytes, tuple[int, SpanTable]] = {}
        self._entries = 0

    def get(self, oid: bytes) -> tuple[int, SpanTable] | None:
        with self._lock:
            return self._tables.get(oid)

    def put(self, oid: bytes, size: int, table: SpanTable) -> None:
        with self._lock:
            if oid in self._tables:
                return
            self._tables[oid] = (size, table)
            self._entries += len(table) + 1
            while self._entries > _TABLE_CACHE_LIMIT and self._tables:
                oldest = next(iter(self._tables))  # dicts keep insertion order: FIFO
                self._entries -= len(self._tables.pop(oldest)[1]) + 1

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()
            self._entries = 0


_CACHE = _TableCache()


class _Blobs:
    """Sizes and span tables of the blobs one detection needs, read at most once each."""

    def __init__(self, read_blob: BlobReader) -> None:
        self._read = read_blob
        self.sizes: dict[bytes, int] = {}
        self.tables: dict[bytes, SpanTable] = {}
        self._contents: dict[bytes, bytes] = {}

    def load_sizes(self, oids: Iterable[bytes]) -> None:
        """git reads only object headers for the size check; read_blob gives whole contents,
        which are kept until their tables are made (or dropped by `forget_contents`)."""
        for oid in oids:
            if oid in self.sizes:
                continue
            cached = _CACHE.get(oid)
            if cached is not None:
                self.sizes[oid], self.tables[oid] = cached
                continue
            data = self._read(oid)
            self.sizes[oid] = len(data)
            self._contents[oid] = data

    def load_tables(self, oids: Iterable[bytes]) -> None:
        oids = list(oids)
        self.load_sizes(oids)
        wanted = [oid for oid in dict.fromkeys(oids) if oid not in self.tables]
        if not wanted:
            return
        # Contents read for sizes are used once, then dropped (read again if already dropped).
        contents = [
            self._contents.pop(oid) if oid in self._contents else self._read(oid) for oid in wanted
        ]
        tables = _span_tables(contents)
        for oid, table in zip(wanted, tables, strict=True):
            self.tables[oid] = table
            _CACHE.put(oid, self.sizes[oid], table)

    def forget_contents(self) -> None:
        self._contents.clear()


# --- diffcore-rename.c ---------------------------------------------------------------------------


def _strhash(text: str) -> int:
    """hashmap.c strhash (FNV-1, 32 bits): it orders git's string maps."""
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h * 0x01000193) & _M32) ^ byte
    return h


def _git_hashmap_order(keys: Sequence[str]) -> list[str]:
    """The order in which git's hashmap.c iterates a strmap filled with `keys` in this order:
    buckets in index order, each a chain with the newest entry first; the table starts at 64
    buckets and grows fourfold (rehashing chains head first) past 80% load."""
    size = 64
    table: list[list[str]] = [[] for _ in range(size)]
    hashes = {key: _strhash(key) for key in keys}
    for count, key in enumerate(keys, start=1):
        table[hashes[key] & (size - 1)].insert(0, key)
        if count > size * 80 // 100:
            size <<= 2
            grown: list[list[str]] = [[] for _ in range(size)]
            for chain in table:
                for old in chain:
                    grown[hashes[old] & (size - 1)].insert(0, old)
            table = grown
    return [key for chain in table for key in chain]


def _count_dir_rename(
    counts: dict[str, dict[str, int]], dirs_removed: dict[str, int], old: str, new: str
) -> None:
    """update_dir_rename_counts: old directory -> {new directory -> renames}, for directories
    removed on this side. `counts` keeps insertion order, which decides ties (see below)."""
    old_dir, new_dir = old, new
    first_time = True
    while True:
        old_part, old_dir = _basename(old_dir), _dirname(old_dir)
        if old_dir not in dirs_removed:
            break
        new_part, new_dir = _basename(new_dir), _dirname(new_dir)
        # "a/b/c/d/e/foo.c" -> "a/b/some/thing/else/e/foo.c" counts a/b/c/d/e -> .../else/e and
        # a/b/c/d -> a/b/some/thing/else, but not a/b/c, whose last component differs.
        if not first_time and old_part != new_part:
            break
        flag = dirs_removed.get(old_dir, _NOT_RELEVANT)
        if flag == _RELEVANT_FOR_SELF or first_time:
            per_dir = counts.setdefault(old_dir, {})
            per_dir[new_dir] = per_dir.get(new_dir, 0) + 1
        first_time = False
        if flag == _NOT_RELEVANT or not old_dir or not new_dir:
            break


def _highest_rename_path(per_dir: dict[str, int]) -> str:
    """get_highest_rename_path: the first destination with the highest count, in the order git's
    string map iterates them (so a tie goes where git's hashing puts it)."""
    best, best_count = "", 0
    for new_dir in _git_hashmap_order(list(per_dir)):
        if per_dir[new_dir] > best_count:
            best, best_count = new_dir, per_dir[new_dir]
    return best


def _removed_dirs(base: FileMap, side: FileMap) -> dict[str, int]:
    """dirs_removed: directories of the base that are no directory on this side."""
    return dict.fromkeys(directories(base) - directories(side), _NOT_RELEVANT)


def directories(paths: Iterable[str]) -> set[str]:
    """Every directory that holds one of `paths` (at any depth), without the top level ""."""
    out: set[str] = set()
    for path in paths:
        slash = path.rfind("/")
        while slash > 0:
            prefix = path[:slash]
            if prefix in out:
                break  # its parents are in already
            out.add(prefix)
            slash = path.rfind("/", 0, slash)
    return out


class _Renames:
    """The state diffcore_rename_extended keeps in rename_src / rename_dst."""

    def __init__(self, base: FileMap, side: FileMap, srcs: list[str], dsts: list[str]) -> None:
        self.base = base
        self.side = side
        self.srcs = srcs  # rename_src, in the order git queues them
        self.dsts = dsts  # rename_dst
        self.src_used = [False] * len(srcs)
        self.dst_src = [-1] * len(dsts)  # the source a destination was paired with
        self.count = 0

    def record(self, dst: int, src: int) -> None:
        """record_rename_pair (copies are off, so a source is used once)."""
        assert self.dst_src[dst] < 0, "destination already matched"
        self.dst_src[dst] = src
        self.src_used[src] = True
        self.count += 1

    def result(self) -> dict[str, str]:
        pairs = [(self.srcs[s], self.dsts[d]) for d, s in enumerate(self.dst_src) if s >= 0]
        return dict(sorted(pairs))


def _find_exact_renames(r: _Renames) -> None:
    """find_exact_renames / find_identical_files.

    git puts the sources in a hash table in reverse order and reads a bucket newest first, so
    the sources with one blob id come in path order; for each destination (in order) the first
    unused one with the same basename wins, else the first unused one."""
    by_id: dict[bytes, list[int]] = {}
    for i, path in enumerate(r.srcs):
        by_id.setdefault(r.base[path][1], []).append(i)
    for d, dpath in enumerate(r.dsts):
        dmode, oid = r.side[dpath]
        candidates = by_id.get(oid)
        if not candidates:
            continue
        dbase = _basename(dpath)
        best, best_score, budget = -1, -1, _EXACT_ALTERNATIVES
        for s in candidates:
            smode = r.base[r.srcs[s]][0]
            # Non-regular files (symlinks, gitlinks) pair only with the same mode.
            if not (_is_reg(smode) and _is_reg(dmode)) and smode != dmode:
                continue
            if r.src_used[s]:
                continue
            score = 1 + (_basename(r.srcs[s]) == dbase)
            if score > best_score:
                best, best_score = s, score
                if score == 2:
                    break
            budget -= 1  # "Too many identical alternatives? Pick one"
            if not budget:
                break
        if best >= 0:
            r.record(d, best)


def _estimate(r: _Renames, blobs: _Blobs, s: int, d: int, minimum_score: int) -> int:
    """estimate_similarity for one pair."""
    smode, sid = r.base[r.srcs[s]]
    dmode, did = r.side[r.dsts[d]]
    # "We deal only with regular files. Symlink renames are handled only when they are exact
    # matches"
    if not _is_reg(smode) or not _is_reg(dmode):
        return 0
    blobs.load_sizes((sid, did))
    ssize, dsize = blobs.sizes[sid], blobs.sizes[did]
    if _sizes_too_different(ssize, dsize, minimum_score):
        return 0
    blobs.load_tables((sid, did))
    return _score(_copied(blobs.tables[sid], blobs.tables[did]), ssize, dsize)


def _find_basename_matches(
    r: _Renames,
    blobs: _Blobs,
    remaining: list[int],
    relevant: Collection[str] | None,
    dirs_removed: Callable[[], dict[str, int]],
) -> None:
    """find_basename_matches, with ort's idx_possible_rename for basenames that are not unique."""
    sources: dict[str, int] = {}  # basename -> position in `remaining`, -1 when not unique
    for k, s in enumerate(remaining):
        name = _basename(r.srcs[s])
        sources[name] = -1 if name in sources else k
    dests: dict[str, int] = {}  # basename -> destination, -1 when not unique
    for d, path in enumerate(r.dsts):
        if r.dst_src[d] >= 0:
            continue
        name = _basename(path)
        dests[name] = -1 if name in dests else d

    # initialize_dir_rename_info runs before any basename match: its guesses come from the
    # exact renames only (made lazily, as most detections never need them).
    exact = list(enumerate(r.dst_src))
    guesses: dict[str, str] | None = None
    unpaired: dict[str, int] = {}  # idx_map: destination path -> index, not yet paired

    def possible_rename(path: str) -> int:
        """idx_possible_rename: where the exact renames out of `path`'s directory mostly went,
        when that directory is gone on this side."""
        nonlocal guesses
        if guesses is None:
            removed = dirs_removed()
            counts: dict[str, dict[str, int]] = {}
            for d, s in exact:
                if s >= 0:
                    _count_dir_rename(counts, removed, r.srcs[s], r.dsts[d])
                else:
                    unpaired[r.dsts[d]] = d
            guesses = {old: _highest_rename_path(per_dir) for old, per_dir in counts.items()}
        new_dir = guesses.get(_dirname(path))
        if new_dir is None:
            return -1
        return unpaired.get(f"{new_dir}/{_basename(path)}", -1)

    for k, s in enumerate(remaining):
        path = r.srcs[s]
        if relevant is not None and path not in relevant:
            continue
        name = _basename(path)
        if name not in dests:
            continue
        src_k, d = sources[name], dests[name]
        if src_k == -1 or d == -1:
            src_k, d = k, possible_rename(path)
        if d == -1 or r.dst_src[d] >= 0:
            continue
        src = remaining[src_k]
        if _estimate(r, blobs, src, d, BASENAME_SCORE) < BASENAME_SCORE:
            continue
        r.record(d, src)


class _Lanes:
    """Per-source byte counts packed into one big integer, a fixed-width lane per source, so
    that adding a chunk that many sources share is one integer addition instead of a Python
    loop over those sources (the sum of the lanes never carries from one lane into the next:
    a lane is wide enough for any source's size, with room for the tests below)."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.n = len(sizes)
        self.width = 32 if max(sizes, default=0) < 1 << 28 else 64
        self.code = "I" if self.width == 32 else "Q"
        self.bias = 1 << (self.width - 2)  # a lane holding bias + x >= 0 has bit width-2 set
        self.ones = self.pack([1] * self.n)
        self.top = self.ones << (self.width - 2)
        # bias - size in every lane: 2*copied + this has the top bit when 2*copied >= size.
        self.bias_minus_size = self.pack([self.bias - size for size in sizes])

    def pack(self, values: Sequence[int]) -> int:
        packed = array(self.code, values)
        if sys.byteorder != "little":
            packed.byteswap()
        return int.from_bytes(packed.tobytes(), "little")

    def unpack(self, packed: int) -> "array[int]":
        values = array(self.code)
        values.frombytes(packed.to_bytes(self.n * self.width // 8, "little"))
        if sys.byteorder != "little":
            values.byteswap()
        return values

    def at_least_half(self, copied: int, dst_size: int) -> list[int]:
        """The lanes where 2 * copied >= max(source size, dst_size): the pairs that can score
        >= MIN_SCORE (and that also pass the size check, which this implies)."""
        if dst_size > self.bias:
            return []  # no source is big enough to share half of it
        twice = copied << 1
        hits = (twice + self.bias_minus_size) & (twice + self.ones * (self.bias - dst_size))
        hits &= self.top
        if not hits:
            return []
        raw = hits.to_bytes(self.n * self.width // 8, "little")
        step = self.width // 8
        flag = bytes([1 << ((self.width - 2) % 8)])  # the top bit sits in a lane's last byte
        lanes: list[int] = []
        at = raw.find(flag)
        while at >= 0:
            lanes.append(at // step)
            at = raw.find(flag, at + 1)
        return lanes


_LANE_MEMORY = 64 << 20  # bytes of packed rows kept for the frequent chunks of one matrix


def _inexact_matrix(r: _Renames, blobs: _Blobs, remaining: list[int]) -> None:
    """The matrix of diffcore_rename_extended, record_if_better, and find_renames.

    git scores every destination against every source. Only pairs scoring >= MIN_SCORE can
    become renames, and such a pair shares at least half of the larger file's bytes, which
    also means it passes the size check. So here a destination's bytes in common with every
    source are summed from an index of chunk hash -> sources (per source in a Python list for
    rare chunks, all sources at once in packed lanes for frequent ones), the pairs sharing
    half are found with a few integer operations over the lanes, and only those are scored,
    with git's formula. The other pairs can change one thing: which of several equally scored
    candidates of a destination comes first (the slot record_if_better leaves it in); when a
    destination has such a tie, record_if_better is replayed over all sources as git runs it.
    """
    dst_list = [d for d in range(len(r.dsts)) if r.dst_src[d] < 0]
    src_oid = {s: r.base[r.srcs[s]][1] for s in remaining if _is_reg(r.base[r.srcs[s]][0])}
    dst_oid = {d: r.side[r.dsts[d]][1] for d in dst_list if _is_reg(r.side[r.dsts[d]][0])}
    blobs.load_sizes(src_oid.values())
    blobs.load_sizes(dst_oid.values())

    # Only a blob with a partner of a fitting size (at most twice or half its size, with a
    # byte of slack either way) is ever compared, so only those need span tables.
    def fitting(size: int, sizes: list[int]) -> bool:
        lo = bisect_left(sizes, (size + 1) // 2 - 1)
        return lo < len(sizes) and sizes[lo] <= 2 * size + 1

    src_sizes = sorted(blobs.sizes[oid] for oid in src_oid.values())
    dst_sizes = sorted(blobs.sizes[oid] for oid in dst_oid.values())
    lanes_of = [s for s, oid in src_oid.items() if fitting(blobs.sizes[oid], dst_sizes)]
    dsts = [d for d, oid in dst_oid.items() if fitting(blobs.sizes[oid], src_sizes)]
    blobs.load_tables([src_oid[s] for s in lanes_of] + [dst_oid[d] for d in dsts])
    blobs.forget_contents()
    if not lanes_of or not dsts:
        return

    sizes = [blobs.sizes[src_oid[s]] for s in lanes_of]
    lanes = _Lanes(sizes)
    lane_of = {s: k for k, s in enumerate(lanes_of)}
    # chunk hash -> bytes -> the lanes (sources) whose chunks with that hash add up to that
    groups: dict[int, dict[int, list[int]]] = {}
    for k, s in enumerate(lanes_of):
        for h, count in blobs.tables[src_oid[s]].items():
            groups.setdefault(h, {}).setdefault(count, []).append(k)

    # A group of more than `frequent` sources is added as a packed row (one integer addition
    # costs about as much as n/25 steps of a Python loop); memory caps the number of rows.
    frequent = max(16, lanes.n // 25)
    most_rows = _LANE_MEMORY // (lanes.n * lanes.width // 8)
    sizes_of_groups = sorted((len(g) for by in groups.values() for g in by.values()), reverse=True)
    if len(sizes_of_groups) > most_rows:
        frequent = max(frequent, sizes_of_groups[most_rows] + 1)
    # chunk hash -> ([(bytes, packed row of those bytes in the group's lanes)], [(bytes, lanes)])
    index: dict[int, tuple[list[tuple[int, int]], list[tuple[int, list[int]]]]] = {}
    for h, by_count in groups.items():
        rows: list[tuple[int, int]] = []
        rare: list[tuple[int, list[int]]] = []
        for count, group in by_count.items():
            if len(group) >= frequent:
                values = [0] * lanes.n
                for k in group:
                    values[k] = count
                rows.append((count, lanes.pack(values)))
            else:
                rare.append((count, group))
        index[h] = (rows, rare)
    del groups

    # (score, name_score, position, slot, source, destination) of the kept pairs >= MIN_SCORE:
    # position is the destination's row in git's matrix (destinations not yet paired, in order)
    kept: list[tuple[int, int, int, int, int, int]] = []
    fits = set(dsts)
    for position, d in enumerate(dst_list):
        if d not in fits:
            continue  # a symlink/gitlink, or no source of a fitting size: every score is 0
        dsize = blobs.sizes[dst_oid[d]]
        packed = 0
        counts = [0] * lanes.n
        for h, dcount in blobs.tables[dst_oid[d]].items():
            found = index.get(h)
            if found is None:
                continue
            rows, rare = found
            for count, shared in rows:
                # the pair has min(source's, destination's) bytes of this hash in common
                packed += shared if count <= dcount else shared // count * dcount
            for count, group in rare:
                add = count if count < dcount else dcount
                for k in group:
                    counts[k] += add
        copied = packed + lanes.pack(counts)
        hits = lanes.at_least_half(copied, dsize)
        if not hits:
            continue
        per_lane = lanes.unpack(copied)
        dname = _basename(r.dsts[d])
        good: list[tuple[int, int, int]] = []
        for k in hits:
            score = _score(per_lane[k], sizes[k], dsize)
            if score >= MIN_SCORE:
                s = lanes_of[k]
                good.append((score, int(_basename(r.srcs[s]) == dname), s))
        if not good:
            continue
        if len({(score, name) for score, name, _ in good}) == len(good):
            # No ties: the four slots end up holding the four best, whatever their order.
            good.sort(key=lambda g: (-g[0], -g[1]))
            for slot, (score, name, s) in enumerate(good[:NUM_CANDIDATE_PER_DST]):
                kept.append((score, name, position, slot, s, d))
            continue
        # Ties: replay record_if_better over the sources in git's order, each scored as
        # estimate_similarity would. A slot holds (score, name_score, source); (-1, -1) is an
        # empty slot, worse than any pair.
        slots: list[tuple[int, int, int]] = [(-1, -1, -1)] * NUM_CANDIDATE_PER_DST
        for s in remaining:
            k = lane_of.get(s, -1)
            score = 0
            if k >= 0 and not _sizes_too_different(sizes[k], dsize, MIN_SCORE):
                score = _score(per_lane[k], sizes[k], dsize)
            key = (score, int(_basename(r.srcs[s]) == dname))
            worst = 0
            for i in range(1, NUM_CANDIDATE_PER_DST):
                if slots[i][:2] < slots[worst][:2]:
                    worst = i
            if key > slots[worst][:2]:
                slots[worst] = (key[0], key[1], s)
        for slot, (score, name, s) in enumerate(slots):
            if score >= MIN_SCORE:
                kept.append((score, name, position, slot, s, d))

    # git's STABLE_QSORT by score_compare: higher score, then same basename, first; equal ones
    # keep their place in the matrix (destination row, then slot).
    kept.sort(key=lambda k: (-k[0], -k[1], k[2], k[3]))
    for _, _, _, _, s, d in kept:  # find_renames
        if r.dst_src[d] >= 0 or r.src_used[s]:
            continue
        r.record(d, s)


_UNKNOWN_DIR = "/"  # diffcore-rename.c UNKNOWN_DIR: a placeholder no directory is called


def _determinable(per_dir: dict[str, int]) -> bool:
    """dir_rename_already_determinable: the leading destination wins however the sources
    not yet paired (UNKNOWN_DIR) turn out."""
    first = second = unknown = 0
    for new_dir, count in per_dir.items():
        if new_dir == _UNKNOWN_DIR:
            unknown = count
        elif count >= first:
            first, second = count, first
        elif count >= second:
            second = count
    return first > second + unknown


def _cull_known_dir_renames(
    r: _Renames, remaining: list[int], removed: dict[str, int], location_only: frozenset[str]
) -> list[int]:
    """handle_early_known_dir_renames: a directory RELEVANT_FOR_SELF whose rename the pairs
    found so far already settle becomes RELEVANT_FOR_ANCESTOR, and a source that matters only
    for its location (RELEVANT_LOCATION) leaves the matrix unless a directory above it still
    needs renames (RELEVANT_FOR_SELF) before one that does not matter (NOT_RELEVANT)."""
    counts: dict[str, dict[str, int]] = {}
    for d, s in enumerate(r.dst_src):
        if s >= 0:
            _count_dir_rename(counts, removed, r.srcs[s], r.dsts[d])
    for s in remaining:
        directory = _dirname(r.srcs[s])
        while directory and removed.get(directory, _NOT_RELEVANT) != _NOT_RELEVANT:
            per_dir = counts.setdefault(directory, {})
            per_dir[_UNKNOWN_DIR] = per_dir.get(_UNKNOWN_DIR, 0) + 1
            directory = _dirname(directory)
    for directory, per_dir in counts.items():
        if removed.get(directory) == _RELEVANT_FOR_SELF and _determinable(per_dir):
            removed[directory] = _RELEVANT_FOR_ANCESTOR
    kept = []
    for s in remaining:
        path = r.srcs[s]
        if path in location_only:
            directory = _dirname(path)
            while (flag := removed.get(directory, _NOT_RELEVANT)) == _RELEVANT_FOR_ANCESTOR:
                directory = _dirname(directory)
            if flag != _RELEVANT_FOR_SELF:
                continue  # RELEVANT_NO_MORE
        kept.append(s)
    return kept


def detect_renames(
    base: FileMap,
    side: FileMap,
    read_blob: BlobReader,
    *,
    limit: int = DEFAULT_RENAME_LIMIT,
    relevant_sources: Collection[str] | None = None,
    location_sources: Collection[str] = (),
    dirs_removed: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """The renames ort finds between the merge base and one side: old path -> new path, for
    paths deleted from `base` and added in `side`.

    `limit` is merge.renameLimit (<= 0 means the default 7000, as in ort): with more than
    limit**2 destinations x sources left after exact and basename matches, the inexact matrix
    is skipped. `relevant_sources` are the deleted paths whose rename matters to the merge (for
    ort, the ones whose mode or blob the other side changed, or that it deleted too): only they
    are paired by basename or similarity, any source by identical blob. By default all matter,
    as in `git diff -M`. When none of the deleted paths does, ort does not look for renames at
    all, so the result is empty. `location_sources` are relevant only for where their directory
    went (ort's RELEVANT_LOCATION): once the renames found so far settle that, they are dropped
    before the inexact matrix (handle_early_known_dir_renames). `dirs_removed` is ort's map of
    removed directories to their relevance, which its basename guesses count renames with
    (default: every removed directory, not relevant).
    """
    if limit <= 0:
        limit = DEFAULT_RENAME_LIMIT
    deleted = sorted(base.keys() - side.keys())
    if not deleted:
        return {}
    relevant: Collection[str] | None = None
    if relevant_sources is not None:
        relevant = frozenset(relevant_sources)
        if relevant.isdisjoint(deleted):
            return {}
    srcs = [p for p in deleted if base[p][1] != EMPTY_BLOB]
    dsts = sorted(p for p in side.keys() - base.keys() if side[p][1] != EMPTY_BLOB)
    if not srcs or not dsts:
        return {}

    r = _Renames(base, side, srcs, dsts)
    _find_exact_renames(r)
    # remove_unneeded_paths_from_src: sources taken by exact renames are gone.
    remaining = [s for s in range(len(srcs)) if not r.src_used[s]]
    if not remaining or r.count == len(dsts):
        return r.result()

    blobs = _Blobs(read_blob)
    removed = dict(dirs_removed) if dirs_removed is not None else None
    _find_basename_matches(
        r,
        blobs,
        remaining,
        relevant,
        (lambda: removed) if removed is not None else (lambda: _removed_dirs(base, side)),
    )
    # Cull again: paired sources, and sources whose rename does not matter to the merge.
    remaining = [
        s for s in remaining if not r.src_used[s] and (relevant is None or r.srcs[s] in relevant)
    ]
    if removed is not None and location_sources:
        remaining = _cull_known_dir_renames(r, remaining, removed, frozenset(location_sources))
    num_destinations = len(dsts) - r.count
    if not num_destinations or not remaining:
        return r.result()
    # too_many_rename_candidates (no copies, so no -C -C fallback)
    if num_destinations * len(remaining) > limit * limit:
        return r.result()
    _inexact_matrix(r, blobs, remaining)
    return r.result()
