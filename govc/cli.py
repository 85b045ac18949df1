"""The `govc` command line: `govc serve`, `govc export/import`, and client commands."""

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from govc.search.indexer import DEFAULT_WAIT_SECONDS
from govc.server import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_KEEPALIVE_SECONDS,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_PEER,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_UPLOAD_BYTES,
    GovcServer,
    ServerConfig,
    StartError,
)
from govc.storage.datadir import DataDirInUse


def _serve(args: argparse.Namespace) -> int:
    import uvloop

    try:
        config = ServerConfig(
            data_dir=args.data_dir,
            host=args.host,
            grpc_port=args.grpc_port,
            rest_port=args.rest_port,
            durability=args.durability,
            ephemeral=args.ephemeral,
            max_message_bytes=args.max_message_bytes,
            max_upload_bytes=args.max_upload_bytes,
            index_wait_seconds=args.index_wait_seconds,
            max_connections=args.max_connections,
            max_connections_per_peer=args.max_connections_per_peer,
            idle_timeout=args.idle_timeout,
            max_concurrent_streams=args.max_concurrent_streams,
            header_timeout=args.header_timeout,
            keepalive_seconds=args.keepalive_seconds,
            keepalive_timeout=args.keepalive_timeout,
            stream_stall_seconds=args.stream_stall_seconds,
            max_concurrent_uploads=args.max_concurrent_uploads,
        )
    except ValueError as exc:
        print(f"govc serve: {exc}", file=sys.stderr)
        return 2
    try:
        uvloop.run(GovcServer(config).run_until_signalled())
    except (DataDirInUse, StartError) as exc:
        print(f"govc serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _port(text: str) -> int:
    """A TCP port number for argparse: 0 to 65535 (0: any free port); anything else is an
    argument error naming the flag, not a number the socket layer would silently wrap."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not a whole number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: must be 0 to 65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="govc", description="git-compatible version control")
    parser.add_argument(
        "--server",
        default=os.environ.get("GOVC_SERVER", "127.0.0.1:9090"),
        help="server address for client commands (env GOVC_SERVER)",
    )
    parser.add_argument(
        "-r", "--repo", default=os.environ.get("GOVC_REPO", ""), help="repository (env GOVC_REPO)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC server")
    serve.add_argument("--data-dir", default="./govc-data", help="storage directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--grpc-port", type=_port, default=9090, help="gRPC port, 0 to 65535 (0: any free)"
    )
    serve.add_argument(
        "--rest-port", type=_port, default=8080, help="REST port, 0 to 65535 (reserved)"
    )
    serve.add_argument(
        "--durability",
        choices=["durable", "relaxed"],
        default="durable",
        help="durable: acknowledged writes are on disk; relaxed: no fsync",
    )
    serve.add_argument(
        "--ephemeral", action="store_true", help="use a temporary data dir removed at exit"
    )
    serve.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="largest request or response message accepted",
    )
    serve.add_argument(
        "--max-upload-bytes",
        type=int,
        default=DEFAULT_MAX_UPLOAD_BYTES,
        help="largest blob UploadBlobStream accepts",
    )
    serve.add_argument(
        "--index-wait-seconds",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        help="how long a search waits for the index to catch up with earlier writes",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="most client connections open at once; more are closed right after accept "
        "(GOAWAY ENHANCE_YOUR_CALM) (default %(default)s)",
    )
    serve.add_argument(
        "--max-connections-per-peer",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS_PER_PEER,
        help="most connections open at once from one client IP address; more are closed "
        "right after accept (default %(default)s)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help="seconds a connection may sit with no call open and no frame received before "
        "it is closed with GOAWAY; 0: never (default %(default)s)",
    )
    serve.add_argument(
        "--max-concurrent-streams",
        type=int,
        default=DEFAULT_MAX_CONCURRENT_STREAMS,
        help="calls one connection may have open at once (HTTP/2 "
        "SETTINGS_MAX_CONCURRENT_STREAMS) (default %(default)s). Independently, a connection "
        "whose client cancels more than 200 calls in 10 s (and more than it completes) is "
        "closed with GOAWAY ENHANCE_YOUR_CALM (HTTP/2 rapid reset)",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT,
        help="seconds a connection has to finish the HTTP/2 preface, and any request headers "
        "(HEADERS + CONTINUATION) once begun; slower ones are closed (slowloris). A "
        "connection idle after its preface is left to --idle-timeout (default %(default)s)",
    )
    serve.add_argument(
        "--keepalive-seconds",
        type=float,
        default=DEFAULT_KEEPALIVE_SECONDS,
        help="seconds without a frame from a connection with calls open before the server "
        "sends it an HTTP/2 PING; 0: never (default %(default)s)",
    )
    serve.add_argument(
        "--keepalive-timeout",
        type=float,
        default=DEFAULT_KEEPALIVE_TIMEOUT,
        help="seconds to wait for the PING ACK; none: the connection is closed and its calls "
        "cancelled (default %(default)s)",
    )
    serve.add_argument(
        "--stream-stall-seconds",
        type=float,
        default=30.0,
        help="a StreamBlob or UploadBlobStream whose peer neither reads nor sends for this "
        "long ends with DEADLINE_EXCEEDED and releases its memory (default %(default)s)",
    )
    serve.add_argument(
        "--max-concurrent-uploads",
        type=int,
        default=64,
        help="uploads at once; more are RESOURCE_EXHAUSTED (default %(default)s)",
    )
    serve.set_defaults(func=_serve)

    export = commands.add_parser("export", help="write a repository as a bare git repository")
    export.add_argument("repo_id")
    export.add_argument("dest")
    export.add_argument("--data-dir", default="./govc-data")
    export.set_defaults(func=_storage_command)
    imp = commands.add_parser("import", help="create a repository from a git repository")
    imp.add_argument("source")
    imp.add_argument("repo_id")
    imp.add_argument("--data-dir", default="./govc-data")
    imp.set_defaults(func=_storage_command)

    _add_client_commands(commands)
    return parser


def _storage_command(args: argparse.Namespace) -> int:
    from govc.core.database import Database
    from govc.core.gitio import export_repository, import_repository
    from govc.core.registry import Registry
    from govc.core.validation import validate_repo_id
    from govc.core.versioncontrol import VersionControl
    from govc.errors import GovcError
    from govc.storage import Storage, StorageConfig

    storage = Storage(StorageConfig(path=args.data_dir))
    try:
        validate_repo_id(args.repo_id, "REPO_ID")
        db, vc = Database(storage, Registry()), VersionControl()
        if args.command == "export":
            count = export_repository(db, vc, args.repo_id, Path(args.dest))
            print(f"exported {args.repo_id} to {args.dest} ({count} objects)")
        else:
            result = import_repository(db, vc, Path(args.source), args.repo_id)
            for note in result.notes:
                print(f"note: {note}")
            print(f"imported {args.source} as {args.repo_id} ({result.objects} objects)")
        return 0
    except GovcError as exc:
        print(f"govc {args.command}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        storage.close()


def _client_command(args: argparse.Namespace) -> int:
    from govc.client import GovcRpcError
    from govc.commands import run

    try:
        return asyncio.run(run(args))
    except GovcRpcError as exc:
        print(f"govc: {exc.status.name}: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # the reader of our output went away: main() exits quietly
    except OSError as exc:
        print(f"govc: {exc}", file=sys.stderr)
        return 1


def _add_client_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from govc import commands as c

    def command(name: str, action: object, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text)
        parser.set_defaults(func=_client_command, action=action)
        return parser

    repo = commands.add_parser("repo", help="create, list or delete repositories")
    repo_commands = repo.add_subparsers(dest="repo_command", required=True)
    create = repo_commands.add_parser("create", help="create a repository")
    create.add_argument("id")
    create.add_argument("--name", default="")
    create.add_argument("--description", default="")
    create.set_defaults(func=_client_command, action=c.repo_create)
    repo_commands.add_parser("list", help="list repositories").set_defaults(
        func=_client_command, action=c.repo_list
    )
    delete = repo_commands.add_parser("delete", help="delete a repository")
    delete.add_argument("id")
    delete.set_defaults(func=_client_command, action=c.repo_delete)

    add = command("add", c.add, "add local files (work tree and index)")
    add.add_argument("paths", nargs="+")
    add.add_argument("--as", dest="as_path", default="", help="path in the repository")
    command("rm", c.rm, "remove a file").add_argument("path")
    mv = command("mv", c.mv, "move a file")
    mv.add_argument("source")
    mv.add_argument("target")
    cat = command("cat", c.cat, "print a file")
    cat.add_argument("path")
    cat.add_argument("--commit", default="", help="a revision (default: work tree)")
    commit = command("commit", c.commit, "commit the index")
    commit.add_argument("-m", "--message", required=True)
    commit.add_argument("--author", default="", help="'Name <email>'")
    commit.add_argument("files", nargs="*", help="commit only these paths")
    log = command("log", c.log, "show history")
    log.add_argument("-n", "--max-count", type=int, default=0)
    log.add_argument("--branch", default="")
    log.add_argument("--oneline", action="store_true")
    command("status", c.status, "show the work tree status")
    branch = command("branch", c.branch, "list, create or delete branches")
    branch.add_argument("name", nargs="?", default="")
    branch.add_argument("start_point", nargs="?", default="")
    branch.add_argument("-d", "--delete", default="")
    command("checkout", c.checkout, "switch branches").add_argument("name")
    put = command("put", c.put, "upload a file as a blob (streamed, checksummed)")
    put.add_argument("file")
    put.add_argument("--chunk-size", type=int, default=1 << 20)
    put.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    get = command("get", c.get, "download a blob (streamed, checksummed)")
    get.add_argument("hash")
    get.add_argument("-o", "--output", default="", help="file to write ('-': stdout)")
    get.add_argument("--chunk-size", type=int, default=1 << 20)
    get.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sql = command("sql", c.sql, "run a read-only SQL query: govc sql [REPO] QUERY")
    sql.add_argument("words", nargs="+", metavar="[REPO] QUERY")
    search = command("search", c.search, "full-text search: govc search [REPO] QUERY")
    search.add_argument("words", nargs="+", metavar="[REPO] QUERY")
    search.add_argument("-t", "--type", action="append", default=[], help="extension (repeat)")
    search.add_argument("-n", "--limit", type=int, default=20)
    search.add_argument("--offset", type=int, default=0)
    search.add_argument("--sort", default="score", choices=["score", "path", "size", "date"])
    search.add_argument("--max-size", type=int, default=0)
    search.add_argument("--min-score", type=float, default=0.0)
    search.add_argument(
        "--highlight", type=int, default=100, help="snippet length (0: no snippets)"
    )
    search.add_argument(
        "--group-by", action="append", default=[], help="aggregate instead (repeat for a|b)"
    )
    merge = command("merge", c.merge, "merge a branch into the current (or --into) branch")
    merge.add_argument("source", nargs="?", default="")
    merge.add_argument("--into", default="")
    merge.add_argument("-m", "--message", default="")
    merge.add_argument(
        "-X", "--strategy-option", dest="strategy", default="", help="ours, theirs or union"
    )
    merge.add_argument(
        "--leave-conflicts",
        action="store_true",
        help="on conflict, leave the merge in progress with conflict markers, as git does",
    )
    merge.add_argument("--abort", action="store_true", help="abort the merge in progress")
    tag = command("tag", c.tag, "list, create or delete tags")
    tag.add_argument("name", nargs="?", default="")
    tag.add_argument("target", nargs="?", default="")
    tag.add_argument("-m", "--message", default="", help="an annotated tag with this message")
    tag.add_argument("-d", "--delete", default="")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        # `govc log | head`: the reader closed the pipe. As the signal module's "Note on
        # SIGPIPE" advises, point stdout at devnull so the flush at exit cannot fail again,
        # and exit with status 1, as Python does on EPIPE, without a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
