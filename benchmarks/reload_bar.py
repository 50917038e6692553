"""The lifecycle bar: reloads, recycling and stops that lose nothing.

    python3 benchmarks/reload_bar.py             # full size (make reload-bar)
    python3 benchmarks/reload_bar.py --quick     # a few seconds per case
    python3 benchmarks/reload_bar.py --only asgi --case ab,stop

Against ``--workers 2``, for ASGI and WSGI:

* ``ab``: ``ab -k -c 20 -n 200000`` with a SIGHUP to the master every 2 s;
* ``wrk``: ``wrk -t1 -c64 -d20s`` with a SIGHUP every 2 s;
* ``ab-max``, ``wrk-max``: the same with ``--max-requests 1000`` as well;
* ``stop``: 20 keep-alive clients in a loop (and a few slow requests);
  SIGTERM; every request sent must be answered whole, and a connection
  attempted 100 ms after the signal must be refused at once (a reset of
  the first request of a connection opened after the signal is counted
  apart, as ``unaccepted``: see ``KeepAliveClient``);
* ``wrk-stop``: ``wrk -t1 -c64`` and SIGTERM halfway: no read error or
  timeout (a request in flight lost: reset, or closed unanswered), and a
  late connection refused.  wrk goes on reconnecting after the stop, and
  those connections are refused, as they should be: its non-blocking
  connect() reports the refusal on the first write, so wrk counts them as
  write (or connect) errors; they are printed, not held against the bar.

Each case prints one line of counts; the bar is 0 failed requests, 0 socket
errors, 0 requests lost and a refused late connection.  The exit status is
1 if any case misses it.  ``tests/integration/test_reload_bar.py`` runs the
same cases at a small size.

This module is also the app the server runs (``asgi_app``, ``wsgi_app``):
``/`` answers at once, ``/slow?S`` after S seconds.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTENING = re.compile(rb"Listening on http://(\S+):(\d+)")

BODY = b"Hello, world!"


# -- the app ----------------------------------------------------------------------------


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return   # no lifespan: the worker boots a little faster
    if scope["path"] == "/slow":
        import asyncio

        await asyncio.sleep(float(scope["query_string"] or 0.5))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"%d" % len(BODY))]})
    await send({"type": "http.response.body", "body": BODY})


def wsgi_app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(float(environ.get("QUERY_STRING") or 0.5))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


APPS = {"asgi": "benchmarks.reload_bar:asgi_app", "wsgi": "benchmarks.reload_bar:wsgi_app"}


# -- the server -------------------------------------------------------------------------


class Server:
    """``python -m selectserver`` on port 0 with ``--workers 2``; its log kept."""

    def __init__(self, interface: str, extra: List[str], python: str = sys.executable) -> None:
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        command = [python, "-m", "selectserver", APPS[interface], "--workers", "2",
                   "--host", "127.0.0.1", "--port", "0", "--no-access-log", *extra]
        self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.log: List[bytes] = []
        self._listening = threading.Event()
        self.port = 0
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._listening.wait(20):
            self.kill()
            raise RuntimeError("the server did not start:\n" + self.text())
        self.wait_for_log(b"serving", count=2)

    def _pump(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self.log.append(line)
            match = LISTENING.search(line)
            if match and not self.port:
                self.port = int(match.group(2))
                self._listening.set()
        self._listening.set()

    def text(self) -> str:
        return b"".join(self.log).decode("utf-8", "replace")

    def wait_for_log(self, text: bytes, count: int = 1, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(text in line for line in list(self.log)) < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("no %r in the log:\n%s" % (text, self.text()))
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d/" % self.port

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Reloader(threading.Thread):
    """Sends SIGHUP to the master every ``interval_s`` until stopped; the
    first one soon after the load starts, so a short run sees one too."""

    def __init__(self, server: Server, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.server, self.interval_s = server, interval_s
        self.sent = 0
        self._finished = threading.Event()
        self.start()

    def run(self) -> None:
        # The first one at once: a quick machine finishes the test's ab run
        # in a few tenths of a second, and a run without a SIGHUP proves nothing.
        wait_s = min(0.05, self.interval_s)
        while not self._finished.wait(wait_s):
            self.server.send_signal(signal.SIGHUP)
            self.sent += 1
            wait_s = self.interval_s

    def stop(self) -> None:
        self._finished.set()
        self.join()


# -- the cases --------------------------------------------------------------------------


def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    return int(match.group(1)) if match else 0


def run_ab(server: Server, requests: int, sighup_s: float) -> Dict[str, object]:
    reloader = Reloader(server, sighup_s)
    try:
        result = subprocess.run(["ab", "-k", "-c", "20", "-n", str(requests), server.url],
                                capture_output=True, text=True, timeout=600)
    finally:
        reloader.stop()
    out = result.stdout + result.stderr
    return {
        "requests": requests,
        "complete": _number(r"Complete requests:\s+(\d+)", out),
        "failed": _number(r"Failed requests:\s+(\d+)", out),
        "non_2xx": _number(r"Non-2xx responses:\s+(\d+)", out),
        "ab_exit": result.returncode,
        "sighups": reloader.sent,
        "error": "" if result.returncode == 0 else out.strip().splitlines()[-1],
    }


def run_wrk(server: Server, duration_s: float, sighup_s: float) -> Dict[str, object]:
    reloader = Reloader(server, sighup_s)
    try:
        result = subprocess.run(["wrk", "-t1", "-c64", "-d%ds" % duration_s, server.url],
                                capture_output=True, text=True, timeout=duration_s + 60)
    finally:
        reloader.stop()
    out = result.stdout
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    connect, read, write, timeout = (int(n) for n in errors.groups()) if errors else (0, 0, 0, 0)
    return {
        "requests": _number(r"(\d+) requests in", out),
        "non_2xx": _number(r"Non-2xx or 3xx responses:\s+(\d+)", out),
        "connect_errors": connect, "read_errors": read, "write_errors": write,
        "timeouts": timeout, "sighups": reloader.sent,
    }


class KeepAliveClient(threading.Thread):
    """Requests one after another on one kept-alive connection, reconnecting
    when the server closes it, until a connection is refused or it is told to stop.

    ``lost`` counts requests sent whose response never came whole.
    ``unaccepted`` counts those reset before any answer on a connection
    opened after the SIGTERM (``stop_sent_at``): the kernel completed it on
    a listener the workers were closing, and the last close resets what no
    worker accepted, so no server process ever read that request (a client
    retries such a request: nothing of it was processed).  A reset after an
    answer, or on a connection opened before the signal, stays ``lost``.
    """

    def __init__(self, port: int, path: str = "/") -> None:
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.answered = self.lost = self.refused = self.unaccepted = 0
        self.errors: List[str] = []
        self.stop_sent_at: Optional[float] = None
        self._finished = threading.Event()

    def run(self) -> None:
        while not self._finished.is_set():
            opened_at = time.monotonic()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                connection.connect()
            except ConnectionRefusedError:
                self.refused += 1
                return
            except OSError as exc:
                self.errors.append("connect: %r" % exc)
                return
            answered_here = 0
            try:
                while not self._finished.is_set():
                    try:
                        connection.request("GET", self.path)
                    except OSError:
                        break   # closed by the server before this request left: not lost
                    try:
                        response = connection.getresponse()
                        body = response.read()
                    except (OSError, http.client.HTTPException) as exc:
                        stop_sent_at = self.stop_sent_at
                        if (isinstance(exc, ConnectionResetError) and not answered_here
                                and stop_sent_at is not None and opened_at > stop_sent_at):
                            self.unaccepted += 1
                        else:
                            self.lost += 1
                            self.errors.append("%r after %d answer(s) on its connection"
                                               % (exc, answered_here))
                        break
                    answered_here += 1
                    if response.status != 200 or body != BODY:
                        self.lost += 1
                        self.errors.append("status %d" % response.status)
                    else:
                        self.answered += 1
                    if response.will_close:
                        break
            finally:
                connection.close()

    def stop(self) -> None:
        self._finished.set()


def try_connect(port: int, timeout_s: float = 2.0) -> str:
    """``refused``, ``accepted`` or ``hanging`` (no answer within ``timeout_s``)."""
    sock = socket.socket()
    sock.settimeout(timeout_s)
    try:
        sock.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "hanging"
    finally:
        sock.close()
    return "accepted"


def run_stop(server: Server, clients: int, load_s: float) -> Dict[str, object]:
    """SIGTERM under keep-alive load, with slow requests in flight."""
    fast = [KeepAliveClient(server.port) for _ in range(clients)]
    slow = [KeepAliveClient(server.port, "/slow?0.5") for _ in range(2)]
    for client in fast + slow:
        client.start()
    time.sleep(load_s)
    signalled = time.monotonic()
    for client in fast + slow:
        client.stop_sent_at = signalled
    server.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    late = try_connect(server.port)
    late_after_s = time.monotonic() - signalled
    code = server.stop()
    for client in fast + slow:
        client.stop()
        client.join(30)
    everyone = fast + slow
    return {
        "answered": sum(c.answered for c in everyone),
        "slow_answered": sum(c.answered for c in slow),
        "lost": sum(c.lost for c in everyone),
        "errors": sorted({e for c in everyone for e in c.errors})[:5],
        "unaccepted": sum(c.unaccepted for c in everyone),
        "late_connection": late,
        "late_connection_s": round(late_after_s, 3),
        "exit_code": code,
    }


def run_wrk_stop(server: Server, duration_s: float) -> Dict[str, object]:
    """wrk's 64 connections, SIGTERM halfway, a new connection 100 ms later."""
    wrk = subprocess.Popen(["wrk", "-t1", "-c64", "-d%ds" % duration_s, server.url],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(duration_s / 2)
    server.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    late = try_connect(server.port)
    code = server.stop()
    out, _ = wrk.communicate(timeout=duration_s + 60)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    connect, read, write, timeout = (int(n) for n in errors.groups()) if errors else (0, 0, 0, 0)
    return {
        "requests": _number(r"(\d+) requests in", out),
        "non_2xx": _number(r"Non-2xx or 3xx responses:\s+(\d+)", out),
        "read_errors": read, "timeouts": timeout, "refused_reconnects": connect + write,
        "late_connection": late, "exit_code": code,
    }


def passed(case: str, result: Dict[str, object]) -> bool:
    if case == "wrk-stop":
        return (result["late_connection"] == "refused" and result["exit_code"] == 0
                and result["requests"] > 0 and result["non_2xx"] == 0
                and result["read_errors"] == 0 and result["timeouts"] == 0)
    if case == "stop":
        return (result["lost"] == 0 and result["late_connection"] == "refused"
                and result["exit_code"] == 0 and result["slow_answered"] > 0)
    if case.startswith("ab"):
        return (result["failed"] == 0 and result["non_2xx"] == 0 and result["ab_exit"] == 0
                and result["complete"] == result["requests"])
    return (result["non_2xx"] == 0 and result["requests"] > 0
            and not any(result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")))


SIZES = {
    "full": {"ab_requests": 200_000, "wrk_s": 20, "sighup_s": 2.0, "stop_clients": 20, "stop_load_s": 2.0},
    "quick": {"ab_requests": 40_000, "wrk_s": 5, "sighup_s": 1.0, "stop_clients": 20, "stop_load_s": 1.0},
    # What tests/integration/test_reload_bar.py runs: seconds per case.
    "test": {"ab_requests": 20_000, "wrk_s": 2, "sighup_s": 0.4, "stop_clients": 8, "stop_load_s": 0.5},
}
CASES = ("ab", "wrk", "ab-max", "wrk-max", "stop", "wrk-stop")


def run_case(interface: str, case: str, size: Dict[str, float],
             python: str = sys.executable) -> Dict[str, object]:
    extra = ["--max-requests", "1000"] if case.endswith("-max") else []
    server = Server(interface, extra, python)
    try:
        if case == "wrk-stop":
            result = run_wrk_stop(server, size["wrk_s"])
        elif case.startswith("ab"):
            result = run_ab(server, int(size["ab_requests"]), size["sighup_s"])
        elif case.startswith("wrk"):
            result = run_wrk(server, size["wrk_s"], size["sighup_s"])
        else:
            result = run_stop(server, int(size["stop_clients"]), size["stop_load_s"])
        if "stop" not in case:
            result["exit_code"] = server.stop()
    finally:
        server.kill()
    result["log_errors"] = server.text().count("Traceback")
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds per case)")
    parser.add_argument("--only", default="asgi,wsgi", help="interfaces: asgi,wsgi")
    parser.add_argument("--case", default=",".join(CASES), help="cases: " + ",".join(CASES))
    parser.add_argument("--python", default=sys.executable, help="the interpreter to serve with")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    missed = 0
    for interface in args.only.split(","):
        for case in args.case.split(","):
            result = run_case(interface, case, size, args.python)
            ok = passed(case, result) and result["log_errors"] == 0
            missed += not ok
            counts = " ".join("%s=%s" % item for item in result.items())
            print("%-4s %-7s %s  %s" % (interface, case, "ok  " if ok else "MISS", counts), flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
