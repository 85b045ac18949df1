"""Pack writer: what real git makes of our packs (verify-pack, fsck, index-pack), and the
delta encoder against a reference decoder."""

import hashlib
import random
import shutil
import struct
import subprocess
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govc.core import pack
from govc.core.pack import PackFiles, PackObject, make_delta, write_pack
from tests.gitoracle import Git

BIG_LINES = 12_000  # big.txt: ~300 KB: copies from past 64 KiB, a 4-byte entry header


def git(git_dir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["git", "--git-dir", str(git_dir), *args], input=stdin, capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def text(rng: random.Random, lines: int) -> bytes:
    words = ["alpha", "beta", "gamma", "delta", "pack", "tree", "blob", "commit", "x", "yy"]
    return b"".join(
        (" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) + "\n").encode()
        for _ in range(lines)
    )


def edit(rng: random.Random, data: bytes) -> bytes:
    """A few lines changed, added or removed, as a commit would."""
    lines = data.splitlines(keepends=True)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(lines) + 1)
        choice = rng.random()
        if choice < 0.4 and at < len(lines):
            lines[at] = text(rng, 1)
        elif choice < 0.7 or not lines:
            lines[at:at] = [text(rng, rng.randint(1, 5))]
        else:
            del lines[at : at + rng.randint(1, 3)]
    return b"".join(lines)


def checkout(repo: Git, files: dict[str, bytes]) -> None:
    """Make the work tree hold exactly `files`."""
    for path in repo.path.rglob("*"):
        name = path.relative_to(repo.path).as_posix()
        if path.is_file() and not name.startswith(".git/") and name not in files:
            path.unlink()
    for name, content in files.items():
        repo.write(name, content)


def build_history(path: Path) -> Git:
    """~60 commits editing, adding, renaming and deleting text and binary files; a branch, an
    annotated tag. Dates, names and seeds are fixed."""
    rng = random.Random(1234)
    repo = Git(path)
    files: dict[str, bytes] = {
        "README.md": b"# test\n",
        "src/app.py": text(rng, 80),
        "src/util.py": text(rng, 40),
        "docs/guide.txt": text(rng, 60),
        "docs/notes.txt": text(rng, 20),
        "chain.txt": text(rng, 30),  # edited by every commit: a chain longer than 50
        "empty.txt": b"",
        "data/blob.bin": rng.randbytes(20_000),
        "big.txt": text(rng, BIG_LINES),
    }
    checkout(repo, files)
    when = 1_700_000_000
    repo.run("add", "-A")
    repo.run("commit", "-q", "-m", "initial", when=when)
    for i in range(1, 60):
        when += 3600
        files["chain.txt"] = edit(rng, files["chain.txt"])
        if i % 2:
            name = rng.choice([n for n in files if n.endswith((".py", ".txt", ".md"))])
            if files[name]:
                files[name] = edit(rng, files[name])
        if i % 5 == 0:
            blob = bytearray(files["data/blob.bin"])
            at = rng.randrange(len(blob))
            blob[at : at + 16] = rng.randbytes(16)
            files["data/blob.bin"] = bytes(blob[:at] + rng.randbytes(50) + blob[at:])
        if i % 7 == 0:
            # Near the end of big.txt: the copy before the change is over 0x10000 bytes long,
            # the one after starts past 64 KiB.
            lines = files["big.txt"].splitlines(keepends=True)
            at = len(lines) - rng.randint(10, 100)
            lines[at] = text(rng, 1)
            files["big.txt"] = b"".join(lines)
        if i % 9 == 0:
            files[f"new/file{i}.txt"] = text(rng, 10)
        if i == 20:  # a file moved: same name, another directory
            files["lib/util.py"] = files.pop("src/util.py")
        if i == 30:  # a directory renamed
            for name in [n for n in files if n.startswith("docs/")]:
                files["manual/" + name[5:]] = files.pop(name)
        if i == 40:
            del files["manual/notes.txt"]
        checkout(repo, files)
        repo.run("add", "-A")
        repo.run("commit", "-q", "-m", f"change {i}\n\nbody {i}", when=when)
        if i == 45:
            repo.run("tag", "-a", "v1.0", "-m", "release 1.0", when=when)
        if i == 50:
            repo.run("branch", "side", "HEAD~3")
    repo.run("checkout", "-q", "side")
    repo.write("side.txt", text(rng, 10))
    repo.run("add", "-A")
    repo.run("commit", "-q", "-m", "on the side", when=when + 60)
    repo.run("checkout", "-q", "main")
    return repo


def read_objects(git_dir: Path) -> list[PackObject]:
    """Every reachable object, newest commit first as a history walk yields them, with the path
    each tree and blob was first found at."""
    listing = git(git_dir, "rev-list", "--objects", "--all").decode().splitlines()
    order = [line.partition(" ") for line in listing]
    ids = "".join(oid + "\n" for oid, _, _ in order).encode()
    batch = git(git_dir, "cat-file", "--batch", stdin=ids)
    objects = []
    pos = 0
    for oid, _, path in order:
        header_end = batch.index(b"\n", pos)
        got, kind, size = batch[pos:header_end].decode().split()
        assert got == oid
        content = batch[header_end + 1 : header_end + 1 + int(size)]
        pos = header_end + 2 + int(size)
        objects.append(PackObject(kind, bytes.fromhex(oid), content, path))
    return objects


@dataclass
class Exported:
    source: Path  # the .git directory written by git
    dest: Path  # a bare repository holding only our pack
    objects: list[PackObject]
    result: PackFiles


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    root = tmp_path_factory.mktemp("pack")
    source = build_history(root / "source").path / ".git"
    objects = read_objects(source)
    dest = root / "dest.git"
    Git(dest, bare=True)
    result = write_pack(dest / "objects" / "pack", objects)
    refs = git(source, "for-each-ref", "--format=%(objectname) %(refname)").decode()
    for line in refs.splitlines():
        oid, ref = line.split(" ")
        git(dest, "update-ref", ref, oid)
    return Exported(source, dest, objects, result)


def verify_pack(result: PackFiles) -> list[list[str]]:
    """verify-pack -v's object lines: id, type, size, size in pack, offset[, depth, base]."""
    out = subprocess.run(
        ["git", "verify-pack", "-v", str(result.index)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith(": ok")
    return [line.split() for line in out.stdout.splitlines() if len(line.split()[0]) == 40]


def test_verify_pack_lists_every_object_with_bounded_deltas(exported: Exported) -> None:
    rows = verify_pack(exported.result)
    assert sorted(row[0] for row in rows) == sorted(o.oid.hex() for o in exported.objects)
    assert exported.result.objects == len(exported.objects)
    deltas = [row for row in rows if len(row) == 7]
    assert len(deltas) == exported.result.deltas
    assert len(deltas) > len(rows) // 3  # most trees and blobs are deltas
    depths = [int(row[5]) for row in deltas]
    assert max(depths) == pack.MAX_DEPTH  # chain.txt changes in 61 commits: the cap is hit
    kinds = {row[0]: row[1] for row in rows}
    assert all(kinds[row[6]] == row[1] for row in deltas)  # a delta's base is of its kind
    assert {"tree", "blob"} <= {row[1] for row in deltas} <= {"tree", "blob", "commit"}
    assert exported.result.pack_size == exported.result.pack.stat().st_size


def test_fsck_is_clean_and_objects_read_back(exported: Exported) -> None:
    fsck = subprocess.run(
        ["git", "--git-dir", str(exported.dest), "fsck", "--strict", "--full"],
        capture_output=True,
        text=True,
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "dangling" not in fsck.stdout + fsck.stderr
    # Every object, as git reads it from our pack, against the source.
    ours = git(exported.dest, "cat-file", "--batch-all-objects", "--batch")
    theirs = git(exported.source, "cat-file", "--batch-all-objects", "--batch")
    assert ours == theirs
    for spec in ("HEAD:big.txt", "v1.0", "HEAD:", "side:side.txt", "HEAD~50:docs/guide.txt"):
        shown = git(exported.dest, "cat-file", "-p", spec)
        assert shown == git(exported.source, "cat-file", "-p", spec)
    log = ["log", "--all", "--format=%H %T %P %s"]
    assert git(exported.dest, *log) == git(exported.source, *log)


def test_index_pack_writes_the_same_idx(exported: Exported, tmp_path: Path) -> None:
    copy = tmp_path / "copy.pack"
    shutil.copyfile(exported.result.pack, copy)
    out = git(exported.dest, "index-pack", "-o", str(tmp_path / "copy.idx"), str(copy))
    assert out.decode().strip() == exported.result.checksum
    assert (tmp_path / "copy.idx").read_bytes() == exported.result.index.read_bytes()
    assert exported.result.pack.name == f"pack-{exported.result.checksum}.pack"
    assert sorted(p.name for p in exported.result.pack.parent.iterdir()) == [
        exported.result.index.name,
        exported.result.pack.name,
    ]  # no temporary file left


def test_bytes_do_not_depend_on_threads(exported: Exported, tmp_path: Path) -> None:
    big = sum(len(o.content) >= pack.THREAD_MIN for o in exported.objects)
    assert big > 5  # some objects are compressed by the workers
    one = write_pack(tmp_path / "one", exported.objects, threads=0)
    two = write_pack(tmp_path / "two", exported.objects, threads=2)
    assert one.checksum == two.checksum
    assert one.pack.read_bytes() == two.pack.read_bytes()


def test_edge_objects_and_delta_choices(exported: Exported) -> None:
    rows = {row[0]: row for row in verify_pack(exported.result)}

    def blob(spec: str) -> list[str]:
        return rows[git(exported.source, "rev-parse", spec).decode().strip()]

    assert blob("HEAD:empty.txt")[2] == "0"  # an object of size 0
    log = git(exported.source, "log", "--all", "--format=%H:big.txt", "--", "big.txt").decode()
    big = [rows[oid] for oid in git(exported.source, "rev-parse", *log.split()).decode().split()]
    # One version is stored whole, with a 4-byte size in its header (over 2**18 bytes) ...
    assert [len(row) for row in big].count(5) == 1
    whole = next(row for row in big if len(row) == 5)
    assert int(whole[2]) > 1 << 18
    # ... and the others are deltas of other versions.
    names = {row[0] for row in big}
    assert all(row[6] in names for row in big if row is not whole)
    # The last version before the file was moved, and the root tree, are deltas too.
    assert len(blob("HEAD~40:src/util.py")) == 7
    assert len(blob("HEAD~1^{tree}")) == 7
    assert len(blob("HEAD~20:data/blob.bin")) == 7


def test_long_history_branches_instead_of_restarting(tmp_path: Path) -> None:
    """300 versions of one file, newest first: chains stay within 50 and branch at anchors, so
    few versions are stored whole (a plain chain would store every 51st)."""
    rng = random.Random(9)
    versions = [text(rng, 200)]
    for _ in range(299):
        versions.append(edit(rng, versions[-1]))
    versions.reverse()  # newest first, as a history walk yields them
    objects = [PackObject("blob", bytes.fromhex(pack_oid("blob", v)), v, "f.txt") for v in versions]
    Git(tmp_path / "repo.git", bare=True)
    result = write_pack(tmp_path / "repo.git" / "objects" / "pack", objects)
    rows = verify_pack(result)
    assert len(rows) == len(set(versions))
    assert max(int(row[5]) for row in rows if len(row) == 7) <= pack.MAX_DEPTH
    assert sum(len(row) == 5 for row in rows) <= 2
    ids = "".join(o.oid.hex() + "\n" for o in objects).encode()
    out = git(tmp_path / "repo.git", "cat-file", "--batch", stdin=ids)
    assert out == b"".join(
        f"{o.oid.hex()} blob {len(o.content)}\n".encode() + o.content + b"\n" for o in objects
    )


def test_empty_pack(tmp_path: Path) -> None:
    result = write_pack(tmp_path, [])
    assert (result.objects, result.deltas, result.pack_size) == (0, 0, 32)
    verify_pack(result)
    copy = tmp_path / "copy.pack"
    shutil.copyfile(result.pack, copy)
    subprocess.run(["git", "index-pack", "-o", str(tmp_path / "copy.idx"), str(copy)], check=True)
    assert (tmp_path / "copy.idx").read_bytes() == result.index.read_bytes()


def test_duplicates_are_written_once(tmp_path: Path) -> None:
    blob = PackObject("blob", bytes.fromhex(pack_oid("blob", b"x\n")), b"x\n", "x")
    result = write_pack(tmp_path, [blob, blob])
    assert result.objects == 1
    assert len(verify_pack(result)) == 1


@pytest.mark.parametrize(
    "bad", [PackObject("nonsense", b"\2" * 20, b""), PackObject("blob", b"\2" * 19, b"")]
)
def test_failed_write_leaves_nothing(tmp_path: Path, bad: PackObject) -> None:
    big = PackObject("blob", b"\3" * 20, bytes(100_000), "big")  # in a worker thread
    with pytest.raises(ValueError, match="not a git object"):
        write_pack(tmp_path, [PackObject("blob", b"\1" * 20, b"a"), big, bad], threads=1)
    assert list(tmp_path.iterdir()) == []


def pack_oid(kind: str, content: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(content)}\0".encode() + content).hexdigest()


# ---- the encodings, against reference decoders ----


def apply_delta(base: bytes, delta: bytes, ops: list[tuple[int, int, int]] | None = None) -> bytes:
    """git's patch-delta, in Python; checks that ops stay within git's encoder's limits, and
    records (command byte, offset, size) of each op in `ops`."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = delta[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    assert varint() == len(base)
    size = varint()
    out = bytearray()
    while pos < len(delta):
        cmd = delta[pos]
        pos += 1
        if cmd & 0x80:
            offset = length = 0
            for k in range(4):
                if cmd & (1 << k):
                    offset |= delta[pos] << (8 * k)
                    pos += 1
            for k in range(3):
                if cmd & (0x10 << k):
                    length |= delta[pos] << (8 * k)
                    pos += 1
            length = length or 0x10000
            assert offset + length <= len(base)
            out += base[offset : offset + length]
        else:
            assert 0 < cmd <= 0x7F
            offset, length = -1, cmd
            out += delta[pos : pos + cmd]
            pos += cmd
        if ops is not None:
            ops.append((cmd, offset, length))
    assert len(out) == size
    return bytes(out)


def test_delta_copies_over_64k() -> None:
    rng = random.Random(7)
    base = text(rng, 8000)  # ~200 KB
    cut = len(base) - 5000
    target = base[:cut] + b"changed line\n" + base[cut + 40 :]
    delta = make_delta(base, target)
    assert delta is not None and len(delta) < 100
    ops: list[tuple[int, int, int]] = []
    assert apply_delta(base, delta, ops) == target
    copies = [(cmd, offset, size) for cmd, offset, size in ops if cmd & 0x80]
    # The first ~200 KB are copied 0x10000 bytes an op (as git does), sent as size 0 ...
    assert copies[0] == (0x80, 0, 0x10000)
    assert copies[1] == (0x84, 0x10000, 0x10000)  # ... the next from a 3-byte offset
    # ... and the copy after the change starts past 128 KiB.
    assert copies[-1][1] > 0x20000 and copies[-1][0] & 0x04
    assert sum(size for _, _, size in copies) == len(target) - len(b"changed line\n")


def test_delta_of_trees_and_binary() -> None:
    rng = random.Random(3)
    entries = [(f"100644 file{i:03}".encode(), rng.randbytes(20)) for i in range(200)]
    tree = b"".join(name + b"\0" + oid for name, oid in entries)
    entries[50] = (entries[50][0], rng.randbytes(20))
    entries[150] = (entries[150][0], rng.randbytes(20))
    del entries[100]
    older = b"".join(name + b"\0" + oid for name, oid in entries)
    delta = make_delta(tree, older, pack.TREE_SEPARATORS)
    assert delta is not None and len(delta) < 120
    assert apply_delta(tree, delta) == older
    binary = rng.randbytes(50_000)
    changed = binary[:1000] + rng.randbytes(30) + binary[1000:30_000] + binary[30_100:]
    delta = make_delta(binary, changed)
    assert delta is not None and len(delta) < 200
    assert apply_delta(binary, delta) == changed
    # No newline at all (e.g. minified code): other separators are used.
    line = b";".join(b"var v%d=%d" % (i, rng.randrange(10**6)) for i in range(5000))
    edited = line[:20_000] + b"var q=1;" + line[20_000:40_000] + line[40_500:]
    delta = make_delta(line, edited)
    assert delta is not None and len(delta) < 200
    assert apply_delta(line, delta) == edited


def test_delta_round_trips_on_edited_text() -> None:
    """Versions as commits make them (and repeated ones), both ways round."""
    for seed in range(1000):
        rng = random.Random(seed)
        older = text(rng, rng.randint(3, 60)) * rng.randint(1, 3)
        newer = older
        for _ in range(rng.randint(1, 4)):
            newer = edit(rng, newer)
        for base, target in ((newer, older), (older, newer)):
            delta = make_delta(base, target)
            assert delta is None or apply_delta(base, delta) == target


def test_delta_of_same_size_versions() -> None:
    base = bytes(range(256)) * 40
    for changed in ([0], [len(base) - 1], [0, len(base) - 1], [5, 700], [3000]):
        target = bytearray(base)
        for at in changed:
            target[at] ^= 0xFF
        delta = make_delta(base, bytes(target), pack.TREE_SEPARATORS)
        assert delta is not None and len(delta) < 40
        assert apply_delta(base, delta) == target
    assert apply_delta(base, make_delta(base, base) or b"") == base


def test_delta_where_a_run_would_start_past_the_base() -> None:
    # Found by search: the "continue where the last run ended" guess lies past the end of base.
    base = (
        b"pack\ntree yy delta blob yy blob x yy\ntree x beta\nyy x pack\n"
        b"alpha gamma beta x x x tree blob\n"
    )
    target = (
        b"yy beta pack pack commit pack commit delta delta\npack pack blob delta delta pack commit"
        b"\ncommit beta pack\ndelta\npack\ntree delta gamma beta blob yy beta beta\n"
    )
    delta = make_delta(base, target)
    assert delta is None or apply_delta(base, delta) == target


def test_delta_not_worth_it() -> None:
    rng = random.Random(5)
    assert make_delta(rng.randbytes(1000), rng.randbytes(1000)) is None
    assert make_delta(b"short", b"short" * 100) is None


@settings(max_examples=400, deadline=None)
@given(
    base=st.binary(max_size=3000),
    repeat=st.integers(1, 4),
    edits=st.lists(
        st.tuples(st.integers(0, 12000), st.integers(0, 300), st.binary(max_size=200)),
        max_size=6,
    ),
    text_mode=st.booleans(),
)
def test_delta_round_trips(
    base: bytes, repeat: int, edits: list[tuple[int, int, bytes]], text_mode: bool
) -> None:
    if text_mode:  # line structure, where the dicts do their work
        base = base.replace(b"\0", b"\n")
    base *= repeat  # repeated content: units found more than once
    target = base
    for at, cut, insert in edits:
        at = min(at, len(target))
        target = target[:at] + insert + target[at + cut :]
    for separators in (pack.TEXT_SEPARATORS, pack.TREE_SEPARATORS, (b"\n",)):
        delta = make_delta(base, target, separators)
        if delta is not None:
            assert len(delta) < len(target) // 2
            assert apply_delta(base, delta) == target


def test_entry_header_and_offset_encodings() -> None:
    assert pack._entry_header(3, 0) == b"\x30"
    assert pack._entry_header(3, 15) == b"\x3f"
    assert pack._entry_header(1, 16) == b"\x90\x01"
    size = 300_000  # a size needing four bytes
    header = pack._entry_header(2, size)
    assert len(header) == 4 and header[0] >> 4 & 7 == 2 and all(b & 0x80 for b in header[:3])
    decoded = header[0] & 0x0F | (header[1] & 0x7F) << 4 | (header[2] & 0x7F) << 11
    assert decoded | header[3] << 18 == size
    # OFS_DELTA distances: each continuation byte adds one (gitformat-pack.txt).
    assert pack._ofs_encoding(127) == b"\x7f"
    assert pack._ofs_encoding(128) == b"\x80\x00"
    assert pack._ofs_encoding(16511) == b"\xff\x7f"
    assert pack._ofs_encoding(16512) == b"\x80\x80\x00"
    for distance in (1, 200, 70_000, 10**9):
        data = pack._ofs_encoding(distance)
        value = data[0] & 0x7F
        for byte in data[1:]:
            value = ((value + 1) << 7) | (byte & 0x7F)
        assert value == distance


def test_deflate_streams_inflate() -> None:
    rng = random.Random(11)
    for size in (0, 1, 100, 255, 256, 4000, 16383, 16384, 100_000):
        data = text(rng, size // 20 + 1)[:size]
        assert zlib.decompress(pack._deflate(data, 6)) == data


def test_index_with_offsets_past_2_gib() -> None:
    oids = [bytes([b]) * 20 for b in (9, 1, 200)]
    offsets = array("Q", [12, 0x80000000, 0x1_2345_6789])
    crcs = array("L", [1, 2, 3])
    idx = pack._index_bytes(oids, offsets, crcs, b"\xaa" * 20)
    assert idx[:8] == b"\377tOc\0\0\0\2"
    fanout = struct.unpack(">256I", idx[8 : 8 + 1024])
    assert [fanout[i] for i in (0, 1, 8, 9, 199, 200, 255)] == [0, 1, 1, 2, 2, 3, 3]
    pos = 8 + 1024
    assert idx[pos : pos + 60] == bytes([1]) * 20 + bytes([9]) * 20 + bytes([200]) * 20
    pos += 60
    assert struct.unpack(">3I", idx[pos : pos + 12]) == (2, 1, 3)
    pos += 12
    assert struct.unpack(">3I", idx[pos : pos + 12]) == (0x80000000, 12, 0x80000001)
    pos += 12
    assert struct.unpack(">2Q", idx[pos : pos + 16]) == (0x80000000, 0x1_2345_6789)
    pos += 16
    assert idx[pos : pos + 20] == b"\xaa" * 20
    assert idx[pos + 20 :] == hashlib.sha1(idx[: pos + 20]).digest()
