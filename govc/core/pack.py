"""Write git pack files (version 2) and their .idx (version 2), with deltas, in pure Python.

The byte format is git's (Documentation/gitformat-pack.txt); `git index-pack` run on one of our
packs writes an .idx byte-identical to ours (the tests check it).

Which base: a tree or blob is stored as an OFS_DELTA against the object last written at the same
path (failing that, under the same file name: a move). Objects arrive newest commit first, as a
history walk yields them, so the base is the *newer* version and older versions are deltas of it,
as git prefers: recent versions are the cheapest to read, and code mostly grows, so an older
version is mostly copies out of the newer one. Chains stop at depth 50 (git's pack.depth); a
delta is kept only under half the size of the object (about git's rule); kinds never mix.

How: CPython cannot afford a loop per byte (git's rolling hash), so the encoder leans on C calls.
The common prefix and suffix are found by galloping memcmp (`bytes.startswith` on a memoryview).
In the middle, units of the target (paragraphs, then lines; tree entries for trees) are looked
up in a dict of the base's units, and each hit is extended both ways with memcmp again: Python
steps happen per changed unit and per run of unchanged ones, never per unchanged line.
"""

import hashlib
import os
import struct
import tempfile
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import BinaryIO

from govc.core.gitformat import BLOB, COMMIT, TAG, TREE

# Entry types (gitformat-pack.txt). REF_DELTA (7) is never written: OFS_DELTA is smaller and
# needs no lookup by id when read.
_TYPE_NUMBERS = {COMMIT: 1, TREE: 2, BLOB: 3, TAG: 4}
_OFS_DELTA = 6

MAX_DEPTH = 50  # git's pack.depth default
# Anchors (see _write_entries): versions up to this depth become one; a chain is restarted with
# a whole copy rather than go back to an anchor this deep (the branches would get too short).
_ANCHOR_DEPTH = 10
_ANCHOR_LIMIT = MAX_DEPTH - 5
# Smaller objects are stored whole: the delta header and a copy op would eat what a delta saves.
MIN_DELTA_SIZE = 64
# Larger objects are neither deltified nor bases. Encoding is linear, but it holds a few copies
# of the object's changed middle (units, dict) at once; git has core.bigFileThreshold for this.
MAX_DELTA_SIZE = 16 * 1024 * 1024
# Bytes of delta-base candidates held: one per path, the least recently used dropped first.
WINDOW_MEMORY = 64 * 1024 * 1024
COMPRESSION_LEVEL = zlib.Z_DEFAULT_COMPRESSION  # git's default (core.compression -1, i.e. 6)

# Units matched through a dict, coarse first (see _middle): paragraphs, then lines. Binary data
# takes them too: its newlines are content-defined cut points, which survive insertions.
TEXT_SEPARATORS = (b"\n\n", b"\n")
# A tree is "mode name\0" + 20 raw id bytes per entry: cut at the NUL, a unit is the previous
# entry's id and this entry's mode and name.
TREE_SEPARATORS = (b"\0",)
_SEPARATORS = {COMMIT: TEXT_SEPARATORS, TREE: TREE_SEPARATORS, BLOB: TEXT_SEPARATORS}
# For a middle with (almost) no newline, e.g. minified code: the first of these that is common.
_OTHER_SEPARATORS = (b";", b" ", b",", b">", b"\0")
_MAX_UNIT = 4096  # average unit length above which a separator is too rare to match by

_MAX_COPY = 0x10000  # git's encoder copies at most this per op (2 size bytes, 0 meaning 0x10000)
_MAX_INSERT = 0x7F
_MIN_COPY = 12  # a shorter match is inserted: a copy op takes up to 7 bytes
_XOR_CHUNK = 1024  # see _forward
_FLUSH_BYTES = 1 << 20


@dataclass(frozen=True)
class PackObject:
    kind: str  # "commit" | "tree" | "blob" | "tag"
    oid: bytes  # 20-byte SHA-1 of the git object (header + content); trusted, not recomputed
    content: bytes  # the object body without the "kind size\0" header
    path: str = ""  # for trees and blobs: the path it was found at ("" for the root tree)


@dataclass(frozen=True)
class PackFiles:
    pack: Path  # <directory>/pack-<checksum>.pack
    index: Path  # <directory>/pack-<checksum>.idx
    checksum: str  # the pack's SHA-1 trailer (hex), which also names it
    objects: int
    deltas: int
    pack_size: int  # bytes of the .pack


def write_pack(
    directory: Path, objects: Iterable[PackObject], *, level: int = COMPRESSION_LEVEL
) -> PackFiles:
    """Write `objects` as pack-<sha>.pack and pack-<sha>.idx in `directory` (created if need be).

    Objects are streamed: held are the delta-base candidates (one per path, WINDOW_MEMORY at
    most) and, per object, its id, offset and CRC for the index. An id given twice is written
    once. The files appear under their final names only when complete.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix="tmp_pack_", dir=directory)
    tmp_pack = Path(tmp_name)
    tmp_idx: Path | None = None
    try:
        with os.fdopen(fd, "w+b") as f:
            writer = _PackWriter(f, level)
            deltas = _write_entries(writer, objects)
            checksum = writer.finish()
        fd, idx_name = tempfile.mkstemp(prefix="tmp_idx_", dir=directory)
        tmp_idx = Path(idx_name)
        with os.fdopen(fd, "wb") as f:
            f.write(_index_bytes(writer.oids, writer.offsets, writer.crcs, checksum))
        name = f"pack-{checksum.hex()}"
        pack_path, idx_path = directory / f"{name}.pack", directory / f"{name}.idx"
        size = tmp_pack.stat().st_size
        tmp_pack.chmod(0o444)  # read-only, as git leaves them
        tmp_idx.chmod(0o444)
        # The pack first: readers find packs through their .idx, so none sees an index whose
        # pack is missing.
        os.replace(tmp_pack, pack_path)
        os.replace(tmp_idx, idx_path)
    except BaseException:
        tmp_pack.unlink(missing_ok=True)
        if tmp_idx is not None:
            tmp_idx.unlink(missing_ok=True)
        raise
    return PackFiles(pack_path, idx_path, checksum.hex(), len(writer.oids), deltas, size)


@dataclass(slots=True)
class _Base:
    """A delta-base candidate: an object written at one (kind, path)."""

    number: int  # of its entry in the pack
    content: bytes
    depth: int  # deltas to apply to read it (0: stored whole)


@dataclass(slots=True)
class _Slot:
    """The delta-base candidates of one (kind, path): the last object written there, and an
    anchor, a recent shallower one to go back to when `last` is as deep as chains may go."""

    last: _Base
    anchor: _Base | None

    def held(self) -> int:
        anchor = self.anchor
        extra = len(anchor.content) if anchor is not None and anchor is not self.last else 0
        return len(self.last.content) + extra


def _write_entries(writer: "_PackWriter", objects: Iterable[PackObject]) -> int:
    """Write every object, as a delta where one pays; returns the number of deltas.

    Chains: each version of a path is a delta of the one written before it (the next newer),
    one deeper. A plain chain would have to store every 51st version whole; instead, at the
    depth limit the next version is a delta of the anchor, the last version at depth <= 10 or
    the last such jump's result, and the chain goes on from there, so chains branch as git's do
    and a whole copy serves hundreds of versions (NEWS of dulwich, 1342 versions: 28 whole
    copies instead of 5 by git -- 520 KB against 73 KB -- before this; 5 after). The jump
    costs little: an older version is mostly copies of a newer one however far apart.
    """
    seen: set[bytes] = set()
    slots: OrderedDict[tuple[str, str], _Slot] = OrderedDict()  # least recently used first
    by_name: dict[tuple[str, str], tuple[str, str]] = {}  # (kind, file name) -> a slots key
    window = 0  # bytes held by slots
    deltas = 0
    for obj in objects:
        oid = obj.oid
        if oid in seen:
            continue
        seen.add(oid)
        kind = obj.kind
        content = obj.content
        if (
            kind == TAG
            or not MIN_DELTA_SIZE <= len(content) <= MAX_DELTA_SIZE
            or (kind == BLOB and not obj.path)  # no hint: unrelated blobs would be tried
        ):
            writer.add(oid, _TYPE_NUMBERS[kind], content)
            continue
        # Commits have no path: each is tried against the one before it in the walk (author,
        # committer, message trailers recur). Trees and blobs against their path's last one.
        key = (kind, obj.path)
        base: _Base | None
        slot = slots.pop(key, None)
        if slot is not None:
            window -= slot.held()
            base, anchor = slot.last, slot.anchor
        else:
            # A new path: a renamed file or directory whose newer version was written under
            # another path, most often with the same name (a move between directories).
            name_key = (kind, obj.path.rpartition("/")[2])
            other = by_name.get(name_key)
            other_slot = slots.get(other) if other is not None else None
            base, anchor = (other_slot.last if other_slot is not None else None), None
            by_name[name_key] = key
        jump = base is not None and base.depth >= MAX_DEPTH
        if jump:
            base = anchor if anchor is not None and anchor.depth < _ANCHOR_LIMIT else None
        delta = None
        if base is not None:
            delta = make_delta(base.content, content, _SEPARATORS[kind])
        if base is not None and delta is not None:
            number = writer.add(oid, _OFS_DELTA, delta, base.number)
            written = _Base(number, content, base.depth + 1)
            deltas += 1
        else:
            written = _Base(writer.add(oid, _TYPE_NUMBERS[kind], content), content, 0)
        if jump or written.depth <= _ANCHOR_DEPTH:
            anchor = written
        slot = _Slot(written, anchor)
        slots[key] = slot
        window += slot.held()
        while window > WINDOW_MEMORY:
            window -= slots.popitem(last=False)[1].held()
    return deltas


# ---- deltas ----


def make_delta(
    base: bytes, target: bytes, separators: tuple[bytes, ...] = TEXT_SEPARATORS
) -> bytes | None:
    """A git delta that rebuilds `target` from `base`, or None if it is not under half of
    `target`'s size. `separators` cut the changed middle into units, coarse first."""
    len_t, len_b = len(target), len(base)
    limit = len_t // 2  # the delta must stay under this many bytes
    if len_b <= len_t - limit:
        return None  # at least half of target would be inserted
    base_view = memoryview(base)
    out = bytearray(_varint(len_b))
    out += _varint(len_t)
    prefix = _forward(target, 0, base_view, 0, min(len_t, len_b), 0)
    suffix = _backward(target, len_t, base_view, len_b, min(len_t, len_b) - prefix)
    end = len_t - suffix
    if prefix:
        _copy(out, 0, prefix) if prefix >= _MIN_COPY else _insert(out, target, 0, prefix)
    if prefix < end:
        _middle(out, target, prefix, end, base, base_view, prefix, len_b - suffix, separators)
        if len(out) >= limit:
            return None
    if suffix:
        if suffix >= _MIN_COPY:
            _copy(out, len_b - suffix, suffix)
        else:
            _insert(out, target, end, len_t)
    return bytes(out) if len(out) < limit else None


def _middle(
    out: bytearray,
    target: bytes,
    start: int,
    end: int,
    base: bytes,
    base_view: memoryview,
    base_start: int,
    base_end: int,
    separators: tuple[bytes, ...],
) -> None:
    """Encode target[start:end], matching it against base[base_start:base_end] first.

    Building the dict of base units is the main cost, so the first pass uses coarse units
    (paragraphs: a sixth as many as lines); what falls between two of its runs is encoded again
    with the next, finer separator, against just the base between those runs (_gap).
    """
    separator, finer = separators[0], separators[1:]
    region = base[base_start:base_end]
    if not finer and len(region) > _MAX_UNIT * (region.count(separator) + 1):
        separator = _rare_separator(region, separator)
    units = region.split(separator)
    del region
    skip = len(separator)
    # unit -> its offset in base. A unit found twice keeps its last offset: a wrong guess only
    # makes a short run, repaired by the backward extension of the next one. (The offsets run
    # one past the units: the end of the last one.)
    offsets = accumulate(map(skip.__add__, map(len, units)), initial=base_start)
    get = dict(zip(units, offsets, strict=False)).get
    del units
    len_b = len(base)
    limit = len(target) // 2
    find = target.find
    pending = start  # target[pending:pos] is not encoded yet
    matched = base_start  # where the last run ended in base
    pos = start
    while pos < end:
        cut = find(separator, pos, end)
        unit_end = end if cut < 0 else cut
        hit = get(target[pos:unit_end])
        if hit is None:
            pos = unit_end + skip
            continue
        # Forward from the unit's start (the unit is known equal), backward into what is
        # pending (short units before it, a unit whose twin was picked, ...).
        ahead = _forward(target, pos, base_view, hit, min(end - pos, len_b - hit), unit_end - pos)
        behind = _backward(target, pos, base_view, hit, min(pos - pending, hit))
        if ahead + behind < _MIN_COPY:
            pos = unit_end + skip
            continue
        if pending < pos - behind:
            _gap(out, target, pending, pos - behind, base, base_view, matched, hit - behind, finer)
        _copy(out, hit - behind, ahead + behind)
        if len(out) >= limit:
            return  # the delta is not worth it: make_delta gives up
        pos += ahead
        pending = pos
        matched = hit + ahead
    if pending < end:
        _gap(out, target, pending, end, base, base_view, matched, base_end, finer)


def _gap(
    out: bytearray,
    target: bytes,
    start: int,
    end: int,
    base: bytes,
    base_view: memoryview,
    base_start: int,
    base_end: int,
    separators: tuple[bytes, ...],
) -> None:
    """target[start:end] lies between two runs, and base[base_start:base_end] between their
    sources: most often one edited stretch. Match it with finer units if any, else insert it."""
    if separators and end - start >= 2 * _MIN_COPY and base_end - base_start >= _MIN_COPY:
        _middle(out, target, start, end, base, base_view, base_start, base_end, separators)
    else:
        _insert(out, target, start, end)


def _rare_separator(region: bytes, separator: bytes) -> bytes:
    """A separator to cut `region` by when `separator` is too rare in it."""
    for other in _OTHER_SEPARATORS:
        if len(region) <= _MAX_UNIT * region.count(other):
            return other
    return separator


def _forward(a: bytes, i: int, b: memoryview, j: int, limit: int, known: int) -> int:
    """Length of the common run of a[i:] and b[j:], at most `limit`; `known` bytes are equal.

    Galloping memcmp (`startswith` compares to a memoryview slice without copying it), then
    the first difference in the last chunk in one go: the lowest set bit of the XOR of the two
    chunks read as little-endian integers. O(log run) C calls.
    """
    n = known
    step = 256
    while n < limit:
        s = min(step, limit - n)
        if a.startswith(b[j + n : j + n + s], i + n):
            n += s
            step <<= 1
            continue
        while s > _XOR_CHUNK:  # bisect first: the XOR copies its chunks
            half = s >> 1
            if a.startswith(b[j + n : j + n + half], i + n):
                n += half
                s -= half
            else:
                s = half
        x = int.from_bytes(a[i + n : i + n + s], "little") ^ int.from_bytes(
            b[j + n : j + n + s], "little"
        )
        return n + (((x & -x).bit_length() - 1) >> 3)
    return limit


def _backward(a: bytes, i: int, b: memoryview, j: int, limit: int) -> int:
    """Length of the common run ending just before a[i] and b[j], at most `limit`: _forward
    mirrored (big-endian integers put the last bytes in the low bits)."""
    if limit <= 0 or a[i - 1] != b[j - 1]:
        return 0  # the common case, ruled out cheaply
    n = 0
    step = 64
    while n < limit:
        s = min(step, limit - n)
        if a.endswith(b[j - n - s : j - n], 0, i - n):
            n += s
            step <<= 1
            continue
        while s > _XOR_CHUNK:
            half = s >> 1
            if a.endswith(b[j - n - half : j - n], 0, i - n):
                n += half
                s -= half
            else:
                s = half
        x = int.from_bytes(a[i - n - s : i - n], "big") ^ int.from_bytes(
            b[j - n - s : j - n], "big"
        )
        return n + (((x & -x).bit_length() - 1) >> 3)
    return limit


def _copy(out: bytearray, offset: int, size: int) -> None:
    """Copy ops for base[offset:offset + size]. Each is 1oooossss then just the non-zero bytes
    of a 4-byte offset and a 2-byte size (the bits say which); a size of 0x10000 has no size
    bytes (size 0), as git writes it. C calls instead of a loop over the six bytes."""
    while size > _MAX_COPY:
        _copy(out, offset, _MAX_COPY)
        offset += _MAX_COPY
        size -= _MAX_COPY
    fields = _OFFSET_SIZE(offset, size & 0xFFFF)
    out.append(_COPY_COMMANDS[fields.translate(_NONZERO)])
    out += fields.replace(b"\0", b"")


_OFFSET_SIZE = struct.Struct("<IH").pack
_NONZERO = bytes([0] + [1] * 255)  # a translate table: byte -> is it sent
_COPY_COMMANDS = {bytes((bits >> k) & 1 for k in range(6)): 0x80 | bits for bits in range(64)}


def _insert(out: bytearray, data: bytes, start: int, end: int) -> None:
    """Insert ops for data[start:end]: a length byte (1..127), then that many bytes."""
    while start < end:
        n = min(end - start, _MAX_INSERT)
        out.append(n)
        out += data[start : start + n]
        start += n


def _varint(n: int) -> bytes:
    """A size in a delta header: 7 bits a byte, least significant first, high bit = more."""
    out = bytearray()
    while n >= 0x80:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


# ---- the pack ----


def _entry_header(type_number: int, size: int) -> bytearray:
    """Type in bits 4-6 of the first byte with the low 4 bits of the size, then 7 bits a byte,
    high bit = more."""
    out = bytearray()
    byte = (type_number << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return out


def _ofs_encoding(distance: int) -> bytes:
    """An OFS_DELTA's distance back to its base: 7-bit groups, most significant first, high bit
    = more, and 1 added to each group but the last, so that no two encodings mean one number."""
    out = bytearray([distance & 0x7F])
    distance >>= 7
    while distance:
        distance -= 1
        out.append(0x80 | (distance & 0x7F))
        distance >>= 7
    out.reverse()
    return bytes(out)


def _zlib_settings(bits: int) -> tuple[int, int]:
    """(wbits, memLevel) for inputs under 2**bits bytes: the window still reaches back over the
    whole input (it must hold the input and zlib's 262-byte lookahead) and the symbol buffer
    still holds it all in one block, so the output is as small as with zlib's defaults."""
    return max(9, min(15, ((1 << bits) + 262).bit_length())), max(1, bits - 6)


# zlib.compress sets up ~270 KB of deflate state per call (32 KiB window, 2**15-entry hash, 16
# Ki-symbol buffer), which costs more than compressing a small object. Worse, when that state is
# at the top of the heap, malloc hands it back to the kernel on every free and takes it again on
# the next call (brk, page faults): measured 55 us a call instead of 5. State sized to the input
# is a few KB, immune to that, and compresses the same.
_SMALL_BITS = 14
_SMALL_SETTINGS = [_zlib_settings(bits) for bits in range(_SMALL_BITS + 1)]


def _deflate(data: bytes, level: int) -> bytes:
    """`data` as one zlib stream."""
    bits = len(data).bit_length()
    if bits > _SMALL_BITS:
        return zlib.compress(data, level)
    wbits, mem_level = _SMALL_SETTINGS[bits]
    compressor = zlib.compressobj(level, zlib.DEFLATED, wbits, mem_level)
    return compressor.compress(data) + compressor.flush()


class _PackWriter:
    """Appends entries to the pack through a buffer; keeps each one's id, offset and CRC32."""

    def __init__(self, f: BinaryIO, level: int) -> None:
        self.file = f
        self.level = level
        self.oids: list[bytes] = []  # by entry number
        self.offsets = array("Q")
        self.crcs = array("L")  # at least 32 bits
        self.buffer = bytearray(b"PACK" + struct.pack(">II", 2, 0))  # the count comes in finish
        self.offset = len(self.buffer)

    def add(self, oid: bytes, type_number: int, data: bytes, base: int = -1) -> int:
        """Append an entry (for OFS_DELTA, `data` is the delta and `base` its base's entry
        number); returns its entry number."""
        header = _entry_header(type_number, len(data))
        if type_number == _OFS_DELTA:
            header += _ofs_encoding(self.offset - self.offsets[base])
        packed = _deflate(data, self.level)
        self.oids.append(oid)
        self.offsets.append(self.offset)
        self.crcs.append(zlib.crc32(packed, zlib.crc32(header)))
        self.buffer += header
        self.buffer += packed
        self.offset += len(header) + len(packed)
        if len(self.buffer) >= _FLUSH_BYTES:
            self.file.write(self.buffer)
            self.buffer.clear()
        return len(self.oids) - 1

    def finish(self) -> bytes:
        """Write the object count into the header, then the SHA-1 trailer; returns the SHA-1.

        The count is known only now (objects are streamed), so the header is rewritten and the
        file read back to be hashed, as git's fast-import does.
        """
        f = self.file
        f.write(self.buffer)
        self.buffer.clear()
        f.seek(8)
        f.write(struct.pack(">I", len(self.oids)))
        f.seek(0)
        digest = hashlib.sha1()
        while chunk := f.read(_FLUSH_BYTES):
            digest.update(chunk)
        checksum = digest.digest()
        f.write(checksum)
        return checksum


def _index_bytes(
    oids: list[bytes], offsets: "array[int]", crcs: "array[int]", checksum: bytes
) -> bytes:
    """The .idx (version 2): magic, version, fanout (objects whose first id byte is <= i), the
    sorted ids, their entries' CRC32s, their offsets (31 bits, or with the high bit set an index
    into a table of 64-bit offsets, for offsets from 2 GiB on), the pack's and its own SHA-1."""
    order = sorted(range(len(oids)), key=oids.__getitem__)
    fanout = [0] * 256
    for oid in oids:
        fanout[oid[0]] += 1
    small: list[int] = []
    large: list[int] = []
    for offset in (offsets[i] for i in order):
        if offset < 0x80000000:
            small.append(offset)
        else:
            small.append(0x80000000 | len(large))
            large.append(offset)
    out = bytearray(b"\377tOc" + struct.pack(">I", 2))
    out += struct.pack(">256I", *accumulate(fanout))
    out += b"".join([oids[i] for i in order])
    out += struct.pack(f">{len(order)}I", *[crcs[i] for i in order])
    out += struct.pack(f">{len(small)}I", *small)
    out += struct.pack(f">{len(large)}Q", *large)
    out += checksum
    out += hashlib.sha1(out).digest()
    return bytes(out)
