"""Slow uploads against a small WSGI pool: is a normal request still answered at once?

Starts ``python -m selectserver tests.apps.wsgi_apps:echo --threads 2``, opens 20
connections that send a POST head (``Content-Length: 100``) and then one body byte a
second, and times a normal GET every half second (issue 10's bar: within 100 ms).

    python3 benchmarks/slow_uploads.py [--requests N] [-- extra server flags]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("server_flags", nargs="*")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "selectserver", "tests.apps.wsgi_apps:echo", "--interface", "wsgi",
         "--threads", "2", "--port", "0", "--no-access-log"] + args.server_flags,
        cwd=ROOT, stderr=subprocess.PIPE, text=True)
    port = 0
    for line in server.stderr:
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if found:
            port = int(found.group(1))
            break
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
    slow = []
    for _ in range(args.connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
        slow.append(sock)
    stop = time.monotonic() + args.requests * 0.5 + 30

    def trickle() -> None:
        while time.monotonic() < stop:
            for sock in slow:
                try:
                    sock.sendall(b"x")
                except OSError:
                    pass
            time.sleep(1)

    threading.Thread(target=trickle, daemon=True).start()
    time.sleep(1.5)
    latencies = []
    try:
        for _ in range(args.requests):
            started = time.perf_counter()
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            try:
                client.request("GET", "/normal")
                response = client.getresponse()
                response.read()
                outcome = str(response.status)
            except OSError as exc:
                outcome = repr(exc)
            finally:
                client.close()
            latencies.append((time.perf_counter() - started) * 1000)
            print("GET /normal: %s in %.1f ms" % (outcome, latencies[-1]))
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait()
    latencies.sort()
    print("median %.1f ms, max %.1f ms" % (latencies[len(latencies) // 2], latencies[-1]))


if __name__ == "__main__":
    main()
