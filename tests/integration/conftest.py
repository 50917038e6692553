"""Shared fixtures: real servers on 127.0.0.1 port 0, and raw clients.

Every server a test starts is stopped after it within a bound, and what
went wrong in it fails the test: an exception that ended a ServerThread, a
thread or process that did not stop, and (through ``server_errors`` in
tests/conftest.py) the errors it logged.
"""

import asyncio
import socket

import pytest

from selectserver import ServerThread

from . import processes


@pytest.fixture
def serve(server_errors):
    """``serve(app, **options)`` starts a ServerThread; all are stopped after the test."""
    servers = []

    def start(app, **options):
        server = ServerThread(app, **options).start()
        servers.append(server)
        return server

    yield start
    failures = []
    for server in servers:
        try:
            server.stop()
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


@pytest.fixture(autouse=True)
def server_processes(server_errors):
    """Kills the server processes a test left running; their error lines reach ``server_errors``."""
    del processes.RUNNING[:]
    yield
    while processes.RUNNING:
        server = processes.RUNNING.pop(0)
        server.kill()
        server_errors.add_log(" ".join(server.args) or "server process", server.log())


def raw_exchange(address, data, timeout=5.0, shutdown=False):
    """Send ``data`` on a fresh socket; read until the server closes (or timeout)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            chunks.append(b"<timeout>")
        return b"".join(chunks)


def read_response(sock, buffer=b""):
    """Read one response (content-length or chunked framed) from ``sock``.

    Returns (status, headers dict, body, rest of buffer).
    """
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed before a response head: %r" % buffer)
        buffer += chunk
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", buffer
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(buffer) < size:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("closed mid-body")
            buffer += chunk
        return status, headers, buffer[:size], buffer[size:]
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buffer:
                buffer += sock.recv(65536)
            size_line, _, buffer = buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(buffer) < size + 2:
                buffer += sock.recv(65536)
            body += buffer[:size]
            buffer = buffer[size + 2:]
            if size == 0:
                return status, headers, body, buffer
    body = buffer
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return status, headers, body, b""
        body += chunk


@pytest.fixture
def cli_server():
    """``cli_server(*args, env=None)``: ``python -m selectserver ARGS``, a ServerProcess."""

    def start(*args, env=None):
        return processes.ServerProcess(list(args), env=env)

    return start


def run_client(coro):
    """``asyncio.run(coro)`` for a test's own client code, on a loop of its
    own, without ``shutdown_asyncgens()`` at the end: on PyPy 3.9 that step
    counts a WeakSet whose weak references the garbage collector may clear
    while it is being counted ("set changed size during iteration", seen
    with 100 websockets clients).  Whatever the client left suspended is
    dropped with the loop; the test has its answers by then."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
