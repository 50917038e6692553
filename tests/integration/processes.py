"""Running the server as real processes: the CLI in a subprocess, its log, its workers.

Every wait here polls a condition against a deadline; nothing sleeps and hopes.
The port is always the one the server reports ("Listening on ..."), never
one picked in advance.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LISTENING = re.compile(r"Listening on (\S+)")

# The app the process tests serve; each test writes it into its own directory
# (SIGHUP and --reload tests rewrite it there).
APP_SOURCE = '''
import asyncio, os, sys, time

VERSION = %(version)r

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get("FAIL_STARTUP"):
                    await send({"type": "lifespan.startup.failed", "message": "no database"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    query = scope["query_string"].decode()
    if path == "/slow":
        print("slow request started", file=sys.stderr, flush=True)
        await asyncio.sleep(float(query or 1))
        body = "slow done"
    elif path == "/block":
        print("blocking the loop", file=sys.stderr, flush=True)
        time.sleep(float(query or 60))
        body = "unblocked"
    elif path == "/client":
        body = "%%s %%s" %% tuple(scope["client"]) if scope["client"] else "none"
    elif path == "/scheme":
        body = scope["scheme"]
    elif path == "/version":
        body = VERSION
    elif path == "/big":
        body = "x" * int(query)
    else:
        body = str(os.getpid())
    data = body.encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"x-version", VERSION.encode()),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
'''


def write_app(directory: str, version: str = "v1", name: str = "procapp.py") -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as file:
        file.write(APP_SOURCE % {"version": version})
    return path


def wait_until(condition: Callable[[], object], timeout_s: float = 10.0, interval_s: float = 0.02,
               message: str = "condition") -> object:
    """Poll ``condition`` until it returns something true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout_s, message))
        time.sleep(interval_s)


# The server processes started by the running test: the integration
# conftest kills what is left of them after it and checks their logs.
RUNNING: List["ServerProcess"] = []

# How long a pipe reader may take to see EOF after its process ended (a
# grandchild can hold the pipe open).
PIPE_DRAIN_S = 5.0


class ServerProcess:
    """``python -m selectserver ARGS`` with its stderr and stdout collected line by line.

    It runs in its own session, so that ``kill()`` reaches its workers (and
    anything they started) through the process group.  Its pipes are read by
    threads: nothing here blocks on a read.
    """

    def __init__(self, args: Sequence[str], cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                 pass_fds: Sequence[int] = (), argv: Optional[List[str]] = None,
                 wait_listening: bool = True, timeout_s: float = 20.0,
                 preexec_fn: Optional[Callable[[], None]] = None) -> None:
        environment = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        environment["PYTHONPATH"] = os.pathsep.join(
            [REPO] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else []))
        environment.update(env or {})
        command = argv if argv is not None else [sys.executable, "-m", "selectserver", *args]
        self.args = list(args)
        self.proc = subprocess.Popen(command, cwd=cwd or REPO, env=environment, pass_fds=pass_fds,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=preexec_fn)
        RUNNING.append(self)
        self.pid = self.proc.pid
        self.errors: List[str] = []
        self.output: List[str] = []
        self._lock = threading.Lock()
        streams = ((self.proc.stderr, self.errors), (self.proc.stdout, self.output))
        self._pumps = [threading.Thread(target=self._pump, args=(stream, lines), daemon=True)
                       for stream, lines in streams]
        for pump in self._pumps:
            pump.start()
        self.urls: List[str] = []
        if wait_listening:
            try:
                wait_until(lambda: self.log_matches(LISTENING) or self.proc.poll() is not None,
                           timeout_s, message="the Listening line")
            except AssertionError:
                self.kill()
                raise AssertionError("server did not start within %.0fs:\n%s"
                                     % (timeout_s, self.log())) from None
            self.urls = [m.group(1) for m in self.log_matches(LISTENING)]
            if not self.urls:
                self.kill()
                raise AssertionError("server did not start:\n" + self.log())

    def _pump(self, stream, lines: List[str]) -> None:
        for raw in iter(stream.readline, b""):
            with self._lock:
                lines.append(raw.decode("utf-8", "replace"))
        stream.close()

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def address(self) -> Tuple[str, int]:
        host, port = self.url.split("//", 1)[1].rsplit(":", 1)
        return host.strip("[]"), int(port)

    def log(self) -> str:
        with self._lock:
            return "".join(self.errors)

    def log_matches(self, pattern: "re.Pattern[str]") -> List["re.Match[str]"]:
        with self._lock:
            lines = list(self.errors)
        return [m for m in map(pattern.search, lines) if m]

    def wait_for_log(self, text: str, timeout_s: float = 10.0, count: int = 1) -> None:
        wait_until(lambda: self.log().count(text) >= count, timeout_s,
                   message="%r in the log:\n%s" % (text, self.log()))

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout_s: float = 20.0) -> int:
        """The exit code; fails if the process is still running after ``timeout_s``."""
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError("server still running after %.1fs:\n%s" % (timeout_s, self.log())) from None
        self._drain_pipes()
        return code

    def _drain_pipes(self) -> None:
        # The log is complete once the readers saw EOF.
        for pump in self._pumps:
            pump.join(PIPE_DRAIN_S)

    def worker_pids(self) -> List[int]:
        return children(self.pid)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, as an operator would; ``kill()`` if that did not work; the exit code."""
        stop_process(self.proc, signal.SIGTERM, timeout_s)
        self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """Stop the master and its workers, whatever state they are in."""
        stop_process(self.proc, signal.SIGQUIT)
        # Workers orphaned or left behind by their master are in its group.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._drain_pipes()


def stop_process(proc: "subprocess.Popen[bytes]", signum: int, timeout_s: float = 5.0) -> None:
    """Send ``signum``; SIGKILL if ``proc`` is still there after ``timeout_s``."""
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket listening on a port the kernel picked."""
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen(64)
    return sock


@pytest.fixture
def app_dir(tmp_path) -> str:
    """A directory holding ``procapp.py`` (APP_SOURCE), version "v1"."""
    write_app(str(tmp_path))
    return str(tmp_path)


@pytest.fixture
def start(app_dir):
    """``start(*args, env=None, **kwargs)``: ``procapp:app`` on port 0; all killed after the test."""
    servers = []

    def start(*args, env=None, **kwargs):
        server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--port", "0", *args],
                               env=env, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


def children(pid: int) -> List[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    found = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as file:
                found.extend(int(child) for child in file.read().split())
    except OSError:
        pass
    return sorted(found)


def get(address: Tuple[str, int], path: str = "/", timeout_s: float = 10.0,
        headers: Optional[Dict[str, str]] = None) -> Tuple[int, str]:
    """One request on a fresh connection: (status, body)."""
    connection = http.client.HTTPConnection(address[0], address[1], timeout=timeout_s)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


class Load:
    """Clients sending requests on fresh connections in a loop, counting failures.

    ``pids`` collects the answers of ``/`` (the serving worker's pid).
    """

    def __init__(self, address: Tuple[str, int], clients: int = 4, path: str = "/") -> None:
        self.address = address
        self.path = path
        self.ok = 0
        self.failures: List[str] = []
        self.bodies: List[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _client(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = get(self.address, self.path, timeout_s=10)
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                continue
            with self._lock:
                if status == 200:
                    self.ok += 1
                    self.bodies.append(body)
                else:
                    self.failures.append("status %d" % status)

    def count(self) -> int:
        with self._lock:
            return self.ok

    def seen(self) -> List[str]:
        with self._lock:
            return list(self.bodies)


def connect_refused(address: Tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False
