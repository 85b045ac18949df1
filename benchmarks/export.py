"""Export against git: a repository of about 40,000 objects, exported by govc (one pack with
deltas) and copied by `git clone --bare --no-local` (git's own pack-objects), in one run. The
history is built by git (fast-import, then `git repack -a -d -f`, so the source is a pack with
git's own deltas) and imported into a govc data dir in this process; the export is timed in
process, the clone as a child process (its time includes starting git, a few milliseconds).
Repositories named in $GOVC_BENCH_REPOS (paths, separated by the path separator) are measured
too.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.harness import git, markdown_table
from govc.core.database import Database
from govc.core.gitio import export_repository, import_repository
from govc.core.registry import Registry
from govc.core.versioncontrol import VersionControl
from govc.storage import Storage, StorageConfig

COMMITS = 2_000
FILES = 400
EDITS_PER_COMMIT = 8
ROUNDS = 3


def _fast_import_stream(rng: random.Random) -> bytes:
    """COMMITS commits over FILES text files in 20 directories, each editing a few lines of
    EDITS_PER_COMMIT files: about 40,000 objects, with the small edits real histories have."""
    files = {
        f"pkg{i % 20}/module{i:03d}.py": [
            f"def function_{i}_{n}(x):  # {rng.random():.6f}\n    return x + {n}\n"
            for n in range(40)
        ]
        for i in range(FILES)
    }
    out: list[bytes] = []
    paths = sorted(files)
    for c in range(COMMITS):
        touched = paths if c == 0 else rng.sample(paths, EDITS_PER_COMMIT)
        lines = []
        for path in touched:
            body = files[path]
            if c:
                at = rng.randrange(len(body))
                body[at] = f"def changed_{c}_{at}(x):  # {rng.random():.6f}\n    return x\n"
            data = "".join(body).encode()
            lines.append(b"M 100644 inline " + path.encode() + b"\n")
            lines.append(b"data %d\n" % len(data) + data + b"\n")
        message = f"commit {c}\n".encode()
        out.append(b"commit refs/heads/main\n")
        out.append(b"committer bench <bench@example.com> %d +0000\n" % (1_700_000_000 + c))
        out.append(b"data %d\n" % len(message) + message)
        out.extend(lines)
        out.append(b"\n")
    return b"".join(out)


def _source(workdir: Path) -> Path:
    source = workdir / "export-source.git"
    git(source, "init", "-q", "--bare", "-b", "main")
    git(source, "fast-import", "--quiet", stdin=_fast_import_stream(random.Random(7)))
    git(source, "repack", "-q", "-a", "-d", "-f")  # git's own deltas, as gc makes them anew
    return source


def _pack_bytes(git_dir: Path) -> int:
    return sum(p.stat().st_size for p in (git_dir / "objects" / "pack").glob("*.pack"))


def _object_count(git_dir: Path) -> int:
    out = git(git_dir, "count-objects", "-v").decode()
    fields = dict(line.split(": ") for line in out.splitlines())
    return int(fields["count"]) + int(fields["in-pack"])


def _measure(source: Path, workdir: Path, name: str) -> list[str]:
    storage = Storage(StorageConfig(path=str(workdir / f"export-{name}-data"), durable=False))
    try:
        db, vc = Database(storage, Registry()), VersionControl()
        import_repository(db, vc, source, name)
        govc_times, git_times = [], []
        govc_size = objects = 0
        for round_no in range(ROUNDS):
            dest = workdir / f"export-{name}-{round_no}.git"
            start = time.perf_counter()
            objects = export_repository(db, vc, name, dest)
            govc_times.append(time.perf_counter() - start)
            govc_size = _pack_bytes(dest)
            clone = workdir / f"clone-{name}-{round_no}.git"
            start = time.perf_counter()
            subprocess.run(
                ["git", "clone", "-q", "--bare", "--no-local", str(source), str(clone)],
                check=True,
                capture_output=True,
                env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(workdir)},
            )
            git_times.append(time.perf_counter() - start)
            shutil.rmtree(dest)
            shutil.rmtree(clone)
    finally:
        storage.close()
    govc_rate = objects / statistics.median(govc_times)
    git_rate = objects / statistics.median(git_times)
    source_size = _pack_bytes(source)
    return [
        name,
        f"{objects:,}",
        f"{govc_rate:,.0f}",
        f"{git_rate:,.0f}",
        f"{govc_rate / git_rate:.2f}",
        f"{govc_size / 1e6:.1f}",
        f"{source_size / 1e6:.1f}",
        f"{govc_size / source_size:.2f}",
    ]


def run(workdir: Path) -> str:
    rows = [_measure(_source(workdir), workdir, "synthetic")]
    for path in filter(None, os.environ.get("GOVC_BENCH_REPOS", "").split(os.pathsep)):
        rows.append(_measure(Path(path), workdir, Path(path).name.removesuffix(".git")))
    table = markdown_table(
        [
            [
                "repository",
                "objects",
                "govc export objects/s",
                "git clone --bare --no-local objects/s",
                "govc/git",
                "govc pack MB",
                "source pack MB",
                "size ratio",
            ],
            *rows,
        ]
    )
    return "\n\n".join(
        [
            "## Export against git",
            " ".join(
                f"""A history of {COMMITS:,} commits over {FILES} text files ({EDITS_PER_COMMIT}
                small edits per commit), built by git fast-import and packed by `git repack -a
                -d -f`, imported into govc; then, {ROUNDS} times, govc's export (a bare
                repository with one pack and its index) against `git clone --bare --no-local` of
                the source (git's pack-objects, reusing the source's deltas). Median of the
                rounds. Bars: govc at least 0.5 times git's objects/s, its pack at most 1.5
                times the source pack. Repositories in $GOVC_BENCH_REPOS are measured the same
                way.""".split()
            ),
            table,
        ]
    )
