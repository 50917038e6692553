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
    python3 benchmarks/hotpath.py --wsgi           # WSGI A (F): the app on a pool thread
    python3 benchmarks/hotpath.py --wsgi --echo 4096 --instructions   # WSGI E
    python3 benchmarks/hotpath.py --wsgi --breakdown [--instructions]  # where it goes
    python3 benchmarks/hotpath.py --refuse         # a request over --limit-concurrency
    python3 benchmarks/hotpath.py --close          # ... and a hello served with Connection: close

WSGI: the request goes round the real way, loop -> pool thread -> loop, one
request in flight (the next recv() is made once the answer is sent), so the
figure is CPU per request, not a rate under load.  The process runs on one
CPU, as the bench's worker does: threads spread over two cores hand the GIL
across them (16.7 us per hello measured that way, 9.4 us on one core;
benchmarks/RESULTS.md, "the WSGI hand-off").  ``--breakdown`` measures
the same request with the app run on the loop's thread (the difference is
the hand-off to a thread and back), and the environ, the cycle and
``start_response`` alone.

``--refuse`` counts what one refusal costs the worker: a new ``Connection``,
its request read and parsed, the 503 written, the connection closed and
unregistered (the accept() and the kernel's part of the TCP connection are
not in it); ``--close`` the same for a hello served on a new connection that
asks to close, the fair comparison (a refused client must reconnect).
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
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n"
           b"Accept: */*\r\n\r\n")
CLOSE_REQUEST = REQUEST[:-2] + b"Connection: close\r\n\r\n"
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
        self.on_send = None     # WSGI: what to do once an answer is out

    def recv(self, size: int) -> bytes:
        return self._data

    def send(self, data: bytes) -> int:
        self.sends += 1
        if self.on_send is not None:
            self.on_send()
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

def measure_refusals(requests: int, serve: bool = False) -> float:
    """Microseconds per request refused by --limit-concurrency, each on a new
    connection; with ``serve``, per hello served on a new connection that
    asks to close (``Connection: close``): what the refusal saves."""
    from selectserver.asgi import make_handler
    from selectserver.config import Config
    from selectserver.connection import CLOSED, Connection, ServerState
    from selectserver.loop import EventLoop

    def app(scope, receive, send):
        raise AssertionError("a refused request reached the app")

    loop = EventLoop()
    asyncio.set_event_loop(loop)
    config = Config(access_log=False, limit_concurrency=1)
    state = ServerState(config, make_handler(hello if serve else app, config))
    state.date_server = DATE_SERVER
    if not serve:
        state.in_flight.add(object())   # the one request in flight, never done
    sock = ClosingSocket(CLOSE_REQUEST if serve else REQUEST)
    elapsed = []

    def run() -> None:
        started = time.perf_counter()
        try:
            for _ in range(requests):
                sock.reopen()
                # As the worker accepts: the request is read at once.
                conn = Connection(loop, sock, state, ("127.0.0.1", 50000), read_now=True)
                if conn.state is not CLOSED:
                    conn.on_readable()   # (lingering) the client's FIN: closed
            elapsed.append(time.perf_counter() - started)
        finally:
            loop.stop()

    loop.call_soon(run)
    loop.run_forever()
    assert sock.sends == requests and not state.connections, "each request: one answer, then closed"
    loop.close()
    asyncio.set_event_loop(None)
    sock.release()
    return elapsed[0] / requests * 1e6


class ClosingSocket(FakeSocket):
    """One request, then the client's FIN once we have sent ours; the fd is
    reused by the next connection."""

    def reopen(self) -> None:
        self._eof = False

    def recv(self, size: int) -> bytes:
        return b"" if self._eof else self._data

    def shutdown(self, how: int) -> None:
        self._eof = True

    def close(self) -> None:
        pass

    def release(self) -> None:
        FakeSocket.close(self)


# ---------------------------------------------------------------- WSGI

WSGI_CONNECTIONS = 64
WSGI_PARTS = ("request", "inline", "environ", "cycle", "start_response")


def run_inline() -> Callable[[], None]:
    """The app on the loop's thread: the pool runs a cycle as it is queued,
    and what the app hands to the loop runs there and then.  Returns the
    function that puts the real pool back."""
    from selectserver.wsgi import pool

    real = pool.ThreadPool, pool.LoopQueue

    class InlinePool:
        def __init__(self, size: int, name: str = "") -> None:
            self.waiting = lambda: 0

        def submit(self, cycle) -> None:
            cycle.run()

        def shutdown(self, timeout_s: float = 0.0) -> None:
            pass

    class InlineQueue:
        def __init__(self, loop) -> None:
            pass

        def call(self, callback, *args) -> None:
            callback(*args)

    pool.ThreadPool = InlinePool
    pool.LoopQueue = InlineQueue

    def restore() -> None:
        pool.ThreadPool, pool.LoopQueue = real
    return restore


def measure_wsgi(requests: int, echo_bytes: int = 0, part: str = "request") -> float:
    """CPU microseconds per request (or per call of one ``part``), all threads."""
    from selectserver import wsgi
    from selectserver.config import Config
    from selectserver.connection import Connection, ServerState
    from selectserver.loop import EventLoop
    from benchmarks.apps import wsgi_echo, wsgi_hello

    restore = run_inline() if part == "inline" else None
    try:
        return _measure_wsgi(requests, echo_bytes, part)
    finally:
        if restore is not None:
            restore()


def _measure_wsgi(requests: int, echo_bytes: int, part: str) -> float:
    from selectserver import wsgi
    from selectserver.config import Config
    from selectserver.connection import Connection, ServerState
    from selectserver.loop import EventLoop
    from benchmarks.apps import wsgi_echo, wsgi_hello

    loop = EventLoop()
    asyncio.set_event_loop(loop)
    # The pool as the bench runs it (--threads 4), one request in flight.
    config = Config(access_log=False, interface="wsgi", threads=4,
                    proxy_headers=os.environ.get("HOTPATH_PROXY", "1") == "1")
    app = wsgi_echo if echo_bytes else wsgi_hello
    handle, shutdown = wsgi.make_handler(app, config, loop)
    state = ServerState(config, handle)
    state.date_server = DATE_SERVER
    request_bytes = echo_request(echo_bytes) if echo_bytes else REQUEST
    elapsed = []

    if part in ("request", "inline"):
        # WSGI_CONNECTIONS clients (wrk -c64), each sending its next request
        # as soon as its answer is out; one turn reads every client that is
        # ready, as one epoll_wait() would report them under load.
        socks = [FakeSocket(request_bytes) for _ in range(WSGI_CONNECTIONS)]
        conns = [Connection(loop, sock, state, ("127.0.0.1", 50000 + i))
                 for i, sock in enumerate(socks)]
        ready = list(conns)
        counts = {"read": 0, "sent": 0}

        def turn() -> None:
            reading = ready[:]
            ready.clear()
            for conn in reading:
                if counts["read"] < requests:
                    counts["read"] += 1
                    conn.on_readable()

        def answered(conn) -> None:
            counts["sent"] += 1
            if counts["sent"] == requests:
                elapsed.append(time.process_time() - started)
                loop.stop()
                return
            if not ready:
                loop.call_soon(turn)
            ready.append(conn)

        for sock, conn in zip(socks, conns):
            sock.on_send = (lambda conn=conn: answered(conn))
        started = time.process_time()
        loop.call_soon(turn)
        loop.run_forever()
        assert sum(sock.sends for sock in socks) == requests
        sock = socks[0]
        for other in socks[1:]:
            other.close()
    else:
        # One piece alone, on the request the parser makes of REQUEST.
        sock = FakeSocket(request_bytes)
        conn = Connection(loop, sock, state, ("127.0.0.1", 50000))
        from selectserver.http11.parser import RequestParser
        parser = RequestParser(state.limits)
        parser.feed(sock.recv(0))
        request = parser.next_event()
        to_loop = wsgi.LoopQueue(loop)
        base = {"wsgi.url_scheme": "http"}
        headers = [("Content-Type", "text/plain"), ("Content-Length", "13")]
        started = time.process_time()
        if part == "environ":
            # As the handler builds it: a head seen before.
            build = wsgi.Environs(base, "").build
            for _ in range(requests):
                build(conn, request)
        elif part == "cycle":
            for _ in range(requests):
                wsgi.WSGICycle(conn, app, request, to_loop, {}, True)
        elif part == "start_response":
            cycle = wsgi.WSGICycle(conn, app, request, to_loop, {}, True)
            for _ in range(requests):
                cycle.status = 0
                cycle.start_response("200 OK", headers)
        elapsed.append(time.process_time() - started)
    shutdown()
    loop.close()
    asyncio.set_event_loop(None)
    sock.close()
    return elapsed[0] / requests * 1e6


def breakdown(instructions: bool, echo_bytes: int) -> None:
    """Where a WSGI request's cost goes, part by part."""
    unit = "instructions" if instructions else "us CPU"
    figures = {}
    for part in WSGI_PARTS:
        if instructions:
            figures[part] = count_instructions(False, 1, echo_bytes, ["--wsgi", "--part", part])
        else:
            figures[part] = min(measure_wsgi(20_000, echo_bytes, part) for _ in range(3))
    fmt = "%-44s %10d" if instructions else "%-44s %10.2f"
    print("WSGI %s, %s per request" % ("E (echo %d B)" % echo_bytes if echo_bytes else "A (hello)",
                                       unit))
    print(fmt % ("whole request, app on a pool thread", figures["request"]))
    print(fmt % ("  hand-off to a thread and back", figures["request"] - figures["inline"]))
    print(fmt % ("  the rest (app on the loop's thread)", figures["inline"]))
    print(fmt % ("    environ (Environs.build, a head seen before)", figures["environ"]))
    print(fmt % ("    the cycle object (WSGICycle())", figures["cycle"]))
    print(fmt % ("    start_response (2 headers)", figures["start_response"]))


def count_instructions(stub: bool, pipeline: int = 1, echo_bytes: int = 0,
                       extra: tuple = ()) -> int:
    """Instructions per request: the difference of two callgrind runs."""
    python = os.path.realpath(sys.executable)
    counts = []
    sizes = [n - n % pipeline for n in (3000, 9000)]   # whole recv()s
    # A first run does once what would otherwise land in the first counted
    # run only: writing the .pyc files, and benchmarks/apps.py's static
    # file (-E: 30 million instructions, which read as 5,300 fewer per
    # request; see the RESULTS.md note on issue 14, second round).
    subprocess.run([python, os.path.abspath(__file__), "--requests", str(pipeline),
                    "--pipeline", str(pipeline), "--echo", str(echo_bytes)]
                   + (["--stub-http11"] if stub else []) + list(extra),
                   capture_output=True, check=True)
    for requests in sizes:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                   python, os.path.abspath(__file__), "--requests", str(requests),
                   "--pipeline", str(pipeline), "--echo", str(echo_bytes)]
        if stub:
            command.append("--stub-http11")
        command.extend(extra)
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
    parser.add_argument("--wsgi", action="store_true",
                        help="the WSGI hello (or, with --echo, echo) app on the thread pool")
    parser.add_argument("--breakdown", action="store_true",
                        help="WSGI: the cost of the hand-off, environ, cycle, start_response")
    parser.add_argument("--part", choices=WSGI_PARTS, default="request", help=argparse.SUPPRESS)
    parser.add_argument("--refuse", action="store_true",
                        help="each request on a new connection, refused by --limit-concurrency")
    parser.add_argument("--close", action="store_true",
                        help="each request on a new connection with Connection: close, served "
                             "(a hello): what --refuse is compared with")
    args = parser.parse_args()
    if args.refuse or args.close:
        what = "refused: 503" if args.refuse else "served, Connection: close"
        if args.instructions:
            print("%s: %d instructions/request (%s, new connection each)" % (
                sys.implementation.name + ".".join(map(str, sys.version_info[:2])),
                count_instructions(False, extra=["--refuse" if args.refuse else "--close"]), what))
        else:
            print("%.2f us/request (%s, new connection each)" % (
                measure_refusals(args.requests, serve=args.close), what))
        return
    if args.wsgi or args.breakdown:
        if hasattr(os, "sched_setaffinity") and not args.instructions:
            # One CPU for the loop and the pool threads made after this (as
            # the bench pins its worker); callgrind runs one thread at a time.
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        if args.breakdown:
            breakdown(args.instructions, args.echo)
        elif args.instructions:
            print("%s: %d instructions/request (WSGI%s)" % (
                sys.implementation.name + ".".join(map(str, sys.version_info[:2])),
                count_instructions(False, 1, args.echo, ["--wsgi"]),
                ", echo %d B" % args.echo if args.echo else ""))
        elif args.profile:
            import cProfile
            import pstats

            # The app on the loop's thread: cProfile sees one thread only.
            profile = cProfile.Profile()
            profile.runcall(measure_wsgi, args.requests, args.echo, "inline")
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        else:
            print("%.2f us CPU/request" % measure_wsgi(args.requests, args.echo, args.part))
        return
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
