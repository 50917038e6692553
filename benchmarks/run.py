"""Benchmark runner: selectserver against its peers, one worker each, on this machine.

    python3 benchmarks/run.py --setup     # peers' venv, wrk, ab, pypy3 (make bench-setup)
    python3 benchmarks/run.py --quick     # A D E F W, three servers, 1 x 3 s (make bench)
    python3 benchmarks/run.py --full      # everything, median of 3 x 5 s (make bench-full)
    python3 benchmarks/run.py --full --only selectserver,granian-asgi --scenario A,D
    python3 benchmarks/run.py --list      # servers, scenarios and the plan, runs nothing
    python3 benchmarks/run.py --quick --only selectserver --scenario A --profile   # + py-spy
    python3 benchmarks/run.py --report benchmarks/out/results-full-*.json   # re-render

Each (server, scenario) pair gets a fresh server process on a port picked here, pinned to the
first CPU, with the load client (wrk, benchmarks/clients.py or benchmarks/ws_echo_client.py)
pinned to the second. The runner
waits until the server answers the scenario's own request correctly, warms it up, runs the load
N times and takes the median. A run with socket errors or non-2xx/3xx answers is invalid and is
not quoted. Server CPU is read from /proc (utime + stime of the server's whole process tree)
before and after each run. Servers are stopped by PID (SIGTERM, SIGKILL after a bound), also on
Ctrl-C. Results go to benchmarks/RESULTS.md (one section per mode; the hand-written notes at
the top are kept) and a PNG chart drawn by benchmarks/chart.py when matplotlib is available.

Standard library only. Only 127.0.0.1 is ever contacted; every load run is bounded in time.
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
PEERS_DIR = os.path.join(BENCH_DIR, ".peers")
VENV = os.path.join(PEERS_DIR, "venv")
VENV_BIN = os.path.join(VENV, "bin")
OUT_DIR = os.path.join(BENCH_DIR, "out")
LOG_DIR = os.path.join(OUT_DIR, "logs")
RESULTS_MD = os.path.join(BENCH_DIR, "RESULTS.md")
REQUIREMENTS = os.path.join(BENCH_DIR, "requirements-peers.txt")
WRK_DIR = os.path.join(BENCH_DIR, "wrk")
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

NOTES_BEGIN = "<!-- notes: hand-written, kept as they are by benchmarks/run.py -->"
NOTES_END = "<!-- end of notes -->"
DEFAULT_NOTES = """## Notes and profiles

Profiles of the hot path, before/after numbers of optimisations and remarks on the runs below
go here, by hand. `benchmarks/run.py` rewrites only the generated sections after this one.
"""


# ---------------------------------------------------------------- servers

@dataclasses.dataclass
class Server:
    """One server under test: how to start it with one worker on 127.0.0.1."""

    name: str
    label: str
    interface: str            # "asgi" or "wsgi": which of benchmarks/apps.py it serves
    argv: list                # template: {python} {pypy} {venv} {port} {app}
    runtime: str = "venv"     # "cpython" (this interpreter), "pypy" (pypy3) or "venv" (peers)
    optional_flags: list = dataclasses.field(default_factory=list)
    is_ours: bool = False
    scenarios: tuple = ()     # the only scenarios it runs (a peer for one scenario); () = all

    @property
    def is_pypy(self) -> bool:
        return self.runtime == "pypy"


# selectserver's flags after the first two are used only when `--help` lists them, so the
# runner keeps working while the CLI grows; what was dropped is reported with the results.
_OURS_FLAGS = [["--no-access-log"], ["--log-level", "warning"], ["--workers", "1"],
               ["--timeout-keep-alive", "120"], ["--backlog", "4096"]]
_OURS_WSGI_FLAGS = [["--interface", "wsgi"], ["--threads", "4"]] + _OURS_FLAGS

SERVERS = [
    Server("selectserver", "selectserver", "asgi",
           ["{python}", "-m", "selectserver", "{app}", "--host", HOST, "--port", "{port}"],
           runtime="cpython", optional_flags=_OURS_FLAGS, is_ours=True),
    Server("selectserver-wsgi", "selectserver WSGI", "wsgi",
           ["{python}", "-m", "selectserver", "{app}", "--host", HOST, "--port", "{port}"],
           runtime="cpython", optional_flags=_OURS_WSGI_FLAGS, is_ours=True),
    Server("selectserver-pypy", "selectserver PyPy", "asgi",
           ["{pypy}", "-m", "selectserver", "{app}", "--host", HOST, "--port", "{port}"],
           runtime="pypy", optional_flags=_OURS_FLAGS, is_ours=True),
    Server("selectserver-pypy-wsgi", "selectserver PyPy WSGI", "wsgi",
           ["{pypy}", "-m", "selectserver", "{app}", "--host", HOST, "--port", "{port}"],
           runtime="pypy", optional_flags=_OURS_WSGI_FLAGS, is_ours=True),
    Server("uvicorn-h11", "uvicorn h11", "asgi",
           ["{venv}/uvicorn", "{app}", "--host", HOST, "--port", "{port}", "--http", "h11",
            "--loop", "asyncio", "--no-access-log", "--log-level", "warning",
            "--timeout-keep-alive", "120", "--backlog", "4096"]),
    Server("uvicorn-httptools", "uvicorn httptools+uvloop", "asgi",
           ["{venv}/uvicorn", "{app}", "--host", HOST, "--port", "{port}", "--http",
            "httptools", "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
            "--timeout-keep-alive", "120", "--backlog", "4096"]),
    # W's peer: uvicorn's default loop and parser in the peers' venv (uvloop, httptools), spelt
    # out, with the websockets library as its websocket implementation.
    Server("uvicorn-websockets", "uvicorn (websockets)", "asgi",
           ["{venv}/uvicorn", "{app}", "--host", HOST, "--port", "{port}", "--ws",
            "websockets", "--http", "httptools", "--loop", "uvloop", "--no-access-log",
            "--log-level", "warning", "--timeout-keep-alive", "120", "--backlog", "4096"],
           scenarios=("W",)),
    Server("hypercorn", "hypercorn", "asgi",
           ["{venv}/hypercorn", "{app}", "--bind", HOST + ":{port}", "--workers", "1",
            "--keep-alive", "120", "--backlog", "4096", "--log-level", "warning"]),
    Server("granian-asgi", "granian ASGI", "asgi",
           ["{venv}/granian", "--interface", "asgi", "--host", HOST, "--port", "{port}",
            "--workers", "1", "--runtime-threads", "1", "--no-ws", "--backlog", "4096",
            "--backpressure", "16384", "--log-level", "warning", "{app}"]),
    Server("granian-wsgi", "granian WSGI", "wsgi",
           ["{venv}/granian", "--interface", "wsgi", "--host", HOST, "--port", "{port}",
            "--workers", "1", "--runtime-threads", "1", "--no-ws", "--backlog", "4096",
            "--backpressure", "16384", "--log-level", "warning", "{app}"]),
    Server("waitress", "waitress (4 threads)", "wsgi",
           ["{venv}/waitress-serve", "--host=" + HOST, "--port={port}", "--threads=4",
            "--connection-limit=16384", "--channel-timeout=120", "--backlog=4096",
            "--asyncore-use-poll", "--max-request-body-size=4294967296", "{app}"]),
    Server("gunicorn-gthread", "gunicorn gthread (4 threads)", "wsgi",
           ["{venv}/gunicorn", "--bind", HOST + ":{port}", "--workers", "1",
            "--worker-class", "gthread", "--threads", "4", "--worker-connections", "16384",
            "--keep-alive", "120", "--backlog", "4096", "--log-level", "warning", "{app}"]),
]
SERVERS_BY_NAME = {server.name: server for server in SERVERS}
QUICK_SERVERS = ["selectserver", "selectserver-wsgi", "selectserver-pypy",
                 "uvicorn-httptools", "uvicorn-websockets", "granian-asgi", "granian-wsgi"]

# Why these options: every server gets one worker, no access log, a keep-alive timeout longer
# than any run, and room for the 2,000-connection and 10,000-idle-connection runs (waitress'
# default select() stops at 1,024 descriptors, its connection limit at 100; gunicorn gthread
# accepts 1,000 connections by default; granian admits backlog/workers connections at once;
# waitress refuses bodies of 1 GiB and more by default, which the upload run sends).


# ---------------------------------------------------------------- scenarios

@dataclasses.dataclass
class Scenario:
    """One workload. kind: "wrk" (throughput), "ws" (websocket echo), "idle" (10k
    connections), "transfer" or "overload" (wrk; 503s expected, 2xx/s measured)."""

    key: str
    title: str
    apps: dict                 # interface -> app name in benchmarks/apps.py
    kind: str = "wrk"
    connections: int = 64
    wrk_extra: list = dataclasses.field(default_factory=list)
    wrk_script_args: list = dataclasses.field(default_factory=list)
    path: str = "/"
    probe: tuple = ("GET", "/", b"", b"Hello, world!")   # method, path, body, expected body
    note: str = ""
    servers: tuple = ()        # the only servers it runs on; () = every server of its interfaces
    server_flags: list = dataclasses.field(default_factory=list)   # after the server's own


HELLO = {"asgi": "asgi_hello", "wsgi": "wsgi_hello"}
PIPELINE_LUA = os.path.join(WRK_DIR, "pipeline.lua")
POST_LUA = os.path.join(WRK_DIR, "post.lua")
ECHO_PROBE = b"e" * 4096
WS_MESSAGE_BYTES = 32

SCENARIOS = [
    Scenario("A", "A keep-alive ASGI hello, c64", {"asgi": "asgi_hello"}),
    Scenario("B", "B new connection per request, c64", HELLO,
             wrk_extra=["-H", "Connection: close"],
             note="wrk sends `Connection: close`, the server answers and closes, wrk reconnects; "
                  "wrk rather than ab: the same client as the other rows, and an HTTP/1.1 "
                  "request rather than ab's HTTP/1.0 (`--b-client ab` runs B with ab)"),
    Scenario("C", "C 1 MiB response, c16", {"asgi": "asgi_mib", "wsgi": "wsgi_mib"},
             connections=16, probe=("GET", "/", b"", 1 << 20)),
    Scenario("D", "D pipelined x16, c64", HELLO,
             wrk_extra=["-s", PIPELINE_LUA], wrk_script_args=["16"],
             note="benchmarks/wrk/pipeline.lua writes 16 requests at a time per connection"),
    Scenario("E", "E POST 4 KiB echo, c64", {"asgi": "asgi_echo", "wsgi": "wsgi_echo"},
             wrk_extra=["-s", POST_LUA], wrk_script_args=["4096"],
             probe=("POST", "/", ECHO_PROBE, ECHO_PROBE)),
    Scenario("F", "F keep-alive WSGI hello, c64", {"wsgi": "wsgi_hello"}),
    Scenario("G", "G 50 KB static file, c64", {"asgi": "asgi_static", "wsgi": "wsgi_static"},
             probe=("GET", "/", b"", 50_000),
             note="WSGI: wsgi.file_wrapper; ASGI: http.response.pathsend when the server "
                  "lists it in scope['extensions'], else the file read and sent in 64 KiB chunks"),
    Scenario("W", "W websocket echo 32 B, c64 (messages/s)", {"asgi": "asgi_websocket_echo"},
             kind="ws", probe=("WEBSOCKET", "/", b"w" * WS_MESSAGE_BYTES, b"w" * WS_MESSAGE_BYTES),
             servers=("selectserver", "selectserver-pypy", "uvicorn-websockets"),
             note="benchmarks/ws_echo_client.py: 64 websocket connections, one 32-byte text "
                  "message in flight on each (send, wait for the echo, send again), no "
                  "compression; a rate of messages echoed, and server CPU per message"),
    Scenario("S1", "scaling: hello, 1 connection", HELLO, connections=1),
    Scenario("S64", "scaling: hello, 64 connections", HELLO, connections=64),
    Scenario("S512", "scaling: hello, 512 connections", HELLO, connections=512),
    Scenario("S2000", "scaling: hello, 2,000 connections", HELLO, connections=2000),
    Scenario("IDLE", "RSS with 10,000 idle keep-alive connections", HELLO, kind="idle",
             connections=10_000),
    Scenario("UP", "RSS during a 1 GiB upload", {"asgi": "asgi_upload", "wsgi": "wsgi_upload"},
             kind="transfer", probe=("POST", "/upload", b"0123456789", b"10")),
    Scenario("DOWN", "RSS during a 1 GiB download",
             {"asgi": "asgi_download", "wsgi": "wsgi_download"}, kind="transfer",
             probe=("GET", "/download?bytes=10", b"", 10)),
]
# Overload (issue 16): --limit-concurrency N, an app whose requests wait 10 ms (so they are
# really in flight together), and N, 2N, 4N, 10N wrk connections. What counts is the rate of
# 2xx answers: the excess gets 503s, which must not eat the admitted requests' share.
OVERLOAD_LIMIT = 10
OVERLOAD_FACTORS = (1, 2, 4, 10)
OVERLOAD_KEYS = ["O%d" % (OVERLOAD_LIMIT * factor) for factor in OVERLOAD_FACTORS]
OVERLOAD_GOODPUT = 0.9      # at 2N, 4N, 10N: at least this share of the 2xx rate at N
SCENARIOS += [
    Scenario(key, "overload: limit %d, %d connections" % (OVERLOAD_LIMIT, connections),
             {"asgi": "asgi_work", "wsgi": "wsgi_work"}, kind="overload",
             connections=connections, servers=("selectserver", "selectserver-wsgi"),
             server_flags=["--limit-concurrency", str(OVERLOAD_LIMIT),
                           "--threads", str(OVERLOAD_LIMIT)],
             note="--limit-concurrency %d; each request sleeps 10 ms (WSGI: on one of %d "
                  "threads); 503s are expected, the figure is 2xx answers per second"
                  % (OVERLOAD_LIMIT, OVERLOAD_LIMIT) if connections == OVERLOAD_LIMIT else "")
    for key, connections in zip(OVERLOAD_KEYS, (OVERLOAD_LIMIT * f for f in OVERLOAD_FACTORS))
]
SCENARIOS_BY_KEY = {scenario.key: scenario for scenario in SCENARIOS}
QUICK_SCENARIOS = ["A", "D", "E", "F", "W"]
THROUGHPUT_KEYS = ["A", "B", "C", "D", "E", "F", "G", "W"]
SCALING_KEYS = ["S1", "S64", "S512", "S2000"]


@dataclasses.dataclass
class Mode:
    name: str
    runs: int
    duration_s: int
    warmup_s: int
    pypy_warmup_s: int      # the JIT needs longer before its numbers settle: at least this,
    pypy_max_warmup_s: int  # then slices until the rate is stable, at most this in all
    transfer_bytes: int = 1 << 30
    idle_connections: int = 10_000


MODES = {
    "quick": Mode("quick", runs=1, duration_s=3, warmup_s=1, pypy_warmup_s=4,
                  pypy_max_warmup_s=30),
    "full": Mode("full", runs=3, duration_s=5, warmup_s=2, pypy_warmup_s=10,
                 pypy_max_warmup_s=60),
}


def applies(server: Server, scenario: Scenario, mode: Mode) -> bool:
    """Whether the pair is run: the scenario has an app for the server's interface, and
    neither of them is limited to others."""
    if server.interface not in scenario.apps:
        return False
    if scenario.servers and server.name not in scenario.servers:
        return False
    if server.scenarios and scenario.key not in server.scenarios:
        return False
    if mode.name == "quick" and server.is_pypy:
        return scenario.key == "A"      # the PyPy target is about A only
    return True


# ---------------------------------------------------------------- parsing load-tool output

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError("not a wrk duration: %r" % text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def _bytes(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)([KMGT]?B)", text)
    if not match:
        raise ValueError("not a wrk size: %r" % text)
    return float(match.group(1)) * _SIZE_UNITS[match.group(2)]


def parse_wrk(text: str) -> dict:
    """wrk's report as numbers: requests, seconds, rps, latency (s), errors, non-2xx/3xx.

    Raises ValueError when the text has no wrk summary (wrk failed to start, say).
    """
    result = {"requests": None, "seconds": None, "rps": None, "bytes_read": None,
              "latency_avg_s": None, "latency_max_s": None, "latency_percentiles_s": {},
              "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
              "non_2xx_3xx": 0}
    match = re.search(r"^\s*(\d+) requests in ([\d.]+\w+), ([\d.]+[KMGT]?B) read", text, re.M)
    if not match:
        raise ValueError("no wrk summary in output: %r" % text[-300:])
    result["requests"] = int(match.group(1))
    result["seconds"] = _seconds(match.group(2))
    result["bytes_read"] = _bytes(match.group(3))
    match = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if match:
        result["rps"] = float(match.group(1))
    match = re.search(r"^\s*Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", text, re.M)
    if match:
        result["latency_avg_s"] = _seconds(match.group(1))
        result["latency_max_s"] = _seconds(match.group(3))
    for percent, value in re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)\s*$", text, re.M):
        # wrk prints 0.00us when it took no samples (pipelined requests): unknown, not zero.
        if _seconds(value) > 0:
            result["latency_percentiles_s"][int(percent)] = _seconds(value)
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      text)
    if match:
        result["errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                    (int(group) for group in match.groups())))
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if match:
        result["non_2xx_3xx"] = int(match.group(1))
    return result


def parse_ab(text: str) -> dict:
    """ab's report in the same shape as parse_wrk's (errors under "failed" and "exceptions")."""
    def number(label: str, kind=float):
        match = re.search(r"^%s:\s+([\d.]+)" % re.escape(label), text, re.M)
        return kind(match.group(1)) if match else None

    requests = number("Complete requests", int)
    if requests is None:
        raise ValueError("no ab summary in output: %r" % text[-300:])
    failed = number("Failed requests", int) or 0
    percentiles = {int(percent): float(ms) / 1000
                   for percent, ms in re.findall(r"^\s+(\d+)%\s+(\d+)", text, re.M)}
    errors = {"connect": 0, "read": 0, "write": number("Write errors", int) or 0,
              "timeout": 0, "failed": failed}
    match = re.search(r"^\s+\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)",
                      text, re.M)
    if match:
        errors.update(connect=int(match.group(1)), read=int(match.group(2)),
                      length=int(match.group(3)), exceptions=int(match.group(4)))
    mean_ms = number("Time per request")  # the first one is the mean across concurrency
    return {"requests": requests, "seconds": number("Time taken for tests"),
            "rps": number("Requests per second"), "bytes_read": number("Total transferred"),
            "latency_avg_s": mean_ms / 1000 if mean_ms is not None else None,
            "latency_max_s": percentiles.get(100), "latency_percentiles_s": percentiles,
            "errors": errors, "non_2xx_3xx": number("Non-2xx responses", int) or 0}


def parse_ws_echo(text: str) -> dict:
    """benchmarks/ws_echo_client.py's JSON line in the shape of parse_wrk's result.

    Messages echoed count as requests; the client's errors (a connection closed or a wrong
    echo) as errors. Raises ValueError when there is no report (the client failed to connect).
    """
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if "messages" in report:
                break
    else:
        raise ValueError("no ws_echo_client report in output: %r" % text[-300:])
    return {"requests": int(report["messages"]), "seconds": float(report["seconds"]),
            "rps": float(report["messages_per_s"]), "bytes_read": None,
            "latency_avg_s": None, "latency_max_s": None, "latency_percentiles_s": {},
            "errors": {"client": int(report.get("errors", 0))}, "non_2xx_3xx": 0}


def run_errors(result: dict) -> str:
    """'' for a clean run, else a short description of what went wrong."""
    problems = ["%s %d" % (name, count) for name, count in result["errors"].items() if count]
    if result["non_2xx_3xx"]:
        problems.append("non-2xx/3xx %d" % result["non_2xx_3xx"])
    if not result["requests"]:
        problems.append("no requests completed")
    return ", ".join(problems)


# ---------------------------------------------------------------- /proc

def _process_table() -> dict:
    """pid -> (ppid, pgid, utime + stime ticks) for every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        # fields[0] is field 3 (state): ppid=4, pgrp=5, utime=14, stime=15
        table[int(entry)] = (int(fields[1]), int(fields[2]), int(fields[11]) + int(fields[12]))
    return table


def process_tree(pid: int, table: dict | None = None) -> list:
    """pid and all its descendants."""
    table = _process_table() if table is None else table
    children = {}
    for child, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(child)
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        if current in table:
            tree.append(current)
        pending.extend(children.get(current, ()))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of pid and its descendants, in seconds."""
    table = _process_table()
    return sum(table[p][2] for p in process_tree(pid, table)) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """VmRSS of one process, 0 when gone."""
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> dict:
    """pid -> VmRSS for pid and its descendants."""
    return {p: rss_bytes(p) for p in process_tree(pid)}


def busiest_process(pid: int) -> int:
    """The process of the tree that has used the most CPU so far: the worker, after a load.

    Pre-forking servers (selectserver, gunicorn, granian) have a master beside the worker, of
    about the same RSS after fork: memory is reported for the worker only.
    """
    table = _process_table()
    return max(process_tree(pid, table), key=lambda p: table[p][2])


class RssSampler:
    """Samples the RSS of every process of a tree every `interval_s` in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.02):
        self.pid = pid
        self.interval_s = interval_s
        self.peaks: dict = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tree = process_tree(self.pid)
        while not self._stop.is_set():
            for p in tree:
                self.peaks[p] = max(self.peaks.get(p, 0), rss_bytes(p))
            self.samples += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- processes

def cpu_plan() -> tuple:
    """(server CPUs, client CPUs): the first CPU for the server, the second for load."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, {cpus[1]}


SERVER_CPUS, CLIENT_CPUS = cpu_plan()


def _preexec(cpus: set | None):
    """Pin the child to `cpus` (None: leave it) and raise its descriptor limit to the hard one."""
    def preexec() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if cpus:
            os.sched_setaffinity(0, cpus)
    return preexec


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1; the server binds it right after."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


_RUNNING: dict = {}     # pid -> Popen of every server started and not yet stopped


def _stop_all_servers() -> None:
    for process in list(_RUNNING.values()):
        stop_process(process)


atexit.register(_stop_all_servers)


def stop_process(process: subprocess.Popen, bound_s: float = 5.0) -> None:
    """SIGTERM the server, SIGKILL it and whatever it forked if still there after `bound_s`."""
    _RUNNING.pop(process.pid, None)
    if process.poll() is not None:
        return
    tree = process_tree(process.pid)
    try:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=bound_s)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    table = _process_table()
    for pid in tree:
        # Only processes still in the session we created for the server.
        if pid in table and table[pid][1] == process.pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        process.wait(timeout=bound_s)
    except subprocess.TimeoutExpired:
        pass


class StartFailed(Exception):
    """The server exited, or did not answer correctly in time."""


def _probe_websocket(port: int, path: str, message: bytes, timeout_s: float) -> None:
    """Upgrade, send one text message and read its echo, as the W load does."""
    sys.path.insert(0, BENCH_DIR)
    try:
        import ws_echo_client
    finally:
        sys.path.remove(BENCH_DIR)
    try:
        sock, rest = ws_echo_client.open_websocket(HOST, port, path, timeout_s)
    except ConnectionError as exc:
        raise StartFailed("websocket %s: %s" % (path, exc))
    with sock:
        echoer = ws_echo_client.Echoer(sock, rest, message)
        sock.settimeout(timeout_s)
        sock.sendall(ws_echo_client.masked_text_frame(message))
        echoes = 0
        while not echoes:
            data = sock.recv(65536)
            if not data:
                raise StartFailed("websocket %s: closed before the echo" % path)
            echoer.buffer += data
            echoes = echoer.take_echoes()
            if echoes < 0:
                raise StartFailed("websocket %s: not the echo: %r" % (path, echoer.buffer[:60]))


def _probe(port: int, probe: tuple, timeout_s: float = 2.0) -> None:
    """One request with http.client (a websocket echo for "WEBSOCKET"); raises StartFailed
    with the reason when the answer is off."""
    method, path, body, expected = probe
    if method == "WEBSOCKET":
        _probe_websocket(port, path, body, timeout_s)
        return
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body else {}
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise StartFailed("%s %s answered %d" % (method, path, response.status))
    if isinstance(expected, int):
        if len(data) != expected:
            raise StartFailed("%s %s: %d bytes, expected %d" % (method, path, len(data),
                                                                 expected))
    elif data != expected:
        raise StartFailed("%s %s answered %r, expected %r" % (method, path, data[:60],
                                                              expected[:60]))


class ServerProcess:
    """A running server: started pinned, ready when it answers `probe`, stopped by PID."""

    def __init__(self, argv: list, log_path: str, port: int, probe: tuple,
                 start_timeout_s: float = 30.0):
        self.argv = argv
        self.log_path = log_path
        self.port = port
        self.probe = probe
        self.start_timeout_s = start_timeout_s
        self.process = None

    def __enter__(self) -> "ServerProcess":
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [ROOT] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else []))
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=_preexec(SERVER_CPUS),
                start_new_session=True)
        _RUNNING[self.process.pid] = self.process
        try:
            self._wait_until_ready()
        except BaseException:
            stop_process(self.process)
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StartFailed("exited with %d: %s" % (self.process.returncode,
                                                          self.log_tail(lines=1)))
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0):
                    pass
            except OSError as exc:
                last_error = str(exc)
                time.sleep(0.05)
                continue
            try:
                _probe(self.port, self.probe)
                return
            except (OSError, http.client.HTTPException) as exc:
                last_error = "%s: %s" % (type(exc).__name__, exc)
                time.sleep(0.1)
        raise StartFailed("not answering after %.0f s (%s): %s" % (
            self.start_timeout_s, last_error, self.log_tail()))

    def log_tail(self, lines: int = 6) -> str:
        try:
            with open(self.log_path, "rb") as f:
                text = f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""
        text = text.replace(ROOT + "/", "").replace(sys.executable, "python3")
        return " | ".join(text.strip().splitlines()[-lines:])

    @property
    def pid(self) -> int:
        return self.process.pid

    def __exit__(self, *exc_info) -> None:
        stop_process(self.process)


# ---------------------------------------------------------------- load

def wrk_argv(scenario: Scenario, port: int, duration_s: float, connections: int) -> list:
    argv = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % duration_s, "--timeout", "5s",
            "--latency"] + scenario.wrk_extra + ["http://%s:%s%s" % (HOST, port, scenario.path)]
    if scenario.wrk_script_args:
        argv += ["--"] + scenario.wrk_script_args
    return argv


def ab_argv(scenario: Scenario, port: int, duration_s: float, connections: int) -> list:
    # -t before -n: ab stops at whichever comes first; -n large so that -t decides.
    return ["ab", "-q", "-t", str(duration_s), "-n", "100000000", "-c", str(connections),
            "-r", "http://%s:%s%s" % (HOST, port, scenario.path)]


WS_ECHO_CLIENT = os.path.join(BENCH_DIR, "ws_echo_client.py")


def ws_echo_argv(scenario: Scenario, port: int, duration_s: float, connections: int) -> list:
    return [sys.executable, WS_ECHO_CLIENT, "--port", str(port), "--path", scenario.path,
            "--connections", str(connections), "--seconds", str(duration_s),
            "--size", str(WS_MESSAGE_BYTES), "--timeout-s", "10"]


def run_load(argv: list, parse, duration_s: float, server_pid: int) -> dict:
    """One bounded load run; the parsed result plus server CPU over the run."""
    cpu_before = cpu_seconds(server_pid)
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    completed = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, preexec_fn=_preexec(CLIENT_CPUS),
                               timeout=duration_s + 30)
    wall_s = time.monotonic() - started
    cpu_s = cpu_seconds(server_pid) - cpu_before
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu_s = (client_after.ru_utime + client_after.ru_stime
                    - client_before.ru_utime - client_before.ru_stime)
    output = completed.stdout.decode("utf-8", "replace")
    try:
        result = parse(output)
    except ValueError:
        result = {"requests": 0, "rps": 0.0, "errors": {"tool": 1}, "non_2xx_3xx": 0,
                  "latency_percentiles_s": {}}
    result["output"] = output[-2000:]
    result["server_cpu_s"] = cpu_s
    result["wall_s"] = wall_s
    result["server_cpu_percent"] = 100.0 * cpu_s / wall_s if wall_s else None
    # Near 100%, the load client (on its own CPU) rather than the server set the rate.
    result["client_cpu_percent"] = 100.0 * client_cpu_s / wall_s if wall_s else None
    result["cpu_us_per_request"] = (1e6 * cpu_s / result["requests"]
                                    if result["requests"] else None)
    result["invalid"] = run_errors(result)
    return result


def summarize(runs: list) -> dict:
    """Median of the valid runs (the whole cell is invalid if any run is)."""
    invalid = [run["invalid"] for run in runs if run["invalid"]]
    rps = [run["rps"] for run in runs]
    cpu = [run["cpu_us_per_request"] for run in runs if run["cpu_us_per_request"] is not None]
    middle = sorted(runs, key=lambda run: run["rps"] or 0)[len(runs) // 2]
    percentiles = middle.get("latency_percentiles_s", {})
    return {"valid": not invalid, "invalid": "; ".join(invalid),
            "rps": statistics.median(rps) if rps else None, "rps_runs": rps,
            "cpu_us_per_request": statistics.median(cpu) if cpu else None,
            "server_cpu_percent": middle.get("server_cpu_percent"),
            "client_cpu_percent": middle.get("client_cpu_percent"),
            "latency_p50_s": percentiles.get(50), "latency_p99_s": percentiles.get(99)}


# PyPy's JIT keeps compiling for a while under load: its warm-up is cut into
# slices, and the runs start once two slices in a row agree within this
# fraction (after pypy_warmup_s at least, pypy_max_warmup_s at most).  On
# 2026-12-06 a quick A run went 97.3k, 108.0k, 110.0k req/s in its 2 s
# slices: the fixed 4 s warm-up before measured PyPy while its JIT still
# gained 10%.
PYPY_SLICE_S = 2
PYPY_STABLE_FRACTION = 0.05


def warm_up(server: Server, mode: Mode, load) -> list:
    """Load the server before its runs; the rates of PyPy's warm-up slices.

    ``load(seconds)`` runs the scenario's load for that long and returns its result.
    """
    if not server.is_pypy:
        if mode.warmup_s:
            load(mode.warmup_s)
        return []
    rates: list = []
    spent_s = 0
    while spent_s < max(mode.pypy_max_warmup_s, mode.pypy_warmup_s):
        rates.append(load(PYPY_SLICE_S).get("rps") or 0.0)
        spent_s += PYPY_SLICE_S
        if (spent_s >= mode.pypy_warmup_s and len(rates) >= 2 and rates[-2]
                and abs(rates[-1] - rates[-2]) <= PYPY_STABLE_FRACTION * rates[-2]):
            break
    return rates


def measure_wrk(server: Server, scenario: Scenario, mode: Mode, handle: ServerProcess,
                options) -> dict:
    use_ab = scenario.key == "B" and options.b_client == "ab"
    build, parse, client = ((ab_argv, parse_ab, "ab") if use_ab else
                            (ws_echo_argv, parse_ws_echo, "ws_echo_client")
                            if scenario.kind == "ws" else (wrk_argv, parse_wrk, "wrk"))
    connections = scenario.connections
    warmup_rps = warm_up(server, mode, lambda seconds: run_load(
        build(scenario, handle.port, seconds, connections), parse, seconds, handle.pid))
    runs = []
    for _ in range(mode.runs):
        if handle.process.poll() is not None:
            raise StartFailed("server exited during the runs: " + handle.log_tail())
        runs.append(run_load(build(scenario, handle.port, mode.duration_s, connections), parse,
                             mode.duration_s, handle.pid))
    summary = summarize(runs)
    summary["runs"] = runs
    summary["warmup_rps"] = warmup_rps
    summary["client"] = client
    summary["command"] = " ".join(shlex.quote(part) for part in _relative(
        build(scenario, "PORT", mode.duration_s, connections)))
    if options.profile and server.is_ours and not server.is_pypy:
        summary["profile"] = profile_run(server, scenario, mode, handle,
                                         build(scenario, handle.port, mode.duration_s,
                                               connections), parse)
    return summary


# ---------------------------------------------------------------- profiles

PY_SPY = os.path.join(VENV_BIN, "py-spy")


def profile_run(server: Server, scenario: Scenario, mode: Mode, handle: ServerProcess,
                load_argv: list, parse=parse_wrk) -> dict:
    """One more load run with py-spy sampling the worker; not counted in the medians.

    The samples go to benchmarks/out/profiles/SERVER-SCENARIO.txt in py-spy's collapsed-stack
    format (one stack per line, `frame;frame;... count`), and a summary to the same name .md.
    """
    if not os.path.exists(PY_SPY):
        return {"error": "py-spy is not installed (make bench-setup)"}
    os.makedirs(os.path.join(OUT_DIR, "profiles"), exist_ok=True)
    stem = os.path.join(OUT_DIR, "profiles", "%s-%s" % (server.name, scenario.key))
    sampler = subprocess.Popen(
        [PY_SPY, "record", "--pid", str(busiest_process(handle.pid)), "--rate", "250",
         "--duration", str(mode.duration_s + 1), "--format", "raw", "--nonblocking",
         "--output", stem + ".txt"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        preexec_fn=_preexec(CLIENT_CPUS))
    time.sleep(0.5)     # let py-spy attach before the load starts
    run = run_load(load_argv, parse, mode.duration_s, handle.pid)
    try:
        _, errors = sampler.communicate(timeout=mode.duration_s + 30)
    except subprocess.TimeoutExpired:
        sampler.kill()
        _, errors = sampler.communicate()
    if sampler.returncode != 0 or not os.path.exists(stem + ".txt"):
        return {"error": "py-spy failed: " + errors.decode("utf-8", "replace")[-300:]}
    with open(stem + ".txt") as f:
        summary = summarize_profile(f.read())
    with open(stem + ".md", "w") as f:
        f.write("# py-spy: %s, scenario %s (%.0f req/s while sampled)\n\n%s" % (
            server.name, scenario.key, run.get("rps") or 0, summary))
    return {"path": os.path.relpath(stem + ".txt", ROOT), "summary": summary,
            "rps_while_sampled": run.get("rps")}


def summarize_profile(collapsed: str, top: int = 20) -> str:
    """Top functions by own samples and by samples under them, from collapsed stacks."""
    own: dict = {}
    under: dict = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        frames = [frame.replace(ROOT + "/", "") for frame in frames]
        own[frames[-1]] = own.get(frames[-1], 0) + samples
        for frame in set(frames):
            under[frame] = under.get(frame, 0) + samples
    if not total:
        return "no samples\n"
    lines = ["%d samples" % total, "", "| own % | with callees % | function (file) |",
             "|---:|---:|---|"]
    for frame, samples in sorted(own.items(), key=lambda item: -item[1])[:top]:
        lines.append("| %.1f | %.1f | `%s` |" % (100 * samples / total,
                                                 100 * under[frame] / total, frame))
    return "\n".join(lines) + "\n"


def _client_process(args: list) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(BENCH_DIR, "clients.py")] + args,
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            preexec_fn=_preexec(CLIENT_CPUS))


def measure_idle(server: Server, scenario: Scenario, mode: Mode, handle: ServerProcess,
                 options) -> dict:
    """Worker RSS before and while a client holds `mode.idle_connections` idle connections."""
    time.sleep(0.5)
    baselines = tree_rss(handle.pid)
    count = mode.idle_connections
    client = _client_process(["idle", "--port", str(handle.port), "--count", str(count),
                              "--timeout-s", "90"])
    try:
        line = _read_line(client, timeout_s=100)
        report = json.loads(line) if line else {"open": 0, "error": "no report"}
        time.sleep(1.0)     # let the server settle after the last answer
        worker = busiest_process(handle.pid)
        held = rss_bytes(worker)
        alive = handle.process.poll() is None
    finally:
        _finish_client(client, timeout_s=30)
    problems = []
    if report.get("open") != count:
        problems.append("%s of %d connections served" % (report.get("open"), count))
    if not alive:
        problems.append("server exited")
    return {"valid": not problems, "invalid": "; ".join(problems),
            "baseline_rss": baselines.get(worker, 0), "rss": held,
            "growth_rss": held - baselines.get(worker, 0),
            "bytes_per_connection": (held - baselines.get(worker, 0)) / count,
            "client": report,
            "command": "python3 benchmarks/clients.py idle --port PORT --count %d" % count}


def measure_transfer(server: Server, scenario: Scenario, mode: Mode, handle: ServerProcess,
                     options) -> dict:
    """Worker RSS sampled every 20 ms during one upload or download of `mode.transfer_bytes`."""
    time.sleep(0.5)
    baselines = tree_rss(handle.pid)
    direction = "upload" if scenario.key == "UP" else "download"
    cpu_before = cpu_seconds(handle.pid)
    with RssSampler(handle.pid) as sampler:
        client = _client_process([direction, "--port", str(handle.port),
                                  "--bytes", str(mode.transfer_bytes), "--timeout-s", "120"])
        try:
            line = _read_line(client, timeout_s=130)
        finally:
            _finish_client(client, timeout_s=10)
    cpu_s = cpu_seconds(handle.pid) - cpu_before
    worker = busiest_process(handle.pid)
    baseline, peak = baselines.get(worker, 0), sampler.peaks.get(worker, 0)
    report = json.loads(line) if line else {"error": "no report"}
    problems = []
    if "error" in report:
        problems.append(report["error"])
    elif report.get("status") != 200:
        problems.append("status %s" % report.get("status"))
    elif direction == "upload" and report.get("server_counted") != mode.transfer_bytes:
        problems.append("server counted %s bytes" % report.get("server_counted"))
    elif direction == "download" and report.get("received") != mode.transfer_bytes:
        problems.append("received %s bytes" % report.get("received"))
    return {"valid": not problems, "invalid": "; ".join(problems),
            "baseline_rss": baseline, "peak_rss": peak,
            "growth_rss": peak - baseline, "samples": sampler.samples,
            "mb_per_s": report.get("mb_per_s"), "server_cpu_s": cpu_s, "client": report,
            "command": "python3 benchmarks/clients.py %s --port PORT --bytes %d" % (
                direction, mode.transfer_bytes)}


def _finish_client(client: subprocess.Popen, timeout_s: float) -> None:
    """Close the client's stdin (its signal to let go), then wait for it, or kill it."""
    client.stdin.close()
    try:
        client.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        client.kill()
        client.wait()


def _read_line(process: subprocess.Popen, timeout_s: float) -> str:
    """The first stdout line of `process`, or '' after `timeout_s`."""
    box = []
    reader = threading.Thread(target=lambda: box.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return box[0].decode().strip() if box else ""


def measure_overload(server: Server, scenario: Scenario, mode: Mode, handle: ServerProcess,
                     options) -> dict:
    """Like measure_wrk, but the 503s are the point: each run's rate is its 2xx answers per
    second; a socket error still makes it invalid."""
    summary = measure_wrk(server, scenario, mode, handle, options)
    for run in summary["runs"]:
        refused = run["non_2xx_3xx"]
        seconds = run.get("seconds") or mode.duration_s
        run["answered_rps"] = run["rps"]
        run["refused_rps"] = refused / seconds
        run["rps"] = (run["requests"] - refused) / seconds
        run["invalid"] = run_errors(dict(run, non_2xx_3xx=0))
    runs = summary.pop("runs")
    summary.update(summarize(runs))
    summary["runs"] = runs
    middle = sorted(runs, key=lambda run: run["rps"] or 0)[len(runs) // 2]
    summary["refused_rps"] = middle["refused_rps"]
    summary["answered_rps"] = middle["answered_rps"]
    return summary


MEASURES = {"wrk": measure_wrk, "ws": measure_wrk, "overload": measure_overload,
            "idle": measure_idle,
            "transfer": measure_transfer}


# ---------------------------------------------------------------- what is installed

def _run_text(argv: list, timeout_s: float = 20.0) -> str:
    try:
        completed = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, timeout=timeout_s, cwd=ROOT,
                                   env=dict(os.environ, PYTHONPATH=ROOT))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "%s: %s" % (type(exc).__name__, exc)
    return completed.stdout.decode("utf-8", "replace")


def interpreter(server: Server) -> str | None:
    if server.runtime == "cpython":
        return sys.executable
    if server.runtime == "pypy":
        return shutil.which("pypy3")
    return os.path.join(VENV_BIN, "python")


def availability(server: Server) -> str:
    """'' when the server can be started here, else why not."""
    python = interpreter(server)
    if not python or not os.path.exists(python):
        return "pypy3 not installed" if server.is_pypy else "peers not installed (--setup)"
    if server.runtime == "venv":
        program = server.argv[0].replace("{venv}", VENV_BIN)
        if not os.path.exists(program):
            return "%s missing (--setup)" % os.path.basename(program)
    return ""


_HELP_CACHE: dict = {}


def ours_help(python: str) -> str:
    if python not in _HELP_CACHE:
        _HELP_CACHE[python] = _run_text([python, "-m", "selectserver", "--help"])
    return _HELP_CACHE[python]


def server_argv(server: Server, app: str, port) -> tuple:
    """(argv, dropped optional flags) for `server` serving benchmarks.apps:`app`."""
    python = interpreter(server) or "python3"
    values = {"python": python, "pypy": python, "venv": VENV_BIN, "port": str(port),
              "app": "benchmarks.apps:" + app}
    argv = [part.format(**values) for part in server.argv]
    dropped = []
    if server.optional_flags:
        help_text = ours_help(python)
        for flag in server.optional_flags:
            if re.search(r"(^|[\s,\[])%s\b" % re.escape(flag[0]), help_text):
                argv += flag
            else:
                dropped.append(flag[0])
    return argv, dropped


def _relative(argv: list) -> list:
    """argv as written in RESULTS.md: repository-relative paths, PORT for the port."""
    shown = []
    for part in argv:
        part = str(part)
        if part == sys.executable:
            part = "python3"
        elif part == shutil.which("pypy3"):
            part = "pypy3"
        part = part.replace(VENV_BIN + "/", "benchmarks/.peers/venv/bin/")
        part = part.replace(ROOT + "/", "")
        shown.append(part)
    return shown


def versions() -> dict:
    """Versions of everything measured, for RESULTS.md."""
    # The implementation, not the interpreter's path: RESULTS.md is read on other machines.
    found = {"python": "%s (%s)" % (platform.python_version(), platform.python_implementation())}
    pypy = shutil.which("pypy3")
    if pypy:
        found["pypy3"] = " ".join(_run_text([pypy, "--version"]).split())
    venv_python = os.path.join(VENV_BIN, "python")
    if os.path.exists(venv_python):
        script = ("import importlib.metadata as m, json\n"
                  "names = ['uvicorn', 'httptools', 'uvloop', 'h11', 'hypercorn', 'granian',"
                  " 'gunicorn', 'waitress', 'websockets', 'matplotlib']\n"
                  "found = {}\n"
                  "for name in names:\n"
                  "    try: found[name] = m.version(name)\n"
                  "    except m.PackageNotFoundError: pass\n"
                  "print(json.dumps(found))")
        try:
            found.update(json.loads(_run_text([venv_python, "-c", script]).strip()))
        except ValueError:
            pass
    for tool, argv in (("wrk", ["wrk", "-v"]), ("ab", ["ab", "-V"])):
        if shutil.which(tool):
            found[tool] = _run_text(argv).strip().splitlines()[0]
    found["selectserver"] = "%s (commit %s)" % (
        _run_text([sys.executable, "-c",
                   "import selectserver; print(getattr(selectserver, '__version__', '?'))"]
                  ).strip().splitlines()[-1][:60],
        _run_text(["git", "rev-parse", "--short", "HEAD"]).strip())
    return found


def machine() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * PAGE_SIZE / 2 ** 30, 1),
            "loadavg_at_start": " ".join("%.2f" % x for x in os.getloadavg()),
            "server_cpus": sorted(SERVER_CPUS) if SERVER_CPUS else "not pinned",
            "client_cpus": sorted(CLIENT_CPUS) if CLIENT_CPUS else "not pinned",
            "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1]}


# ---------------------------------------------------------------- setup

APT_PACKAGES = {"wrk": "wrk", "ab": "apache2-utils", "pypy3": "pypy3"}


def setup() -> int:
    """Peers' venv from requirements-peers.txt; wrk, ab and pypy3 from the distribution."""
    missing = [package for tool, package in APT_PACKAGES.items() if not shutil.which(tool)]
    if missing:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            print("apt-get install " + " ".join(missing), flush=True)
            subprocess.run(["apt-get", "update", "-q"], check=False)
            subprocess.run(["apt-get", "install", "-y", "-q"] + missing, check=False)
        else:
            print("please install: " + " ".join(missing) + " (Debian package names)")
    os.makedirs(PEERS_DIR, exist_ok=True)
    if not os.path.exists(os.path.join(VENV_BIN, "python")):
        print("creating " + os.path.relpath(VENV, ROOT), flush=True)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    pip = [os.path.join(VENV_BIN, "python"), "-m", "pip"]
    subprocess.run(pip + ["install", "-q", "--upgrade", "pip"], check=False)
    completed = subprocess.run(pip + ["install", "-q", "-r", REQUIREMENTS])
    for server in SERVERS:
        reason = availability(server)
        print("%-24s %s" % (server.name, reason or "ready"))
    return completed.returncode


# ---------------------------------------------------------------- the run

def plan(mode: Mode, servers: list, scenarios: list) -> list:
    return [(server, scenario) for scenario in scenarios for server in servers
            if applies(server, scenario, mode)]


def estimated_seconds(mode: Mode, pairs: list) -> float:
    total = 0.0
    for server, scenario in pairs:
        total += 2.5    # start, probe, stop
        if scenario.kind in ("wrk", "ws", "overload"):
            warmup = mode.pypy_max_warmup_s if server.is_pypy else mode.warmup_s
            total += warmup + mode.runs * mode.duration_s + 0.2 * (mode.runs + 1)
        elif scenario.kind == "idle":
            total += 6
        else:
            total += 5
    return total


def run_pair(server: Server, scenario: Scenario, mode: Mode, options) -> dict:
    app = scenario.apps[server.interface]
    port = free_port()
    argv, dropped = server_argv(server, app, port)
    argv += scenario.server_flags
    log_path = os.path.join(LOG_DIR, "%s-%s.log" % (server.name, scenario.key))
    record = {"server": server.name, "scenario": scenario.key, "app": app,
              "server_command": " ".join(shlex.quote(part) for part in _relative(
                  server_argv(server, app, "PORT")[0] + scenario.server_flags)),
              "dropped_flags": dropped}
    try:
        with ServerProcess(argv, log_path, port, scenario.probe,
                           start_timeout_s=60 if server.is_pypy else 30) as handle:
            record.update(MEASURES[scenario.kind](server, scenario, mode, handle, options))
    except StartFailed as exc:
        record.update(valid=False, invalid="did not run: %s" % exc, failed_to_start=True)
    except subprocess.TimeoutExpired as exc:
        record.update(valid=False, invalid="load tool overran its bound: %s" % exc)
    return record


def describe(record: dict) -> str:
    if not record.get("valid"):
        return "INVALID (%s)" % record.get("invalid", "")[:200]
    if "rps" in record:
        cpu = record.get("cpu_us_per_request")
        profile = record.get("profile", {})
        suffix = ("\n    profile: %s" % profile.get("path", profile.get("error", ""))
                  if profile else "")
        return ("%9.0f req/s  runs %s  cpu %s us/req (%s%% of a core, client %s%%)  p50 %s  "
                "p99 %s" % (
                    record["rps"], "/".join("%.0f" % r for r in record["rps_runs"]),
                    "%.1f" % cpu if cpu is not None else "?",
                    "%.0f" % record["server_cpu_percent"]
                    if record.get("server_cpu_percent") else "?",
                    "%.0f" % record["client_cpu_percent"]
                    if record.get("client_cpu_percent") is not None else "?",
                    _ms(record.get("latency_p50_s")), _ms(record.get("latency_p99_s")))) + suffix
    if "peak_rss" in record:
        return "RSS %s -> peak %s (growth %s), %.0f MB/s" % (
            _mb(record["baseline_rss"]), _mb(record["peak_rss"]), _mb(record["growth_rss"]),
            record.get("mb_per_s") or 0)
    return "RSS %s -> %s with %d idle (%.1f KB per connection)" % (
        _mb(record["baseline_rss"]), _mb(record["rss"]), record["client"].get("open", 0),
        (record["bytes_per_connection"] or 0) / 1024)


def _ms(seconds) -> str:
    return "-" if seconds is None else "%.2f ms" % (seconds * 1000)


def _mb(size) -> str:
    return "-" if size is None else "%.1f MB" % (size / 1e6)


def execute(mode: Mode, servers: list, scenarios: list, options) -> dict:
    pairs = plan(mode, servers, scenarios)
    started = datetime.datetime.now(datetime.timezone.utc)
    results = {"mode": mode.name, "started": started.isoformat(timespec="seconds"),
               "machine": machine(), "versions": versions(),
               "settings": dataclasses.asdict(mode), "b_client": options.b_client,
               "servers": [server.name for server in servers],
               "scenarios": [scenario.key for scenario in scenarios],
               "filtered": bool(options.only or options.scenario),
               "skipped": {}, "records": []}
    for server in servers:
        reason = availability(server)
        if reason:
            results["skipped"][server.name] = reason
    runnable = [(server, scenario) for server, scenario in pairs
                if server.name not in results["skipped"]]
    print("%s run: %d server/scenario pairs, about %.0f s" % (
        mode.name, len(runnable), estimated_seconds(mode, runnable)), flush=True)
    for name, reason in results["skipped"].items():
        print("  skipped %s: %s" % (name, reason), flush=True)
    clock = time.monotonic()
    failed_to_start: dict = {}
    for index, (server, scenario) in enumerate(runnable, 1):
        if server.name in failed_to_start:
            # It exited at start once already: the same command will not do better now.
            record = {"server": server.name, "scenario": scenario.key, "valid": False,
                      "invalid": failed_to_start[server.name], "failed_to_start": True}
            print("[%d/%d] %-22s %-6s not run: it exited at start before" % (
                index, len(runnable), server.name, scenario.key), flush=True)
        else:
            print("[%d/%d] %-22s %-6s " % (index, len(runnable), server.name, scenario.key),
                  end="", flush=True)
            record = run_pair(server, scenario, mode, options)
            if "did not run: exited" in record.get("invalid", ""):
                failed_to_start[server.name] = record["invalid"]
            print(describe(record), flush=True)
        results["records"].append(record)
    results["elapsed_s"] = round(time.monotonic() - clock, 1)
    results["machine"]["loadavg_at_end"] = " ".join("%.2f" % x for x in os.getloadavg())
    return results


# ---------------------------------------------------------------- RESULTS.md

TARGETS = [
    # (scenario, ours, peer, ratio at least, text)
    ("A", "selectserver", "uvicorn-httptools", 2.0, "A >= 2.0x uvicorn httptools+uvloop"),
    ("A", "selectserver", "granian-asgi", 1.0, "A >= 1.0x granian ASGI"),
    ("B", "selectserver", "granian-asgi", 1.0, "B >= 1.0x granian ASGI"),
    ("D", "selectserver", "granian-asgi", 2.0, "D >= 2.0x granian ASGI"),
    ("E", "selectserver", "uvicorn-httptools", 1.0, "E >= 1.0x uvicorn httptools+uvloop"),
    ("C", "selectserver", "best", 0.9, "C within 10% of the best peer"),
    ("F", "selectserver-wsgi", "waitress", 2.0, "F >= 2.0x waitress"),
    ("F", "selectserver-wsgi", "gunicorn-gthread", 3.0, "F >= 3.0x gunicorn gthread"),
    ("A", "selectserver-pypy", "selectserver", 2.0, "PyPy A >= 2.0x selectserver on CPython"),
    # issue 14: WSGI level with granian's, the ASGI hot path a fifth cheaper
    ("F", "selectserver-wsgi", "granian-wsgi", 1.0, "WSGI A (F) >= 1.0x granian WSGI"),
    ("E", "selectserver-wsgi", "granian-wsgi", 1.0, "WSGI E >= 1.0x granian WSGI"),
    ("A", "selectserver", "uvicorn-httptools", 1.8, "A >= 1.8x uvicorn httptools+uvloop"),
    ("W", "selectserver", "uvicorn-websockets", 2.0, "W >= 2.0x uvicorn (websockets)"),
]
MEMORY_TARGETS = [
    # (scenario, server, field, limit in bytes, text)
    ("IDLE", "selectserver", "rss", 100e6, "10,000 idle connections < 100 MB RSS"),
    ("UP", "selectserver", "growth_rss", 50e6, "1 GiB upload: RSS growth < 50 MB"),
    ("DOWN", "selectserver", "growth_rss", 50e6, "1 GiB download: RSS growth < 50 MB"),
    ("IDLE", "selectserver-wsgi", "rss", 100e6, "WSGI: 10,000 idle connections < 100 MB RSS"),
    ("UP", "selectserver-wsgi", "growth_rss", 50e6, "WSGI 1 GiB upload: RSS growth < 50 MB"),
    ("DOWN", "selectserver-wsgi", "growth_rss", 50e6, "WSGI 1 GiB download: RSS growth < 50 MB"),
]


def _index(results: dict) -> dict:
    return {(record["scenario"], record["server"]): record for record in results["records"]}


def _rate(record) -> float | None:
    if record and record.get("valid") and record.get("rps"):
        return record["rps"]
    return None


def _k(value) -> str:
    if value is None:
        return "-"
    return "%.1fk" % (value / 1000) if value >= 1000 else "%.0f" % value


def _cell(record) -> str:
    if record is None:
        return ""
    if not record.get("valid"):
        return "invalid" if not record.get("failed_to_start") else "did not run"
    return _k(record.get("rps"))


def evaluate_targets(results: dict) -> list:
    """(text, value, threshold, verdict) for every target whose inputs were measured."""
    index = _index(results)
    rows = []
    for scenario, ours, peer, threshold, text in TARGETS:
        mine = _rate(index.get((scenario, ours)))
        if peer == "best":
            candidates = [(name, _rate(record)) for (key, name), record in index.items()
                          if key == scenario and not SERVERS_BY_NAME[name].is_ours]
            candidates = [(rate, name) for name, rate in candidates if rate]
            if not candidates:
                continue
            theirs, peer_name = max(candidates)
            text = "%s (%s)" % (text, peer_name)
        else:
            if peer not in results["servers"] or ours not in results["servers"] or \
                    scenario not in results["scenarios"]:
                continue
            theirs = _rate(index.get((scenario, peer)))
        if mine is None or theirs is None:
            rows.append((text, "-", "%.2fx" % threshold, "not measured (%s)" % (
                "ours" if mine is None else "peer")))
            continue
        ratio = mine / theirs
        verdict = ("met (+%.0f%%)" % (100 * (ratio / threshold - 1)) if ratio >= threshold
                   else "missed by %.0f%%" % (100 * (1 - ratio / threshold)))
        rows.append((text, "%.2fx" % ratio, "%.2fx" % threshold, verdict))
    for scenario, server, field, limit, text in MEMORY_TARGETS:
        record = index.get((scenario, server))
        if record is None:
            continue
        if not record.get("valid"):
            rows.append((text, "-", _mb(limit), "not measured"))
            continue
        value = record[field]
        verdict = ("met (%s to spare)" % _mb(limit - value) if value < limit
                   else "missed by %s" % _mb(value - limit))
        rows.append((text, _mb(value), _mb(limit), verdict))
    return rows


def _table(header: list, rows: list) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def render(results: dict, chart_name: str | None, chart_note: str) -> str:
    """The generated section of RESULTS.md for one run."""
    index = _index(results)
    servers = [name for name in results["servers"] if name not in results["skipped"]]
    ours_serving = any(record.get("valid") for record in results["records"]
                       if SERVERS_BY_NAME[record["server"]].is_ours)
    mode = results["mode"]
    lines = ["## %s run%s: %s" % (mode.capitalize(), ", merged" if results.get(
        "merged_from") else "", results["started"]), ""]
    if not ours_serving:
        lines += ["**Peers only; selectserver not yet serving** (it was tried and did not "
                  "answer: see the cells marked \"did not run\").", ""]
    details = results.get("run_details") if results.get("merged_from") else None
    loads = ([float(detail["load"][0]) for detail in details] if details else
             [float(results["machine"]["loadavg_at_start"].split()[0])])
    if max(loads) > 0.5 and not details:
        lines += ["**The machine was not quiet** (load average %.2f at start, %s at end): "
                  "absolute numbers are low and noisy; compare ratios only, and not closely."
                  % (loads[0], results["machine"].get("loadavg_at_end", "?").split()[0]), ""]
    elif max(loads) > 0.5:
        lines += ["**The machine was not quiet** (load average at the start and end of each "
                  "run below): absolute numbers are low and noisy; compare ratios only, and not "
                  "closely.", ""]
    if results.get("merged_from"):
        lines += ["Merged from the runs started at %s: ratios between cells of different runs "
                  "are less reliable than within one run." % ", ".join(results["merged_from"]),
                  ""]
    if details:
        lines += ["Per run (the last of each merged file where it was itself a merge): " +
                  "; ".join("%s, load %s to %s, selectserver %s" % (
                      detail["started"], detail["load"][0], detail["load"][1],
                      detail["selectserver"]) for detail in details) + ".", ""]
    if results["filtered"]:
        lines += ["Filtered run: servers %s; scenarios %s." % (
            ", ".join(results["servers"]), ", ".join(results["scenarios"])), ""]
    settings = results["settings"]
    if "pypy_max_warmup_s" in settings:
        pypy_warmup = ("PyPy: %d s slices, at least %d s, until two in a row agree within "
                       "%.0f%%, at most %d s" % (PYPY_SLICE_S, settings["pypy_warmup_s"],
                                               100 * PYPY_STABLE_FRACTION,
                                               settings["pypy_max_warmup_s"]))
    else:   # raw results from before the warm-up was cut into slices
        pypy_warmup = "PyPy: %d s" % settings["pypy_warmup_s"]
    lines += ["Median of %d x %d s per cell after a %d s warm-up (%s); one worker per "
              "server pinned to CPU %s, load client pinned to CPU %s; %.0f s in all. "
              "Load average at start: %s." % (
                  settings["runs"], settings["duration_s"], settings["warmup_s"],
                  pypy_warmup, results["machine"]["server_cpus"],
                  results["machine"]["client_cpus"], results["elapsed_s"],
                  results["machine"]["loadavg_at_start"]), ""]
    if chart_name:
        lines += ["![requests per second](%s)" % chart_name, ""]
    elif chart_note:
        lines += ["(No chart: %s.)" % chart_note, ""]

    wrk_keys = [key for key in THROUGHPUT_KEYS + SCALING_KEYS if key in results["scenarios"]]
    shown = [name for name in servers
             if any((key, name) in index for key in wrk_keys)]
    if wrk_keys and shown:
        lines += ["### Requests per second (median)", ""]
        rows = []
        for key in wrk_keys:
            cells = [_cell(index.get((key, name))) for name in shown]
            if any(cells):
                rows.append([SCENARIOS_BY_KEY[key].title] + cells)
        lines += _table(["scenario"] + [SERVERS_BY_NAME[n].label for n in shown], rows) + [""]

        lines += ["### Server CPU per request (µs, median; B: per connection; W: per message)",
                  ""]
        rows = []
        for key in wrk_keys:
            cells = []
            for name in shown:
                record = index.get((key, name))
                value = record.get("cpu_us_per_request") if record and record.get(
                    "valid") else None
                cells.append("%.1f" % value if value is not None else "")
            if any(cells):
                rows.append([SCENARIOS_BY_KEY[key].title] + cells)
        lines += _table(["scenario"] + [SERVERS_BY_NAME[n].label for n in shown], rows) + [""]

        ours = [name for name in shown if SERVERS_BY_NAME[name].is_ours]
        peers = [name for name in shown if not SERVERS_BY_NAME[name].is_ours]
        ratio_rows = []
        for key in wrk_keys:
            for mine in ours:
                mine_rate = _rate(index.get((key, mine)))
                if mine_rate is None:
                    continue
                cells = []
                for peer in peers:
                    theirs = _rate(index.get((key, peer)))
                    cells.append("%.2fx" % (mine_rate / theirs) if theirs else "")
                if any(cells):
                    ratio_rows.append([SCENARIOS_BY_KEY[key].key, SERVERS_BY_NAME[mine].label]
                                      + cells)
        if ratio_rows:
            lines += ["### Ratios: selectserver / peer (same run)", ""]
            lines += _table(["scenario", "ours"] + [SERVERS_BY_NAME[n].label for n in peers],
                            ratio_rows) + [""]

    lines += _overload_table(results, index)

    memory = [record for record in results["records"] if record["scenario"] in
              ("IDLE", "UP", "DOWN")]
    if memory:
        lines += ["### Memory (RSS of the worker process)", ""]
        rows = []
        for record in memory:
            label = SERVERS_BY_NAME[record["server"]].label
            title = SCENARIOS_BY_KEY[record["scenario"]].title
            if not record.get("valid"):
                rows.append([title, label, "", "", "", record.get("invalid", "")[:120]])
            elif record["scenario"] == "IDLE":
                rows.append([title, label, _mb(record["baseline_rss"]), _mb(record["rss"]),
                             _mb(record["growth_rss"]), "%.1f KB per connection" % (
                                 record["bytes_per_connection"] / 1024)])
            else:
                rows.append([title, label, _mb(record["baseline_rss"]),
                             _mb(record["peak_rss"]), _mb(record["growth_rss"]),
                             "%.0f MB/s, server CPU %.1f s" % (
                                 record.get("mb_per_s") or 0, record["server_cpu_s"])])
        lines += _table(["scenario", "server", "baseline", "with load (peak)", "growth",
                         "notes"], rows) + [""]

    targets = evaluate_targets(results)
    if targets:
        lines += ["### Targets (issues 5, 6 and 14)", ""]
        lines += _table(["target", "measured", "needed", "verdict"], targets) + [""]

    details = [record for record in results["records"] if "rps_runs" in record or
               not record.get("valid")]
    if details:
        lines += ["### Every cell", ""]
        rows = []
        for record in details:
            if record.get("valid"):
                rows.append([record["scenario"], SERVERS_BY_NAME[record["server"]].label,
                             " / ".join(_k(r) for r in record["rps_runs"]),
                             _ms(record.get("latency_p50_s")), _ms(record.get("latency_p99_s")),
                             "%.0f%%" % record["server_cpu_percent"]
                             if record.get("server_cpu_percent") is not None else "", "ok"])
            else:
                rows.append([record["scenario"], SERVERS_BY_NAME[record["server"]].label,
                             " / ".join(_k(r) for r in record.get("rps_runs", [])), "", "", "",
                             record.get("invalid", "")[:160].replace("|", "/")])
        lines += _table(["scenario", "server", "req/s per run", "p50", "p99",
                         "server CPU busy", "status"], rows) + [""]
        warmed = [record for record in details if record.get("warmup_rps")]
        if warmed:
            lines += ["PyPy's warm-up, req/s per %d s slice: %s." % (PYPY_SLICE_S, "; ".join(
                "%s %s: %s" % (record["scenario"], SERVERS_BY_NAME[record["server"]].label,
                               " / ".join(_k(r) for r in record["warmup_rps"]))
                for record in warmed)), ""]

    profiled = [record for record in results["records"] if record.get("profile", {}).get(
        "summary")]
    for record in profiled:
        lines += ["### Profile: %s, %s (py-spy, one extra run at %s req/s)" % (
            SERVERS_BY_NAME[record["server"]].label, record["scenario"],
            _k(record["profile"].get("rps_while_sampled"))), "",
            "Raw stacks: `%s`." % record["profile"]["path"], "",
            record["profile"]["summary"].rstrip("\n"), ""]

    lines += ["### Commands", "", "Servers (PORT is picked by the runner; the app changes per "
              "scenario, see `benchmarks/apps.py`):", "", "```"]
    seen = set()
    for record in results["records"]:
        if record.get("server_command") and record["server"] not in seen:
            seen.add(record["server"])
            lines.append(record["server_command"])
    lines += ["```", "", "Load, one per scenario:", "", "```"]
    seen = set()
    for record in results["records"]:
        if record.get("command") and record["scenario"] not in seen:
            seen.add(record["scenario"])
            lines.append("%-5s %s" % (record["scenario"], record["command"]))
    lines += ["```", ""]
    dropped = sorted({flag for record in results["records"]
                      for flag in record.get("dropped_flags", [])})
    if dropped:
        lines += ["selectserver's CLI did not list these flags, so they were left out: %s." % (
            ", ".join("`%s`" % flag for flag in dropped)), ""]
    for key in results["scenarios"]:
        note = SCENARIOS_BY_KEY[key].note
        if note:
            lines.append("- %s: %s." % (key, note))
    lines += ["- Server CPU is utime + stime of the server's process tree from /proc, over each "
              "run, divided by the requests wrk completed (W: the messages echoed); RSS is VmRSS of the worker (the process "
              "of the tree that used the most CPU in the run).", ""]
    if results["skipped"]:
        lines += ["Not run: %s." % "; ".join("%s (%s)" % item
                                             for item in results["skipped"].items()), ""]

    lines += ["### Machine and versions", ""]
    for key, value in results["machine"].items():
        lines.append("- %s: %s" % (key, value))
    for key, value in results["versions"].items():
        lines.append("- %s: %s" % (key, portable(str(value))))
    return "\n".join(lines).rstrip() + "\n"


def _overload_table(results: dict, index: dict) -> list:
    """2xx/s as the connections grow past --limit-concurrency, against the rate at N."""
    keys = [key for key in OVERLOAD_KEYS if key in results["scenarios"]]
    servers = [name for name in results["servers"]
               if any((key, name) in index for key in keys)]
    if not keys or not servers:
        return []
    lines = ["### Overload: 2xx per second with --limit-concurrency %d (goodput)" % OVERLOAD_LIMIT,
             "", "At 2N, 4N and 10N connections the 2xx rate should stay at least %d%% of the "
             "rate at N = %d connections; the rest are answered 503 at once." % (
                 100 * OVERLOAD_GOODPUT, OVERLOAD_LIMIT), ""]
    rows = []
    for name in servers:
        base = _rate(index.get((OVERLOAD_KEYS[0], name)))
        for key in keys:
            record = index.get((key, name))
            if record is None:
                continue
            rate = _rate(record)
            if rate is None:
                rows.append([SERVERS_BY_NAME[name].label, SCENARIOS_BY_KEY[key].connections,
                             _cell(record), "", "", ""])
                continue
            share = rate / base if base else None
            verdict = ("" if key == OVERLOAD_KEYS[0] or share is None else
                       "met" if share >= OVERLOAD_GOODPUT else "missed")
            rows.append([SERVERS_BY_NAME[name].label, SCENARIOS_BY_KEY[key].connections,
                         _k(rate), "%.0f%%" % (100 * share) if share is not None else "-",
                         _k(record.get("refused_rps")), verdict])
    return lines + _table(["server", "wrk connections", "2xx/s", "of the rate at N", "503/s",
                           ">= %d%%" % (100 * OVERLOAD_GOODPUT)], rows) + [""]


def portable(text: str) -> str:
    """``text`` with every absolute path cut to its last part (results saved
    before versions() stopped recording the interpreter's path have one)."""
    return _ABSOLUTE_PATH.sub(lambda match: os.path.basename(match.group(0)), text)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[\w.+-]+/)+[\w.+-]+")


def _section_markers(mode: str) -> tuple:
    return ("<!-- BEGIN generated %s run -->" % mode, "<!-- END generated %s run -->" % mode)


def write_results_md(path: str, mode: str, section: str) -> None:
    """Replace this mode's generated section of RESULTS.md; keep the notes and other sections."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    notes = "\n" + DEFAULT_NOTES
    if NOTES_BEGIN in text and NOTES_END in text:
        # Byte for byte, blank lines included.
        notes = text.split(NOTES_BEGIN, 1)[1].split(NOTES_END, 1)[0]
    sections = {}
    for other in ("full", "quick"):
        begin, end = _section_markers(other)
        if begin in text and end in text:
            sections[other] = text.split(begin, 1)[1].split(end, 1)[0].strip("\n") + "\n"
    sections[mode] = section
    parts = ["# Benchmark results", "",
             "Generated by `benchmarks/run.py` (see `docs/benchmarks.md`); only the notes "
             "section is written by hand.", "", NOTES_BEGIN + notes + NOTES_END, ""]
    for other in ("full", "quick"):
        if other in sections:
            begin, end = _section_markers(other)
            parts += [begin, sections[other].rstrip("\n"), end, ""]
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    os.replace(path + ".tmp", path)


def draw_chart(json_path: str, png_path: str) -> str:
    """Run chart.py with an interpreter that has matplotlib; '' on success, else why not."""
    chart = os.path.join(BENCH_DIR, "chart.py")
    for python in (sys.executable, os.path.join(VENV_BIN, "python")):
        if not os.path.exists(python):
            continue
        check = subprocess.run([python, "-c", "import matplotlib"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        if check.returncode == 0:
            completed = subprocess.run([python, chart, json_path, png_path],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       timeout=120)
            if completed.returncode == 0:
                return ""
            return "chart.py failed: " + completed.stdout.decode()[-300:]
    return "matplotlib is not installed (pip install '.[bench]' or `make bench-setup`)"


# ---------------------------------------------------------------- main

def merge_results(paths: list) -> dict:
    """Several raw results of one mode as one: a later record of a (scenario, server) wins."""
    merged = None
    for path in paths:
        with open(path) as f:
            results = json.load(f)
        if merged is None:
            merged = dict(results, records=[], merged_from=[], elapsed_s=0)
        elif results["mode"] != merged["mode"]:
            raise SystemExit("%s is a %s run, not %s" % (path, results["mode"], merged["mode"]))
        # A file that is itself a merge brings the runs it was made from.
        merged["merged_from"] += [started for started in results.get(
            "merged_from", [results["started"]]) if started not in merged["merged_from"]]
        # Each run's load and commit: the machine and versions below are the last file's only.
        own = [{"started": results["started"],
                "load": [results["machine"]["loadavg_at_start"].split()[0],
                         results["machine"].get("loadavg_at_end", "?").split()[0]],
                "selectserver": results["versions"].get("selectserver", "?")}]
        merged.setdefault("run_details", [])
        merged["run_details"] = [detail for detail in merged["run_details"] if detail[
            "started"] not in {d["started"] for d in results.get("run_details", own)}]
        merged["run_details"] += results.get("run_details", own)
        keys = {(record["scenario"], record["server"]) for record in results["records"]}
        merged["records"] = [record for record in merged["records"]
                             if (record["scenario"], record["server"]) not in keys]
        merged["records"] += results["records"]
        for field in ("servers", "scenarios"):
            merged[field] += [name for name in results[field] if name not in merged[field]]
        merged["skipped"].update(results["skipped"])
        merged["elapsed_s"] = merged.get("elapsed_s", 0) + results.get("elapsed_s", 0)
        for field in ("machine", "versions", "settings"):
            merged[field] = results[field]
    order = {key: index for index, key in enumerate(SCENARIOS_BY_KEY)}
    merged["scenarios"].sort(key=lambda key: order.get(key, len(order)))
    merged["servers"].sort(key=lambda name: [s.name for s in SERVERS].index(name))
    merged["records"].sort(key=lambda record: (order.get(record["scenario"], len(order)),
                                                merged["servers"].index(record["server"])))
    merged["started"] = max(merged["merged_from"])
    if len(merged["merged_from"]) < 2:
        del merged["merged_from"]
    every_server, every_scenario = _defaults(merged["mode"])
    merged["filtered"] = not (set(every_server) <= set(merged["servers"])
                              and set(every_scenario) <= set(merged["scenarios"]))
    return merged


def _defaults(mode_name: str) -> tuple:
    """(server names, scenario keys) that an unfiltered run of the mode covers."""
    if mode_name == "quick":
        return QUICK_SERVERS, QUICK_SCENARIOS
    return [server.name for server in SERVERS], [scenario.key for scenario in SCENARIOS]


def publish(results: dict, json_path: str, to_results_md: bool) -> str:
    """Draw the chart and write the Markdown; returns the Markdown file's path."""
    mode = results["mode"]
    if to_results_md:
        target_md = RESULTS_MD
        chart_path = os.path.join(BENCH_DIR, "results-%s.png" % mode)
    else:
        target_md = os.path.join(OUT_DIR, "RESULTS-%s-partial.md" % mode)
        chart_path = os.path.join(OUT_DIR, "results-%s-partial.png" % mode)
    chart_note = draw_chart(json_path, chart_path)
    chart_name = (os.path.relpath(chart_path, os.path.dirname(target_md))
                  if not chart_note else None)
    write_results_md(target_md, mode, render(results, chart_name, chart_note))
    return target_md


def _select(names: str | None, known: dict, default: list, what: str) -> list:
    if not names:
        return [known[name] for name in default]
    chosen = []
    for name in names.split(","):
        name = name.strip()
        if name not in known:
            raise SystemExit("unknown %s %r; known: %s" % (what, name, ", ".join(known)))
        chosen.append(known[name])
    return chosen


def _on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--setup", action="store_true", help="install peers, wrk, ab, pypy3")
    what.add_argument("--quick", action="store_true", help="A D E F, 3 servers, 1 x 3 s")
    what.add_argument("--full", action="store_true", help="every scenario, median of 3 x 5 s")
    what.add_argument("--list", action="store_true", help="print servers and scenarios")
    what.add_argument("--report", nargs="+", metavar="JSON",
                      help="rewrite RESULTS.md from saved raw results (benchmarks/out/*.json); "
                           "several files of one mode are merged, later ones winning")
    parser.add_argument("--only", help="comma-separated server names")
    parser.add_argument("--scenario", help="comma-separated scenario keys (A,B,...,S1,IDLE,UP)")
    parser.add_argument("--runs", type=int, help="runs per cell (median taken)")
    parser.add_argument("--duration", type=int, help="seconds per run")
    parser.add_argument("--warmup", type=int, help="warm-up seconds (PyPy too)")
    parser.add_argument("--transfer-mib", type=int, help="size of UP/DOWN (default 1024)")
    parser.add_argument("--idle-connections", type=int, help="for IDLE (default 10000)")
    parser.add_argument("--b-client", choices=("wrk", "ab"), default="wrk",
                        help="load tool for scenario B (default wrk)")
    parser.add_argument("--profile", action="store_true",
                        help="after the measured runs, one more run of selectserver (CPython) "
                             "under py-spy; summaries in benchmarks/out/profiles/")
    parser.add_argument("--write", action="store_true",
                        help="write RESULTS.md even for a filtered run")
    parser.add_argument("--no-write", action="store_true", help="print only")
    options = parser.parse_args(argv)

    if options.setup:
        return setup()
    if options.report:
        results = merge_results(options.report)
        os.makedirs(OUT_DIR, exist_ok=True)
        json_path = os.path.join(OUT_DIR, "results-%s-merged.json" % results["mode"])
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1, default=str)
        target_md = publish(results, json_path, True)
        print("written: " + os.path.relpath(target_md, ROOT))
        return 0
    mode = dataclasses.replace(MODES["full" if options.full or options.list else "quick"])
    if options.runs:
        mode.runs = options.runs
    if options.duration:
        mode.duration_s = options.duration
    if options.warmup is not None:
        mode.warmup_s = mode.pypy_warmup_s = options.warmup
        mode.pypy_max_warmup_s = max(mode.pypy_max_warmup_s, options.warmup)
    if options.transfer_mib:
        mode.transfer_bytes = options.transfer_mib << 20
    if options.idle_connections:
        mode.idle_connections = options.idle_connections
    default_servers, default_scenarios = _defaults(mode.name)
    servers = _select(options.only, SERVERS_BY_NAME, default_servers, "server")
    scenarios = _select(options.scenario, SCENARIOS_BY_KEY, default_scenarios, "scenario")

    if options.list:
        for server in SERVERS:
            print("%-24s %-5s %s" % (server.name, server.interface,
                                     availability(server) or "ready"))
        for scenario in SCENARIOS:
            print("%-6s %s" % (scenario.key, scenario.title))
        for listed in (mode, MODES["quick"]):    # the full mode with the options applied
            every_server, every_scenario = _defaults(listed.name)
            pairs = [(s, c) for s, c in plan(
                listed, _select(options.only, SERVERS_BY_NAME, every_server, "server"),
                _select(options.scenario, SCENARIOS_BY_KEY, every_scenario, "scenario"))
                if not availability(s)]
            print("%s run: %d pairs, about %.0f s" % (listed.name, len(pairs),
                                                      estimated_seconds(listed, pairs)))
        return 0

    for tool in ("wrk",):
        if not shutil.which(tool):
            raise SystemExit("%s is not installed: run `make bench-setup`" % tool)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if CLIENT_CPUS:
        os.sched_setaffinity(0, CLIENT_CPUS)    # keep the runner off the server's CPU
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        results = execute(mode, servers, scenarios, options)
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        _stop_all_servers()

    os.makedirs(OUT_DIR, exist_ok=True)
    stamp = results["started"].replace(":", "").replace("+0000", "Z")
    json_path = os.path.join(OUT_DIR, "results-%s-%s.json" % (mode.name, stamp))
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1, default=str)
    print("raw results: " + os.path.relpath(json_path, ROOT))
    if options.no_write:
        return 0
    target_md = publish(results, json_path, not results["filtered"] or options.write)
    print("written: " + os.path.relpath(target_md, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
