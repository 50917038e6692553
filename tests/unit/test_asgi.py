"""The ASGI cycle on a fake connection: the exchange that is its own task,
the context each app runs in, and the scope's remembered targets."""

import asyncio
import contextvars

from selectserver import asgi
from selectserver.asgi import HTTPCycle, make_handler
from selectserver.config import Config
from selectserver.task import AppTask
from tests.unit.test_connection import make_conn  # noqa: F401 (a fixture)

REQUEST = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"

var = contextvars.ContextVar("var", default="unset")


def test_each_request_runs_in_its_own_context(make_conn):
    seen = []

    async def app(scope, receive, send):
        seen.append(var.get())
        var.set(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    conn, sock = make_conn(app)
    # Pipelined, so both run in one loop callback, one after the other.
    sock.reads.append(REQUEST % b"a" + REQUEST % b"b")
    make_conn.read(conn)
    sock.reads.append(REQUEST % b"c")
    make_conn.read(conn)
    assert seen == ["unset", "unset", "unset"]
    assert var.get() == "unset"


def test_the_exchange_is_the_current_task_of_its_app(make_conn):
    seen = []

    async def app(scope, receive, send):
        task = asyncio.current_task()
        seen.append(task)
        await asyncio.sleep(0)   # a later step, from the ready queue
        seen.append(asyncio.current_task())
        assert not task.done()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    conn, sock = make_conn(app)
    sock.reads.append(REQUEST % b"a")
    make_conn.read(conn)
    make_conn.in_loop(lambda: None)   # one more turn: the step after sleep(0)
    task = seen[0]
    assert isinstance(task, HTTPCycle) and isinstance(task, AppTask)
    assert seen == [task, task]
    assert task.done() and task.exception() is None
    assert task.get_name().startswith("AppTask-")
    assert sock.sent.endswith(b"\r\n2\r\nok\r\n0\r\n\r\n")


def test_the_exchange_sets_every_field_of_the_task_it_is(make_conn):
    """HTTPCycle.__init__ sets AppTask's fields itself (one-object): a field
    AppTask gains must be set there too.  Only the two hooks' callbacks are
    left unset, since HTTPCycle overrides the hooks that read them."""
    seen = []

    async def app(scope, receive, send):
        seen.append(asyncio.current_task())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    conn, sock = make_conn(app)
    sock.reads.append(REQUEST % b"a")
    make_conn.read(conn)
    cycle = seen[0]
    unset = {name for name in AppTask.__slots__ if name != "__weakref__"
             and not hasattr(cycle, name)}
    assert unset == {"_on_done", "_after_step"}
    assert HTTPCycle._ended is not AppTask._ended and HTTPCycle._stepped is not AppTask._stepped


def test_remembered_targets_give_the_scope_a_fresh_one_gives(make_conn, monkeypatch):
    conn, _ = make_conn()
    targets = [b"/a%20b?x=1", b"/plain", b"http://example.com/p?q", b"*", b"/" + b"x" * 300]

    class Request:
        method, http_version, headers, upgrade = b"GET", "1.1", [], False

    class Cycle:
        """Keeps the scope the handler built; runs no app."""
        def __init__(self, conn, scope, app, context):
            self.scope = scope

        def _step(self, exc):
            pass

    monkeypatch.setattr(asgi, "HTTPCycle", Cycle)
    handle = make_handler(None, Config(root_path="/api"))

    def scope_of(target):
        request = Request()
        request.target = target
        handle(conn, request)
        return conn.cycle.scope

    fresh = [scope_of(target) for target in targets]
    again = [scope_of(target) for target in targets]
    assert again == fresh
    assert fresh[0]["path"] == "/api/a b" and fresh[0]["raw_path"] == b"/api/a%20b"
    assert fresh[0]["query_string"] == b"x=1"
    assert b"/" + b"x" * 300 not in asgi._TARGETS   # too long to keep
    # A client sending new targets cannot grow it past its bound.
    monkeypatch.setattr(asgi, "_TARGETS", {})
    for number in range(asgi._TARGETS_MAX * 2):
        scope_of(b"/%d" % number)
    assert 0 < len(asgi._TARGETS) <= asgi._TARGETS_MAX


def test_receive_hands_over_what_is_here_in_batches(make_conn):
    messages = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            messages.append((len(message["body"]), message["more_body"]))
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    conn, sock = make_conn(app)
    # Three chunks that came together: one message.
    sock.reads.append(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n")
    make_conn.read(conn)
    assert messages == [(6, False)]
    # A body bigger than a batch, all here: a batch per message.
    del messages[:]
    size = asgi._BODY_BATCH_BYTES * 2 + 10
    chunk = b"x" * 1000
    chunks = [chunk] * (size // len(chunk)) + [b"y" * (size % len(chunk))]
    sock.reads.append(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n")
    make_conn.read(conn)
    assert sum(length for length, _ in messages) == size
    assert [more for _, more in messages] == [True] * (len(messages) - 1) + [False]
    assert all(length >= asgi._BODY_BATCH_BYTES for length, _ in messages[:-1])
    # A body of one piece, and an empty one.
    del messages[:]
    sock.reads.append(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                      b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    make_conn.read(conn)
    assert messages == [(5, False), (0, False)]
