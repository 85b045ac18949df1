"""govc.core.xdiff against the real git (2.39.5): byte-for-byte, on thousands of random merges.

Two oracles: `git merge-file` (Myers diff, level ZEALOUS_ALNUM, with its --ours/--theirs/--union,
--diff3/--zdiff3, --marker-size and -L labels), and `git merge-tree --write-tree` for the
settings of `git merge` (ort: histogram diff, level ZEALOUS), whose labels are the branch names.
Every case is made from its seed alone (`_case(seed)`), so a failure names the seed and the
three inputs and can be replayed without the rest of the run. Two fixed cases reach what random
small files cannot: xdl_split's snake heuristic (a 33,000-line file) and the histogram hash
chain limit at which xdiff, and so git, gives up.
"""

import os
import random
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from govc.core.xdiff import Algorithm, Favor, Level, Style, XDiffError, merge_file

MERGE_FILE_CASES = 2400
ORT_CASES = 500
PLAIN_CASES = 300
WORKERS = 4

# Small alphabets make repetitive text, where diff algorithms (and their heuristics) differ;
# lines without letters or digits are what ZEALOUS_ALNUM folds into conflicts.
ALPHABETS: list[list[bytes]] = [
    [b"a", b"b"],
    [b"a", b"b", b"c"],
    [b"x", b"", b"}"],
    [b"{", b"}", b"", b"  return 0;", b"int x;", b"/* */"],
    [b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"],
    [b"-", b"--", b"", b"#", b"a"],
]


def _git_env(home: Path) -> dict[str, str]:
    """git with no system, global or repository configuration of the user, fixed identities."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return {
        **inherited,
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "GIT_CEILING_DIRECTORIES": str(home.parent),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
        "GIT_AUTHOR_DATE": "@0 +0000",
        "GIT_COMMITTER_DATE": "@0 +0000",
        "LC_ALL": "C",
    }


def _vocabulary(rng: random.Random) -> Callable[[], bytes]:
    """A maker of line texts (no end of line): repetitive, unique, or a mix."""
    kind = rng.random()
    if kind < 0.55:
        alphabet = rng.choice(ALPHABETS)
        return lambda: rng.choice(alphabet)
    if kind < 0.75:
        return lambda: b"line %d" % rng.randrange(1_000_000)
    alphabet = rng.choice(ALPHABETS)
    return lambda: rng.choice(alphabet) if rng.random() < 0.6 else b"u%d" % rng.randrange(99)


def _edit(rng: random.Random, lines: list[bytes], word: Callable[[], bytes], edits: int) -> None:
    """Inserts, deletes and changes of runs of up to 3 lines, at random places."""
    for _ in range(edits):
        at = rng.randint(0, len(lines))
        size = rng.randint(1, 3)
        op = rng.random()
        if op < 0.35 and at < len(lines):
            lines[at : at + size] = [word() for _ in range(rng.randint(1, size))]
        elif op < 0.7:
            lines[at:at] = [word() for _ in range(size)]
        else:
            del lines[at : at + size]


def _case(seed: int) -> tuple[bytes, bytes, bytes]:
    """Base, ours and theirs for one seed."""
    rng = random.Random(seed)
    word = _vocabulary(rng)
    big = rng.random() < 0.04
    n = rng.randint(150, 500) if big else rng.choice([0, 1, 2, 3, 5, 8, 12, 20, 30, 45])
    base = [word() for _ in range(n)]
    low, high = (5, 60) if big else (0, 4)

    def edits() -> int:
        return rng.randint(low, high)

    ours = list(base)
    _edit(rng, ours, word, edits())
    shape = rng.random()
    if shape < 0.1:
        theirs = list(ours)  # both sides made the same change
    elif shape < 0.2:
        theirs = list(base)  # only one side changed
    elif shape < 0.3:
        theirs = list(ours)  # the same change, then more
        _edit(rng, theirs, word, edits())
    elif shape < 0.5 and base:
        # Edits that touch or overlap: both sides change lines around one place.
        at = rng.randrange(len(base))
        theirs = list(base)
        lo = max(0, at + rng.randint(-2, 2))
        theirs[lo : lo + rng.randint(0, 3)] = [word() for _ in range(rng.randint(0, 3))]
        ours = list(base)
        ours[at : at + rng.randint(0, 2)] = [word() for _ in range(rng.randint(0, 3))]
    else:
        theirs = list(base)
        _edit(rng, theirs, word, edits())

    def text(lines: list[bytes]) -> bytes:
        eol = rng.random()
        if eol < 0.15:
            data = b"".join(line + b"\r\n" for line in lines)
        elif eol < 0.22:
            data = b"".join(line + rng.choice([b"\n", b"\r\n"]) for line in lines)
        else:
            data = b"".join(line + b"\n" for line in lines)
        if data and rng.random() < 0.2:
            data = data[:-2] if data.endswith(b"\r\n") and rng.random() < 0.5 else data[:-1]
        if rng.random() < 0.03:
            data = b""
        return data

    return text(base), text(ours), text(theirs)


def _plain_case(seed: int) -> tuple[bytes, bytes, bytes]:
    """Distinct lines edited in one or two places per side, mostly with new text: the shape for
    which merge_file skips the diff search (the edit between the common head and tail is all
    of the diff), sometimes spoilt by a line copied from elsewhere or by a repeated new line."""
    rng = random.Random(seed)
    size = rng.choice([0, 1, 2, 3, 5, 20, 20, 40, 100, 300])
    base = [b"line %d of the base" % i for i in range(size)]

    def new() -> bytes:
        pick = rng.random()
        if pick < 0.08 and base:
            return rng.choice(base)  # an old line in a new place
        if pick < 0.16:
            return b"same new line"
        return b"new %d" % rng.randrange(1_000_000)

    def side() -> list[bytes]:
        lines = list(base)
        for _ in range(rng.choice([1, 1, 1, 2])):
            at = rng.randint(0, len(lines))
            op = rng.random()
            if op < 0.5 and at < len(lines):
                lines[at : at + rng.randint(1, 2)] = [new() for _ in range(rng.randint(1, 3))]
            elif op < 0.8:
                lines[at:at] = [new() for _ in range(rng.randint(1, 3))]
            else:
                del lines[at : at + rng.randint(1, 3)]
        return lines

    def text(lines: list[bytes]) -> bytes:
        data = b"".join(line + b"\n" for line in lines)
        return data[:-1] if data and rng.random() < 0.1 else data

    return text(base), text(side()), text(side())


# The merge-file options a case runs with: command-line arguments and merge_file keywords.
Options = tuple[list[str], dict[str, Any]]


def _options(rng: random.Random) -> Options:
    args: list[str] = []
    kwargs: dict[str, Any] = {}
    pick = rng.random()
    if pick < 0.12:
        args.append("--diff3")
        kwargs["style"] = Style.DIFF3
    elif pick < 0.24:
        args.append("--zdiff3")
        kwargs["style"] = Style.ZDIFF3
    pick = rng.random()
    for flag, favor, upto in (
        ("--ours", Favor.OURS, 0.08),
        ("--theirs", Favor.THEIRS, 0.16),
        ("--union", Favor.UNION, 0.24),
    ):
        if pick < upto:
            args.append(flag)
            kwargs["favor"] = favor
            break
    if rng.random() < 0.06:
        size = rng.choice([0, 1, 3, 10, 20])
        args.append(f"--marker-size={size}")
        kwargs["marker_size"] = size
    labels = ["ours", "base", "theirs"]
    if rng.random() < 0.06:
        labels = rng.choice([["", "", ""], ["a b", "", "c:d"], ["üñï", "base", "x"]])
    for label in labels:
        args += ["-L", label]
    kwargs.update(ours_label=labels[0], base_label=labels[1], theirs_label=labels[2])
    return args, kwargs


def _describe(seed: int, inputs: Sequence[bytes], extra: str) -> str:
    base, ours, theirs = inputs
    return (
        f"seed {seed} ({extra}); replay with _case({seed}):\n"
        f"  base   = {base!r}\n  ours   = {ours!r}\n  theirs = {theirs!r}"
    )


def test_merge_file_agrees_with_git_merge_file(tmp_path: Path) -> None:
    env = _git_env(tmp_path)

    def run(seed: int) -> str | None:
        base, ours, theirs = _case(seed)
        args, kwargs = _options(random.Random(-seed - 1))
        paths = [tmp_path / f"{seed}.{name}" for name in ("ours", "base", "theirs")]
        for path, data in zip(paths, (ours, base, theirs), strict=True):
            path.write_bytes(data)
        git = subprocess.run(
            ["git", "merge-file", "-p", *args, *map(str, paths)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
        )
        mine = merge_file(
            base, ours, theirs, algorithm=Algorithm.MYERS, level=Level.ZEALOUS_ALNUM, **kwargs
        )
        if git.returncode < 0 or git.returncode > 127:
            return _describe(seed, (base, ours, theirs), f"git failed: {git.stderr!r}")
        if mine.content != git.stdout or min(mine.conflicts, 127) != git.returncode:
            return _describe(
                seed,
                (base, ours, theirs),
                f"{' '.join(args)}: git exit {git.returncode} / ours {mine.conflicts}\n"
                f"  git    = {git.stdout!r}\n  merged = {mine.content!r}",
            )
        return None

    with ThreadPoolExecutor(WORKERS) as pool:
        failures = [f for f in pool.map(run, range(MERGE_FILE_CASES)) if f]
    assert not failures, f"{len(failures)} of {MERGE_FILE_CASES} differ:\n" + "\n".join(
        failures[:5]
    )


def test_plain_merges_agree_with_git_merge_file(tmp_path: Path) -> None:
    """_plain_case with merge-file's Myers diff (the ort settings: in the merge-tree test)."""
    env = _git_env(tmp_path)

    def run(seed: int) -> str | None:
        inputs = base, ours, theirs = _plain_case(seed)
        paths = [tmp_path / f"{seed}.{name}" for name in ("ours", "base", "theirs")]
        for path, data in zip(paths, (ours, base, theirs), strict=True):
            path.write_bytes(data)
        labels = ["-L", "ours", "-L", "base", "-L", "theirs"]
        git = subprocess.run(
            ["git", "merge-file", "-p", *labels, *map(str, paths)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
        )
        mine = merge_file(base, ours, theirs, algorithm=Algorithm.MYERS, level=Level.ZEALOUS_ALNUM)
        if (mine.content, min(mine.conflicts, 127)) != (git.stdout, git.returncode):
            return _describe(seed, inputs, f"_plain_case: git = {git.stdout!r}")
        return None

    with ThreadPoolExecutor(WORKERS) as pool:
        failures = [f for f in pool.map(run, range(PLAIN_CASES)) if f]
    assert not failures, f"{len(failures)} of {PLAIN_CASES} differ:\n" + "\n".join(failures[:5])


def _large_case(seed: int) -> tuple[bytes, bytes, bytes]:
    """33,000 lines of 20 distinct texts, 400 edits on each side: big enough (over 65,536
    diagonals) for xdl_split's snake heuristic to cut its search short, which smaller files
    never reach."""
    rng = random.Random(seed)

    def line() -> bytes:
        return b"l%d\n" % rng.randrange(20)

    base = [line() for _ in range(33_000)]

    def edit() -> bytes:
        lines = list(base)
        for _ in range(400):
            at = rng.randint(0, len(lines))
            op = rng.random()
            if op < 0.3 and at < len(lines):
                lines[at] = line()
            elif op < 0.6:
                lines[at:at] = [line() for _ in range(rng.randint(1, 5))]
            else:
                del lines[at : at + rng.randint(1, 5)]
        return b"".join(lines)

    ours = edit()
    return b"".join(base), ours, edit()


def test_large_merge_agrees_with_git_merge_file(tmp_path: Path) -> None:
    base, ours, theirs = _large_case(2)
    paths = [tmp_path / name for name in ("ours", "base", "theirs")]
    for path, data in zip(paths, (ours, base, theirs), strict=True):
        path.write_bytes(data)
    labels = ["-L", "ours", "-L", "base", "-L", "theirs"]
    git = subprocess.run(
        ["git", "merge-file", "-p", *labels, *map(str, paths)],
        cwd=tmp_path,
        env=_git_env(tmp_path),
        capture_output=True,
    )
    mine = merge_file(base, ours, theirs, algorithm=Algorithm.MYERS, level=Level.ZEALOUS_ALNUM)
    assert (mine.content, min(mine.conflicts, 127)) == (git.stdout, git.returncode), (
        "_large_case(2) differs"
    )


def _chain_case(colliding: int) -> tuple[bytes, bytes, bytes]:
    """A merge whose histogram diff puts `colliding` distinct lines (and then others up to 65)
    into one bucket of scanA's hash table: at 65 xdiff gives up, and so does git."""
    unique = [b"u%d\n" % i for i in range(8400)]
    same_bucket = [v for v in range(8400) if (v + (v >> 7)) & 127 == 5][:colliding]
    tail = [unique[v] for v in same_bucket] + unique[6 : 6 + 65 - colliding]
    base = b"".join(unique + tail)
    return base, b"".join([*unique, b"x\n"]), b"t\n" + base


def test_default_merge_agrees_with_git_merge_tree(tmp_path: Path) -> None:
    """The defaults are git merge's (ort): compare with merge-tree on commits made by one
    fast-import, results read back by one cat-file --batch."""
    env = _git_env(tmp_path)
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], env=env, check=True)
    cases = {f"{n}": _case(1_000_000 + n) for n in range(ORT_CASES)}
    cases.update((f"plain{n}", _plain_case(n)) for n in range(PLAIN_CASES))
    cases["chain64"] = _chain_case(64)
    cases["chain65"] = _chain_case(65)

    stream: list[bytes] = []
    for base_mark, (name, (base, ours, theirs)) in enumerate(cases.items(), start=1):
        for branch, data, parent in (
            (f"b{name}", base, None),
            (f"o{name}", ours, base_mark),
            (f"t{name}", theirs, base_mark),
        ):
            head = f"commit refs/heads/{branch}\n"
            if parent is None:
                head += f"mark :{base_mark}\n"
            head += "committer t <t@x> 0 +0000\ndata 0\n"
            if parent is not None:
                head += f"from :{parent}\n"
            stream.append(head.encode() + b"M 100644 inline f\ndata %d\n%s\n" % (len(data), data))
    subprocess.run(
        ["git", "fast-import", "--quiet"], input=b"".join(stream), cwd=repo, env=env, check=True
    )

    def merge_tree(name: str) -> tuple[str, int, str]:
        out = subprocess.run(
            ["git", "merge-tree", "--write-tree", f"o{name}", f"t{name}"],
            cwd=repo,
            env=env,
            capture_output=True,
        )
        return name, out.returncode, out.stdout.split(b"\n")[0].decode()

    with ThreadPoolExecutor(WORKERS) as pool:
        merged = list(pool.map(merge_tree, cases))
    wanted = [(name, tree) for name, code, tree in merged if code in (0, 1)]
    batch = subprocess.run(
        ["git", "cat-file", "--batch"],
        input="".join(f"{tree}:f\n" for _, tree in wanted).encode(),
        cwd=repo,
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    contents: dict[str, bytes] = {}
    at = 0
    for name, _ in wanted:
        end = batch.index(b"\n", at)
        header = batch[at:end].split()
        assert header[1] == b"blob", (name, header)
        size = int(header[2])
        contents[name] = batch[end + 1 : end + 1 + size]
        at = end + 1 + size + 1

    failures = []
    differ_from_merge_file = 0
    for name, code, _ in merged:
        base, ours, theirs = cases[name]
        ours_label, theirs_label = f"o{name}", f"t{name}"  # what merge-tree labels sides with
        try:
            mine = merge_file(base, ours, theirs, ours_label=ours_label, theirs_label=theirs_label)
        except XDiffError:
            if code != 128:
                failures.append(f"{name}: XDiffError, git exit {code}")
            continue
        if (
            code not in (0, 1)
            or mine.content != contents[name]
            or (code == 1) != (mine.conflicts > 0)
        ):
            git = contents.get(name)
            failures.append(
                _describe(
                    int(name) + 1_000_000 if name.isdigit() else -1,
                    cases[name],
                    f"case {name}: git exit {code} / ours {mine.conflicts}\n"
                    f"  git    = {git!r}\n  merged = {mine.content!r}",
                )
            )
        as_merge_file = merge_file(
            base,
            ours,
            theirs,
            ours_label=ours_label,
            theirs_label=theirs_label,
            algorithm=Algorithm.MYERS,
            level=Level.ZEALOUS_ALNUM,
        )
        differ_from_merge_file += as_merge_file.content != mine.content
    assert not failures, f"{len(failures)} of {len(cases)} differ:\n" + "\n".join(failures[:5])
    # The cases must tell histogram/ZEALOUS from merge-file's Myers/ZEALOUS_ALNUM, or this
    # test would not notice the defaults being the wrong ones.
    assert differ_from_merge_file > 0


@pytest.mark.parametrize(
    ("label", "marker"),
    [("", b"<<<<<<< \n"), (None, b"<<<<<<<\n"), ("side", b"<<<<<<< side\n")],
)
def test_labels_follow_xdiff(label: str | None, marker: bytes) -> None:
    # git 2.39.5 writes a space after the marker for an empty label (-L ""); xdiff's NULL
    # label, which no command line can give, leaves the bare marker.
    result = merge_file(b"a\nb\nc\n", b"a\nX\nc\n", b"a\nY\nc\n", ours_label=label)
    assert result.conflicts == 1
    assert result.content.split(b"X\n")[0] == b"a\n" + marker


def test_unterminated_conflict_sides_get_a_newline_before_the_marker() -> None:
    result = merge_file(b"a\nb", b"a\nX", b"a\nY\r\nZ\r\n", level=Level.ZEALOUS)
    assert result.content == (b"a\n<<<<<<< ours\nX\n=======\nY\r\nZ\r\n>>>>>>> theirs\n")
