"""One tiny WSGI app per behaviour the integration tests exercise.

Apps that must be coordinated with a test (a gate to pass, an event to
report) take it from a ``Probe`` the test builds and serves with ``app``.
"""

import json
import sys
import threading
import time


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


def scheduling_policy(environ, start_response):
    """The pool thread's scheduling policy (Linux), as a number."""
    import os
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d" % os.sched_getscheduler(0)]


def echo(environ, start_response):
    """The body back, read in one read(); method and path in headers."""
    body = environ["wsgi.input"].read()
    start_response("200 OK", [
        ("Content-Type", "application/octet-stream"),
        ("X-Method", environ["REQUEST_METHOD"]),
        ("X-Path", environ["PATH_INFO"]),
        ("X-Query", environ["QUERY_STRING"]),
    ])
    return [body]


def echo_lines(environ, start_response):
    """The body back, line by line through iteration of wsgi.input."""
    lines = list(environ["wsgi.input"])
    start_response("200 OK", [("X-Lines", str(len(lines)))])
    return lines


def environ_json(environ, start_response):
    """The environ's text keys as JSON (latin-1 text stays as it is)."""
    data = {key: value for key, value in environ.items() if isinstance(value, str)}
    data["wsgi.multithread"] = environ["wsgi.multithread"]
    data["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
    body = json.dumps(data).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def streamed(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    for number in range(5):
        yield b"part %d\n" % number


def raises_before_start(environ, start_response):
    raise RuntimeError("boom before start")


def raises_after_start(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first part"
    raise RuntimeError("boom mid-body")


def replaces_head_with_exc_info(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("caught by the app")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"the app's own error page"]


def exc_info_after_head(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"already sent")
    try:
        raise ValueError("too late")
    except ValueError:
        start_response("500 Internal Server Error", [], sys.exc_info())
    return [b"never sent"]


def bad_header(environ, start_response):
    start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: stolen=1")])
    return [b"never sent"]


def bad_status(environ, start_response):
    start_response("OK 200", [])
    return [b"never sent"]


def too_long(environ, start_response):
    start_response("200 OK", [("Content-Length", "5")])
    return [b"12345", b"67890"]


def too_short(environ, start_response):
    start_response("200 OK", [("Content-Length", "10")])
    return [b"12345"]


def uses_write(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written, ")
    return [b"then returned"]


def file_wrapper(environ, start_response):
    """``?path=...`` through wsgi.file_wrapper."""
    path = environ["QUERY_STRING"].partition("=")[2]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](open(path, "rb"), 32768)


class Probe:
    """Events and gates shared between a test and the app it serves."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.closed = threading.Event()
        self.gates = [threading.Event() for _ in range(10)]
        self.produced = []
        self.errors = []
        self.peaks = {}
        self.running = 0     # requests inside the app now
        self.lock = threading.Lock()
        self.server = None   # set by the test when it needs the server's connections

    def note_peak(self, name, value):
        self.peaks[name] = max(self.peaks.get(name, 0), value)

    def connection_buffers(self):
        """(unread request bytes, unsent response bytes) summed over the server's connections."""
        connections = list(self.server.worker.state.connections)
        return (sum(conn.parser.buffered_bytes for conn in connections),
                sum(conn.write_buffer_bytes for conn in connections))


class Closing:
    """An iterable with close(), reporting close() on a probe."""

    def __init__(self, pieces, probe):
        self.pieces = pieces
        self.probe = probe

    def __iter__(self):
        return iter(self.pieces)

    def close(self):
        self.probe.closed.set()


def blocking(probe):
    """/block waits until the test releases it; anything else answers at once."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/block":
            with probe.lock:
                probe.running += 1
                probe.note_peak("block", probe.running)
            probe.started.set()
            probe.release.wait(30)
            with probe.lock:
                probe.running -= 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode("latin-1")]

    return app


def gated_stream(probe):
    """Yields part N only after the test opened gate N (and says it produced it)."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def parts():
            for number in range(3):
                if number and not probe.gates[number].wait(30):
                    raise RuntimeError("gate %d never opened" % number)
                probe.produced.append(number)
                yield b"part %d;" % number

        return Closing(parts(), probe)

    return app


def endless_stream(probe):
    """64 KiB pieces until the client leaves; reports buffer peaks and close()."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        piece = b"x" * 65536

        def parts():
            while True:
                probe.note_peak("write_buffer", probe.connection_buffers()[1])
                yield piece

        return Closing(parts(), probe)

    return app


def large_stream(probe, total_bytes):
    """``total_bytes`` in 64 KiB pieces, recording the write-buffer peak."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(total_bytes))])

        def parts():
            sent = 0
            while sent < total_bytes:
                probe.note_peak("write_buffer", probe.connection_buffers()[1])
                size = min(65536, total_bytes - sent)
                sent += size
                yield b"y" * size

        return parts()

    return app


def slow_reader(probe, piece_bytes=65536, pause_s=0.001):
    """Reads the body in pieces, slower than a local client sends; answers
    with its length, and records how full the buffers got."""

    def app(environ, start_response):
        body = environ["wsgi.input"]
        total = 0
        while True:
            unread, _ = probe.connection_buffers()
            probe.note_peak("connection", unread)
            probe.note_peak("app", body._size)
            data = body.read(piece_bytes)
            if not data:
                break
            total += len(data)
            time.sleep(pause_s)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(total).encode()]

    return app


def reads_until_gone(probe):
    """Reads the body; records the error a client leaving mid-body raises."""

    def app(environ, start_response):
        probe.started.set()
        try:
            while environ["wsgi.input"].read(1024):
                pass
        except OSError as exc:
            probe.errors.append(exc)
        start_response("200 OK", [])
        return Closing([b"unreachable"], probe)

    return app


def never_reads(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"not interested"]
