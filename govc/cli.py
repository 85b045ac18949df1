"""The `govc` command line."""

import argparse
import logging
import sys

from govc.server import DEFAULT_MAX_MESSAGE_BYTES, GovcServer, ServerConfig


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
        )
    except ValueError as exc:
        print(f"govc serve: {exc}", file=sys.stderr)
        return 2
    uvloop.run(GovcServer(config).run_until_signalled())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="govc", description="git-compatible version control")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC server")
    serve.add_argument("--data-dir", default="./govc-data", help="storage directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--grpc-port", type=int, default=9090, help="gRPC port (0: any free)")
    serve.add_argument("--rest-port", type=int, default=8080, help="REST port (reserved)")
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
    serve.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
