"""logs.py: access-line atoms, escaping, and --log-config files."""

from __future__ import annotations

import json
import logging
import os
import re

import pytest

from selectserver.config import Config
from selectserver.http11.events import Request
from selectserver.logs import AccessLog, LogConfigError, compile_format, escape, load_config_file


class FakeWriter:
    def __init__(self, status=200, bytes_sent=5, headers=None):
        self.status = status
        self.bytes_sent = bytes_sent
        if headers is not None:
            self.headers = headers


class FakeCycle:
    headers = [(b"Content-Type", b"text/plain"), (b"X-Trace", b"abc")]


class FakeConn:
    def __init__(self, client=("192.0.2.9", 5555)):
        self.client = client
        self.cycle = FakeCycle()


def request(target=b"/a/b?x=1", headers=()):
    return Request(b"GET", target, "1.1", [(b"host", b"h")] + list(headers))


@pytest.fixture
def lines():
    captured = []

    class Capture(logging.Handler):
        def emit(self, record):
            captured.append(record.getMessage())

    logger = logging.getLogger("selectserver.access")
    handler = Capture()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield captured
    logger.removeHandler(handler)
    logger.setLevel(old_level)
    logger.propagate = old_propagate


def line(lines, access_format, conn=None, req=None, writer=None, duration_s=0.0123456, **options):
    log = AccessLog(Config(access_log_format=access_format, **options))
    log(conn or FakeConn(), req or request(), writer or FakeWriter(), duration_s)
    return lines[-1]


def test_default_format(lines):
    assert line(lines, None) == '192.0.2.9 - "GET /a/b?x=1 HTTP/1.1" 200'


@pytest.mark.parametrize("atom, expected", [
    ("h", "192.0.2.9"), ("r", "GET /a/b?x=1 HTTP/1.1"), ("s", "200"), ("b", "5"), ("B", "5"),
    ("m", "GET"), ("U", "/a/b"), ("q", "x=1"), ("H", "HTTP/1.1"), ("l", "-"), ("u", "-"),
    ("D", "12345"), ("M", "12"), ("L", "0.012346"), ("T", "0"), ("p", "<%d>" % os.getpid()),
    ("f", "-"), ("a", "curl/8"),
    ("{x-request-id}i", "req-1"), ("{X-Request-Id}i", "req-1"), ("{missing}i", "-"),
    ("{x-trace}o", "abc"), ("{content-type}o", "text/plain"),
])
def test_atoms(lines, atom, expected):
    req = request(headers=[(b"user-agent", b"curl/8"), (b"x-request-id", b"req-1")])
    assert line(lines, "%%(%s)s" % atom, req=req) == expected


def test_time_atom(lines):
    assert re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", line(lines, "%(t)s"))


def test_size_dash_when_empty(lines):
    assert line(lines, "%(b)s %(B)s", writer=FakeWriter(bytes_sent=0)) == "- 0"


def test_response_header_from_the_writer_when_it_keeps_them(lines):
    writer = FakeWriter(headers=[(b"x-trace", b"from-writer")])
    assert line(lines, "%({x-trace}o)s", writer=writer) == "from-writer"


def test_unix_socket_client(lines):
    assert line(lines, "%(h)s", conn=FakeConn(client=None)) == "-"


def test_client_from_trusted_proxy(lines):
    req = request(headers=[(b"x-forwarded-for", b"203.0.113.5")])
    assert line(lines, "%(h)s", conn=FakeConn(("127.0.0.1", 1)), req=req) == "203.0.113.5"
    assert line(lines, "%(h)s", conn=FakeConn(("10.0.0.1", 1)), req=req) == "10.0.0.1"
    assert line(lines, "%(h)s", conn=FakeConn(("127.0.0.1", 1)), req=req, proxy_headers=False) == "127.0.0.1"


def test_client_bytes_cannot_forge_lines(lines):
    req = request(headers=[(b"user-agent", b'x" 200\n127.0.0.1 - "GET /admin'),
                           (b"referer", b"\x1b[31m\xff\\")])
    text = line(lines, '"%(a)s" "%(f)s"', req=req)
    assert "\n" not in text and "\x1b" not in text
    assert text == '"x\\x22 200\\x0a127.0.0.1 - \\x22GET /admin" "\\x1b[31m\\xff\\x5c"'


@pytest.mark.parametrize("value, expected", [
    (b"plain text", "plain text"), (b"tab\there", "tab\\x09here"), (b'"', "\\x22"), (b"\x7f", "\\x7f"),
])
def test_escape(value, expected):
    assert escape(value) == expected


@pytest.mark.parametrize("bad", ["%(Z)s", "%({x}e)s", "%(h)d %(", "%(h)"])
def test_bad_formats_are_refused(bad):
    with pytest.raises(ValueError):
        compile_format(bad)


def test_disabled_access_logger_does_no_work(lines):
    logging.getLogger("selectserver.access").setLevel(logging.WARNING)
    AccessLog(Config())(FakeConn(), request(), FakeWriter(), 0.0)
    assert lines == []


def test_json_log_config(tmp_path):
    target = tmp_path / "access.log"
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({
        "version": 1,
        "formatters": {"bare": {"format": "ACCESS %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(target),
                              "formatter": "bare"}},
        "loggers": {"test.logs.json": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }))
    load_config_file(str(config))
    logger = logging.getLogger("test.logs.json")
    logger.info("hello")
    for handler in logger.handlers:
        handler.close()
    logger.handlers.clear()
    assert target.read_text() == "ACCESS hello\n"


def test_ini_log_config(tmp_path):
    config = tmp_path / "logging.ini"
    config.write_text("""
[loggers]
keys=root,probe
[handlers]
keys=null
[formatters]
keys=
[logger_root]
handlers=null
[logger_probe]
handlers=null
qualname=test.logs.ini
level=DEBUG
[handler_null]
class=NullHandler
args=()
""")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        load_config_file(str(config))
        assert logging.getLogger("test.logs.ini").level == logging.DEBUG
    finally:
        root.handlers[:], root.level = saved


@pytest.mark.parametrize("name, text", [
    ("missing.json", None), ("missing.ini", None), ("bad.json", "{not json"),
    ("bad.ini", "[loggers]\nkeys=nothing\n"),
])
def test_bad_log_config_files(tmp_path, name, text):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(LogConfigError, match=name):
        load_config_file(str(path))


def test_a_sigusr1_before_the_loop_handles_it_is_honoured_when_it_does(monkeypatch):
    """Between fork() and the loop's own handler, a worker's SIGUSR1 only
    sets a flag (logs.owe_reopen); installing the loop's handlers pays it."""
    import signal

    from selectserver import logs
    from selectserver.worker import Worker

    reopened = []
    monkeypatch.setattr(logs, "reopen", lambda: reopened.append(True))
    installed = {}

    class RecordingLoop:
        def add_signal_handler(self, signum, callback, *args):
            installed[signum] = callback

    worker = Worker(Config(app="x:y"), [])
    worker.loop = RecordingLoop()
    previous = signal.signal(signal.SIGUSR1, logs.owe_reopen)
    try:
        signal.raise_signal(signal.SIGUSR1)   # the handler runs before the next line
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert reopened == []                     # nothing done in the signal handler itself
    worker._install_signal_handlers()
    assert reopened == [True]                 # paid as the loop takes over
    assert signal.SIGUSR1 in installed
    worker._install_signal_handlers()
    assert reopened == [True]                 # and only once
