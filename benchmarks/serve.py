"""A benchmark server in its own process: `python -m benchmarks.serve floor|govc [options]`.

Prints `PORT <n>` on stdout once it accepts calls, and stops cleanly on SIGTERM, SIGINT, or when
its stdin reaches end of file (so it never outlives the benchmark process that started it).
"""

import argparse
import asyncio
import logging
import signal
import socket
import sys
import threading

import uvloop
from grpclib.server import Server

from benchmarks.floor import FloorService
from govc.server import GovcServer, ServerConfig

HOST = "127.0.0.1"


def stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    return stop


def _announce(port: int) -> None:
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()


async def serve_floor(payload_sizes: list[int]) -> None:
    stop = stop_event()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    server = Server([FloorService(payload_sizes)])
    await server.start(sock=sock)
    _announce(sock.getsockname()[1])
    await stop.wait()
    server.close()
    await server.wait_closed()


async def serve_govc(data_dir: str, durability: str) -> None:
    stop = stop_event()
    server = GovcServer(
        ServerConfig(data_dir=data_dir, host=HOST, grpc_port=0, durability=durability)
    )
    await server.start()
    _announce(server.port)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    parser.add_argument("kind", choices=["floor", "govc"])
    parser.add_argument("--data-dir", help="govc: storage directory")
    parser.add_argument(
        "--durability", choices=["durable", "relaxed"], default="durable", help="govc: fsync?"
    )
    parser.add_argument(
        "--payload-sizes", default="", help="floor: comma-separated GetBlob payload sizes"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.kind == "floor":
        sizes = [int(s) for s in args.payload_sizes.split(",") if s]
        uvloop.run(serve_floor(sizes))
    else:
        if not args.data_dir:
            parser.error("govc needs --data-dir")
        uvloop.run(serve_govc(args.data_dir, args.durability))
    return 0


if __name__ == "__main__":
    sys.exit(main())
