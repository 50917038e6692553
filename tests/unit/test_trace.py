"""trace.py's parts without a server: topics, and the selector's narration."""

from __future__ import annotations

import collections
import logging
import selectors
import socket

import pytest

from selectserver import cli, trace


def test_topics():
    assert trace.parse_topics(True) == {"loop", "conn", "app"}
    assert trace.parse_topics("all") == {"loop", "conn", "app"}
    assert trace.parse_topics("loop,app") == {"loop", "app"}
    assert trace.parse_topics(False) == set() == trace.parse_topics("")
    with pytest.raises(ValueError, match="unknown trace topic 'sockets'"):
        trace.parse_topics("loop,sockets")


def test_the_command_line_takes_topics_or_none():
    assert cli.config_from_args(["m:app", "--trace"]).trace == "all"
    assert cli.config_from_args(["m:app", "--trace", "conn,app"]).trace == "conn,app"
    assert not cli.config_from_args(["m:app"]).trace
    with pytest.raises(SystemExit):
        cli.config_from_args(["m:app", "--trace", "everything"])


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        # Without the time: "loop register fd 7 (...) for R"
        self.lines.append(record.getMessage().split(None, 1)[1])


class FakeLoop:
    def __init__(self):
        self._ready = collections.deque()
        self._scheduled = []
        self._stopping = False


class Peer:
    """What a connection looks like to the trace: a socket, a parser, a peer."""

    def __init__(self, sock):
        self.sock = sock
        self.parser = None
        self.client = ("127.0.0.1", 50226)
        self.state = None


def test_the_selector_says_what_it_was_asked_and_what_came_back():
    lines = Lines()
    trace.log.addHandler(lines)
    trace.log.setLevel(trace.TRACE)
    ours, theirs = socket.socketpair()
    selector = trace.TracingSelector(selectors.DefaultSelector(), trace.Tracer(FakeLoop(), frozenset(trace.TOPICS)))
    try:
        peer = Peer(ours)
        selector.register(ours, selectors.EVENT_READ, peer)
        fd = ours.fileno()
        selector.modify(ours, selectors.EVENT_READ | selectors.EVENT_WRITE, peer)
        assert [key.fd for key, _ in selector.select(None)] == [fd]
        theirs.sendall(b"hi")
        assert peer.sock.recv(10) == b"hi"
        assert peer.sock.send(b"hello") == 5
        selector.unregister(ours)
    finally:
        trace.log.removeHandler(lines)
        selector.close()
        ours.close()
        theirs.close()
    assert lines.lines == [
        "loop register fd %d (127.0.0.1:50226) for R" % fd,
        "loop modify fd %d (127.0.0.1:50226): R -> RW" % fd,
        "loop select(timeout=None, no timers: only I/O can wake the loop) -> fd %d (127.0.0.1:50226) W" % fd,
        "conn fd %d recv 2 bytes" % fd,
        "conn fd %d send 5 bytes" % fd,
        "loop unregister fd %d (127.0.0.1:50226)" % fd,
    ]


def test_the_environment_may_say_yes_or_topics():
    assert cli.convert("trace", "1", "SELECTSERVER_TRACE") == "all"
    assert cli.convert("trace", "off", "SELECTSERVER_TRACE") == ""
    assert cli.convert("trace", "loop", "SELECTSERVER_TRACE") == "loop"
    with pytest.raises(cli.ConfigError, match="SELECTSERVER_TRACE"):
        cli.convert("trace", "nonsense", "SELECTSERVER_TRACE")


def test_a_state_change_says_its_cause():
    import enum

    class State(enum.Enum):
        IDLE = "idle"
        CLOSED = "closed"

    class Event(enum.Enum):
        TIMEOUT = "timeout"
        PEER_GONE = "peer gone"

    lines = Lines()
    trace.log.addHandler(lines)
    trace.log.setLevel(trace.TRACE)
    tracer = trace.Tracer(FakeLoop(), frozenset(trace.TOPICS))
    ours, theirs = socket.socketpair()
    fd = ours.fileno()
    try:
        peer = Peer(ours)
        tracer.on_transition(peer, State.IDLE, Event.TIMEOUT, State.CLOSED)
        tracer.eof.add(fd)
        tracer.on_transition(peer, State.IDLE, Event.PEER_GONE, State.CLOSED)
    finally:
        trace.log.removeHandler(lines)
        ours.close()
        theirs.close()
    assert lines.lines == [
        "conn fd %d idle -> closed (keep-alive timeout)" % fd,
        "conn fd %d idle -> closed (peer gone: EOF)" % fd,
    ]


def test_a_batch_of_wsgi_callbacks_is_named_by_what_it_holds():
    import functools

    from selectserver.wsgi import LoopQueue

    class Owner:
        def _respond_on_loop(self):
            pass

        def _send_on_loop(self, body, end):
            pass

    queue = LoopQueue(FakeLoop())
    owner = Owner()
    # As LoopQueue.call queues them: alone, or with arguments as a partial.
    queue._pending.append(owner._respond_on_loop)
    queue._pending.append(functools.partial(owner._send_on_loop, b"x", True))
    tracer = trace.Tracer(FakeLoop(), frozenset(trace.TOPICS))
    assert tracer.describe_callback(queue._run_batch) == (
        "do what WSGI threads asked: respond_on_loop, send_on_loop")
