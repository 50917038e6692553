"""Shared fixtures: real servers on 127.0.0.1 port 0, and raw clients."""

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from selectserver import ServerThread

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def serve():
    """``serve(app, **options)`` starts a ServerThread; all are stopped after the test."""
    servers = []

    def start(app, **options):
        server = ServerThread(app, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


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


LISTENING = re.compile(r"Listening on (\S+)")


class CLIServer:
    """``python -m selectserver`` as a subprocess; ``url`` from its log line."""

    def __init__(self, args, env=None, timeout_s=20.0):
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        environment.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "selectserver", *args],
            cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.log_lines = []
        deadline = time.monotonic() + timeout_s
        self.url = None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                break
            self.log_lines.append(line)
            match = LISTENING.search(line)
            if match:
                self.url = match.group(1)
                break
        if self.url is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.log_lines))

    @property
    def address(self):
        host, port = self.url.split("//", 1)[1].rsplit(":", 1)
        return host.strip("[]"), int(port)

    def stop(self, timeout_s=10.0):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def cli_server():
    servers = []

    def start(*args, env=None):
        server = CLIServer(list(args), env=env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
