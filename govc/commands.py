"""Client commands of the `govc` CLI: talk to a running server, print git-like output."""

import argparse
import datetime
import sys
import time
from pathlib import Path

from govc.client import GovcClient, SearchOptions, search_request


def _when(ts: datetime.datetime | None) -> str:
    if ts is None:
        return ""
    return ts.astimezone(datetime.UTC).strftime("%a %b %d %H:%M:%S %Y +0000")


async def run(args: argparse.Namespace) -> int:
    async with GovcClient(args.server, timeout=args.timeout) as client:
        result: int = await args.action(client, args)
        return result


def _repo(args: argparse.Namespace) -> str:
    if not args.repo:
        raise SystemExit("govc: name the repository with -r REPO (or GOVC_REPO)")
    return str(args.repo)


async def repo_create(c: GovcClient, args: argparse.Namespace) -> int:
    created = await c.create_repository(args.id, name=args.name, description=args.description)
    print(f"created repository {created.id}")
    return 0


async def repo_list(c: GovcClient, args: argparse.Namespace) -> int:
    listing = await c.list_repositories()
    for repo in listing.repositories:
        print(f"{repo.id}\t{repo.name}\t{repo.description}")
    return 0


async def repo_delete(c: GovcClient, args: argparse.Namespace) -> int:
    await c.delete_repository(args.id)
    print(f"deleted repository {args.id}")
    return 0


async def add(c: GovcClient, args: argparse.Namespace) -> int:
    repo = _repo(args)
    for name in args.paths:
        local = Path(name)
        target = args.as_path or local.as_posix()
        size = local.stat().st_size
        if size > c.max_message_bytes // 2:
            # Too big for one message: stream the content, then point the path at the blob.
            bar = ProgressBar(f"add {target}", _show_progress(size))
            uploaded = await c.upload(repo, local, progress=bar)
            stored = await c.add_file(repo, target, blob_hash=uploaded.hash)
        else:
            stored = await c.add_file(repo, target, local.read_bytes())
        print(f"add {target} ({stored.size} bytes, {stored.hash[:12]})")
    return 0


async def rm(c: GovcClient, args: argparse.Namespace) -> int:
    await c.remove_file(_repo(args), args.path)
    print(f"rm '{args.path}'")
    return 0


async def mv(c: GovcClient, args: argparse.Namespace) -> int:
    await c.move_file(_repo(args), args.source, args.target)
    return 0


async def cat(c: GovcClient, args: argparse.Namespace) -> int:
    found = await c.read_file(_repo(args), args.path, args.commit)
    sys.stdout.buffer.write(found.content)
    return 0


async def commit(c: GovcClient, args: argparse.Namespace) -> int:
    repo = _repo(args)
    made = await c.commit(repo, args.message, author=args.author, files=args.files)
    status = await c.status(repo)
    where = status.current_branch or "detached HEAD"
    print(f"[{where} {made.hash[:7]}] {made.message.splitlines()[0]}")
    return 0


async def log(c: GovcClient, args: argparse.Namespace) -> int:
    history = await c.list_commits(_repo(args), branch=args.branch, limit=args.max_count)
    for entry in history.commits:
        if args.oneline:
            print(f"{entry.hash[:7]} {entry.message.splitlines()[0] if entry.message else ''}")
            continue
        print(f"commit {entry.hash}")
        if len(entry.parent_hashes) > 1:
            print("Merge: " + " ".join(p[:7] for p in entry.parent_hashes))
        print(f"Author: {entry.author}")
        print(f"Date:   {_when(entry.timestamp)}")
        print()
        for line in entry.message.splitlines():
            print(f"    {line}")
        print()
    return 0


async def status(c: GovcClient, args: argparse.Namespace) -> int:
    current = await c.status(_repo(args))
    print(f"On branch {current.current_branch}" if current.current_branch else "HEAD detached")
    if not current.status_entries:
        print("nothing to commit, working tree clean")
    for entry in current.status_entries:
        print(entry)
    return 0


async def branch(c: GovcClient, args: argparse.Namespace) -> int:
    repo = _repo(args)
    if args.delete:
        await c.delete_branch(repo, args.delete)
        print(f"Deleted branch {args.delete}")
        return 0
    if args.name:
        made = await c.create_branch(repo, args.name, args.start_point)
        print(f"branch {made.name} at {made.commit_hash[:7]}")
        return 0
    listing = await c.list_branches(repo)
    for b in listing.branches:
        marker = "*" if b.name == listing.current_branch else " "
        print(f"{marker} {b.name}")
    return 0


async def checkout(c: GovcClient, args: argparse.Namespace) -> int:
    await c.checkout_branch(_repo(args), args.name)
    print(f"Switched to branch '{args.name}'")
    return 0


class ProgressBar:
    """A one-line progress bar on stderr for long transfers (only when it is a terminal or
    the transfer is big enough to be worth watching)."""

    WIDTH = 30

    def __init__(self, label: str, enabled: bool) -> None:
        self._label = label
        self._enabled = enabled
        self._started = time.monotonic()
        self._last_draw = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self._enabled or (now - self._last_draw < 0.1 and done < total):
            return
        self._last_draw = now
        fraction = done / total if total else 1.0
        filled = int(fraction * self.WIDTH)
        rate = done / max(now - self._started, 1e-9) / 1e6
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        sys.stderr.write(
            f"\r{self._label} [{bar}] {fraction:4.0%} {done / 1e6:,.1f} MB {rate:,.1f} MB/s"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _show_progress(size: int) -> bool:
    return sys.stderr.isatty() or size >= 8 * 1024 * 1024


async def put(c: GovcClient, args: argparse.Namespace) -> int:
    path = Path(args.file)
    size = path.stat().st_size
    bar = ProgressBar(f"put {path.name}", _show_progress(size) and not args.quiet)
    stored = await c.upload(_repo(args), path, chunk_size=args.chunk_size, progress=bar)
    print(f"{stored.hash}  {stored.size} bytes, sha256 {stored.checksum}")
    return 0


async def get(c: GovcClient, args: argparse.Namespace) -> int:
    repo = _repo(args)
    if args.output == "-":
        await c.download(repo, args.hash, sys.stdout.buffer, chunk_size=args.chunk_size)
        return 0
    bar = ProgressBar(f"get {args.hash[:12]}", not args.quiet)
    metadata = await c.download(
        repo, args.hash, args.output or args.hash, chunk_size=args.chunk_size, progress=bar
    )
    print(f"wrote {metadata.total_size} bytes to {args.output or args.hash}")
    return 0


def _cell(value: str) -> str:
    """A value on one line: the first line of multi-line text, with an ellipsis."""
    first, _, rest = value.partition("\n")
    return first + (" ..." if rest else "")


def _repo_and_text(args: argparse.Namespace) -> tuple[str, str]:
    """`[REPO] TEXT`: the repository is the first word when there are two, else -r."""
    words: list[str] = args.words
    if len(words) == 2:
        return words[0], words[1]
    if len(words) > 2:
        raise SystemExit("govc: quote the query: govc COMMAND [REPO] 'QUERY'")
    return _repo(args), words[0]


def _print_table(
    columns: list[str], rows: list[list[str]], notes: list[list[str]] | None = None
) -> None:
    """A plain-text table; `notes[i]` are indented lines printed under row i."""
    table = [columns, *rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for n, line in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
        elif notes:
            for note in notes[n - 1]:
                print("    " + note)


async def sql(c: GovcClient, args: argparse.Namespace) -> int:
    repo, query = _repo_and_text(args)
    result = await c.execute_sql(repo, query)
    columns: list[str] = []
    for row in result.rows:
        columns += [name for name in row.fields if name not in columns]
    _print_table(
        columns, [[_cell(row.fields.get(n, "NULL")) for n in columns] for row in result.rows]
    )
    print(f"({result.total} rows, {result.query_time_ms:.1f} ms)")
    return 0


async def search(c: GovcClient, args: argparse.Namespace) -> int:
    repo, query = _repo_and_text(args)
    filters = SearchOptions(file_types=args.type, max_size=args.max_size, min_score=args.min_score)
    if args.group_by:
        request = search_request(repo, query, **filters)
        groups = await c.search_with_aggregation(repo, request, args.group_by)
        metrics = ["count", "total_size", "avg_size", "max_score"]
        _print_table(
            ["|".join(args.group_by), *metrics],
            [
                [g.group_value or "-", *(f"{g.metrics[m]:g}" for m in metrics)]
                for g in groups.groups
            ],
        )
        summary = groups.summary
        if summary is not None:
            print(f"({summary.total_documents} files in {summary.total_groups} groups)")
        return 0
    page: SearchOptions = {
        **filters,
        "highlight_length": args.highlight,
        "limit": args.limit,
        "offset": args.offset,
        "sort_by": args.sort,
    }
    result = await c.search(repo, query, **page)
    rows, snippets = [], []
    for r in result.results:
        doc = r.document
        if doc is None:
            continue
        modified = doc.last_modified.strftime("%Y-%m-%d %H:%M") if doc.last_modified else ""
        rows.append([f"{r.score:.3f}", doc.path, str(doc.size), modified])
        snippets.append([" ".join(h.split()) for h in r.highlights])
    _print_table(["score", "path", "size", "modified"], rows, snippets)
    shown = f"{args.offset + 1}-{args.offset + len(result.results)} of " if result.results else ""
    print(f"({shown}{result.total} matches, {result.query_time_ms:.1f} ms)")
    return 0


async def merge(c: GovcClient, args: argparse.Namespace) -> int:
    repo = _repo(args)
    if args.abort:
        await c.abort_merge(repo)
        return 0
    if not args.source:
        print("govc merge: name the branch to merge (or --abort)", file=sys.stderr)
        return 2
    result = await c.merge_branch(
        repo,
        args.source,
        args.into,
        args.message,
        strategy=args.strategy,
        leave_conflicts=args.leave_conflicts,
    )
    if result.conflicts:
        for path in result.conflict_files:
            print(f"CONFLICT: Merge conflict in {path}")
        if args.leave_conflicts:
            print("Automatic merge failed; fix conflicts, add them, then commit the result.")
        else:
            print("Automatic merge failed; nothing was changed.")
        return 1
    print(f"Merged {args.source}: {result.commit_hash[:7]}")
    return 0


async def tag(c: GovcClient, args: argparse.Namespace) -> int:
    repo = _repo(args)
    if args.delete:
        await c.delete_tag(repo, args.delete)
        print(f"Deleted tag '{args.delete}'")
    elif args.name:
        made = await c.create_tag(repo, args.name, args.target, args.message)
        print(f"{made.name} {made.commit_hash[:7]}")
    else:
        for found in (await c.list_tags(repo)).tags:
            print(found.name)
    return 0
