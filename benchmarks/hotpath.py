"""The hot path alone: recv -> parse -> scope -> app -> serialize -> send.

One ``Connection`` on a fake socket that always has the same keep-alive
request to read and takes every byte it is given; no kernel, no wrk.  It
prints microseconds per request, and with ``--instructions`` the number of
CPU instructions per request counted by valgrind's callgrind, which is the
same from run to run whatever else the machine is doing -- the figure to
quote for a before/after of an optimisation.

    python3 benchmarks/hotpath.py                  # us/request
    python3 benchmarks/hotpath.py --instructions   # instructions/request
    python3 benchmarks/hotpath.py --profile        # cProfile, top functions
    python3 benchmarks/hotpath.py --stub-http11    # our parts without the parser/writer
    python3 benchmarks/hotpath.py --pipeline 16    # scenario D: 16 requests per recv()
    python3 benchmarks/hotpath.py --echo 4096      # scenario E: POST 4 KiB, echoed
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n"
           b"Accept: */*\r\n\r\n")
DATE_SERVER = b"date: Sun, 22 Nov 2026 05:00:00 GMT\r\nserver: selectserver\r\n"


def echo_request(size: int) -> bytes:
    """Scenario E's request (benchmarks/wrk/post.lua) with a body of ``size`` bytes."""
    return (b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: %d\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" % size) + b"x" * size


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


class FakeSocket:
    """Reads the same ``pipeline`` requests forever; accepts every write whole."""

    def __init__(self, request: bytes, pipeline: int = 1) -> None:
        self._real, self._peer = socket.socketpair()   # a real fd for the selector
        self._data = request * pipeline
        self.sends = 0

    def recv(self, size: int) -> bytes:
        return self._data

    def send(self, data: bytes) -> int:
        self.sends += 1
        return len(data)

    def fileno(self) -> int:
        return self._real.fileno()

    def getsockname(self):
        return ("127.0.0.1", 8000)

    def setsockopt(self, *args) -> None:
        pass

    def close(self) -> None:
        self._real.close()
        self._peer.close()


def stub_http11() -> None:
    """Replace the parser and writer with canned answers (measures the rest)."""
    from selectserver import connection
    from selectserver.http11.events import NEED_DATA, Request

    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]

    class CannedParser:
        __slots__ = ("fed", "buffered_bytes")

        def __init__(self, limits) -> None:
            self.fed = False
            self.buffered_bytes = 0

        def feed(self, data: bytes) -> None:
            self.fed = True

        def next_event(self):
            if self.fed:
                self.fed = False
                return Request(b"GET", b"/", "1.1", headers)
            return NEED_DATA

        def next_request(self, skip_body: bool = True) -> bool:
            return True

    class CannedWriter:
        __slots__ = ("keep_alive", "started", "status")

        def __init__(self, request) -> None:
            self.keep_alive = True
            self.started = False

        def head(self, status, headers, date_server) -> bytes:
            self.started = True
            return b"HTTP/1.1 200 OK\r\n\r\n"

        def body(self, data: bytes) -> bytes:
            return data

        def end(self) -> bytes:
            return b""

        def respond(self, status, headers, date_server, body: bytes, end: bool) -> bytes:
            self.started = True
            return b"HTTP/1.1 200 OK\r\n\r\n" + body

    connection.RequestParser = CannedParser
    connection.ResponseWriter = CannedWriter


def measure(requests: int, pipeline: int = 1, echo_bytes: int = 0) -> float:
    from selectserver.asgi import make_handler
    from selectserver.config import Config
    from selectserver.connection import Connection, ServerState
    from selectserver.loop import EVENT_READ, EventLoop
    from selectserver.websocket.asgi import upgrade_handler as websocket_upgrade

    loop = EventLoop()
    asyncio.set_event_loop(loop)
    config = Config(access_log=False, proxy_headers=os.environ.get("HOTPATH_PROXY", "1") == "1", ws=os.environ.get("HOTPATH_WS", "auto"))
    # The handler exactly as the worker builds it, websocket hook included.
    if echo_bytes:
        from benchmarks.apps import asgi_echo as app   # scenario E's own app
    else:
        app = hello
    state = ServerState(config, make_handler(app, config, upgrade=websocket_upgrade(config)))
    state.date_server = DATE_SERVER
    sock = FakeSocket(echo_request(echo_bytes) if echo_bytes else REQUEST, pipeline)
    reads = requests // pipeline
    conn = Connection(loop, sock, state, ("127.0.0.1", 50000))
    elapsed = []

    # One readable socket per select(), dispatched as the loop does it: the
    # answers queued during the batch leave when it ends.
    events = [(loop._selector.get_key(sock), EVENT_READ)]
    process_events = loop._process_events

    def run() -> None:
        # Inside a loop callback, as in the server: AppTask.start() must not
        # run inside another task's step.
        started = time.perf_counter()
        for _ in range(reads):
            process_events(events)
        elapsed.append(time.perf_counter() - started)
        loop.stop()

    loop.call_soon(run)
    loop.run_forever()
    assert sock.sends == reads, "the answers to one recv() must leave in one send()"
    loop.close()
    asyncio.set_event_loop(None)
    sock.close()
    return elapsed[0] / (reads * pipeline) * 1e6


def count_instructions(stub: bool, pipeline: int = 1, echo_bytes: int = 0) -> int:
    """Instructions per request: the difference of two callgrind runs."""
    python = os.path.realpath(sys.executable)
    counts = []
    sizes = [n - n % pipeline for n in (3000, 9000)]   # whole recv()s
    for requests in sizes:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                   python, os.path.abspath(__file__), "--requests", str(requests),
                   "--pipeline", str(pipeline), "--echo", str(echo_bytes)]
        if stub:
            command.append("--stub-http11")
        # The environment (HOTPATH_PROXY, HOTPATH_WS) passes through.
        output = subprocess.run(command, capture_output=True, text=True, check=True).stderr
        counts.append(int(re.search(r"Collected : (\d+)", output).group(1)))
    return (counts[1] - counts[0]) // (sizes[1] - sizes[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--stub-http11", action="store_true")
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--pipeline", type=int, default=1, metavar="N",
                        help="N requests in each recv() (scenario D: 16)")
    parser.add_argument("--echo", type=int, default=0, metavar="BYTES",
                        help="POST a body of BYTES to an echo app (scenario E: 4096)")
    args = parser.parse_args()
    if args.instructions:
        print("%s: %d instructions/request%s" % (
            sys.implementation.name + ".".join(map(str, sys.version_info[:2])),
            count_instructions(args.stub_http11, args.pipeline, args.echo),
            " (parser and writer stubbed)" if args.stub_http11 else ""))
        return
    if args.stub_http11:
        stub_http11()
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(measure, args.requests, args.pipeline, args.echo)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    print("%.2f us/request" % measure(args.requests, args.pipeline, args.echo))


if __name__ == "__main__":
    main()
