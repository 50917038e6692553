"""Small stdlib load clients for what wrk cannot do: idle connections, 1 GiB up and down.

Run as a separate process (pinned by the runner to the client CPU), each prints one JSON line
on stdout when it has something to report, and every loop is bounded by `--timeout-s`:

    python3 benchmarks/clients.py idle --port P --count 10000      # "ready" line, then holds
    python3 benchmarks/clients.py upload --port P --bytes 1073741824
    python3 benchmarks/clients.py download --port P --bytes 1073741824

`idle` opens the connections, sends one keep-alive GET on each and reads its answer, so that
every connection has served a request and sits idle in keep-alive; it then prints its report
and holds them until its stdin closes (or the timeout passes).
"""
from __future__ import annotations

import argparse
import errno
import json
import resource
import selectors
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
CHUNK = 1 << 20


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _read_head(sock: socket.socket, deadline: float) -> tuple[int, int, bytes]:
    """Status, content-length and the body bytes already read past the head."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = -1
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, length, rest


def upload(port: int, size: int, timeout_s: float) -> dict:
    """POST `size` bytes with a Content-Length; the app answers with the count it read."""
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % size)
        block = b"u" * CHUNK
        remaining = size
        while remaining > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("upload did not finish in %.0f s" % timeout_s)
            piece = block if remaining >= CHUNK else block[:remaining]
            sock.sendall(piece)
            remaining -= len(piece)
        status, length, body = _read_head(sock, deadline)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    elapsed = time.monotonic() - started
    return {"status": status, "sent": size, "server_counted": int(body or b"-1"),
            "seconds": elapsed, "mb_per_s": size / elapsed / 1e6}


def download(port: int, size: int, timeout_s: float) -> dict:
    """GET `size` bytes, read into one reused buffer and dropped."""
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(b"GET /download?bytes=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % size)
        status, length, body = _read_head(sock, deadline)
        received = len(body)
        buffer = bytearray(CHUNK)
        while received < length:
            if time.monotonic() > deadline:
                raise TimeoutError("download did not finish in %.0f s" % timeout_s)
            n = sock.recv_into(buffer)
            if not n:
                break
            received += n
    elapsed = time.monotonic() - started
    return {"status": status, "expected": length, "received": received,
            "seconds": elapsed, "mb_per_s": received / elapsed / 1e6}


def idle(port: int, count: int, timeout_s: float, batch: int = 256) -> tuple[dict, list]:
    """Open `count` connections, one request each, at most `batch` handshakes in flight."""
    _raise_fd_limit(count + 64)
    deadline = time.monotonic() + timeout_s
    selector = selectors.DefaultSelector()
    ready: list = []
    failed = 0
    opened = 0
    in_flight = 0
    started = time.monotonic()
    while len(ready) + failed < count:
        if time.monotonic() > deadline:
            break
        while opened < count and in_flight < batch:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            code = sock.connect_ex(("127.0.0.1", port))
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                failed += 1
                opened += 1
                continue
            selector.register(sock, selectors.EVENT_WRITE, [b""])
            opened += 1
            in_flight += 1
        for key, events in selector.select(timeout=0.5):
            sock = key.fileobj
            if events & selectors.EVENT_WRITE:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    selector.unregister(sock)
                    sock.close()
                    failed += 1
                    in_flight -= 1
                    continue
                sock.send(REQUEST)
                selector.modify(sock, selectors.EVENT_READ, key.data)
                continue
            try:
                chunk = sock.recv(4096)
            except OSError:
                chunk = b""
            key.data[0] += chunk
            if not chunk or b"\r\n\r\n" in key.data[0]:
                selector.unregister(sock)
                in_flight -= 1
                if chunk and key.data[0].startswith(b"HTTP/1.1 200"):
                    ready.append(sock)
                else:
                    sock.close()
                    failed += 1
    selector.close()
    report = {"requested": count, "open": len(ready), "failed": failed,
              "unfinished": count - len(ready) - failed,
              "seconds": time.monotonic() - started}
    return report, ready


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("idle", "upload", "download"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--bytes", type=int, default=1 << 30)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    options = parser.parse_args(argv)
    if options.mode == "idle":
        report, sockets = idle(options.port, options.count, options.timeout_s)
        print(json.dumps(report), flush=True)
        # Hold until the runner has sampled the server and closes our stdin; bounded all the same.
        selector = selectors.DefaultSelector()
        selector.register(sys.stdin, selectors.EVENT_READ)
        selector.select(timeout=options.timeout_s)
        for sock in sockets:
            sock.close()
        return 0
    try:
        if options.mode == "upload":
            report = upload(options.port, options.bytes, options.timeout_s)
        else:
            report = download(options.port, options.bytes, options.timeout_s)
    except (OSError, ValueError) as exc:
        report = {"error": "%s: %s" % (type(exc).__name__, exc)}
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
