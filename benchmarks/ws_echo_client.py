"""Websocket echo load: N connections, each sending a small message and waiting for its echo.

Standard library only, one selectors loop per process; it prints one JSON line with the rate:

    python3 benchmarks/ws_echo_client.py --port P                     # 64 connections, 10 s
    python3 benchmarks/ws_echo_client.py --port P --connections 64 --seconds 10 --size 32 \\
        --processes 1 --path /ws

Every connection keeps exactly one message in flight (send, wait for the echo, send again), so
the rate is round trips per second. Messages are text of `--size` ASCII bytes, masked as RFC 6455
requires of clients, without compression (the client offers no extension). A server that closes a
connection or sends something other than the echo counts as an error, and that connection stops.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import selectors
import socket
import struct
import sys
import time

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MASK = b"\x5a\x17\xc3\x08"


def masked_text_frame(payload: bytes) -> bytes:
    """One final text frame, masked (RFC 6455 §5.2, §5.3)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    key = (_MASK * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    return head + _MASK + masked


def open_websocket(host: str, port: int, path: str, timeout_s: float) -> tuple[socket.socket, bytes]:
    """A connected, upgraded socket (non-blocking) and any bytes read past the 101 head."""
    sock = socket.create_connection((host, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                 % (path.encode(), host.encode(), port, key))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError("handshake refused: %r" % head.split(b"\r\n")[0])
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    if accept.lower() not in head.lower():
        raise ConnectionError("wrong Sec-WebSocket-Accept")
    sock.setblocking(False)
    return sock, rest


class Echoer:
    """One connection's state: the bytes read so far and the echo it waits for."""

    __slots__ = ("sock", "buffer", "expected")

    def __init__(self, sock: socket.socket, buffer: bytes, expected: bytes) -> None:
        self.sock = sock
        self.buffer = buffer
        self.expected = expected

    def take_echoes(self) -> int:
        """Complete server frames in the buffer (each must be the echo); -1 on a wrong one."""
        count = 0
        buffer = self.buffer
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length, offset = struct.unpack("!H", buffer[2:4])[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < offset + length:
                break
            if buffer[0] != 0x81 or buffer[offset:offset + length] != self.expected:
                return -1
            buffer = buffer[offset + length:]
            count += 1
        self.buffer = buffer
        return count


def run(host: str, port: int, path: str, connections: int, seconds: float, size: int,
        timeout_s: float) -> dict:
    """Echo for `seconds` on `connections` sockets; the counts as a dict."""
    payload = (b"0123456789abcdefghijklmnopqrstuvwxyz" * (size // 36 + 1))[:size]
    frame = masked_text_frame(payload)
    selector = selectors.DefaultSelector()
    echoers = []
    for _ in range(connections):
        sock, rest = open_websocket(host, port, path, timeout_s)
        echoer = Echoer(sock, rest, payload)
        echoers.append(echoer)
        selector.register(sock, selectors.EVENT_READ, echoer)
    messages = errors = 0
    started = time.monotonic()
    deadline = started + seconds
    for echoer in echoers:
        echoer.sock.send(frame)
    open_count = len(echoers)
    while open_count:
        now = time.monotonic()
        if now >= deadline:
            break
        for key, _ in selector.select(deadline - now):
            echoer = key.data
            try:
                data = echoer.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            echoes = -1
            if data:
                echoer.buffer += data
                echoes = echoer.take_echoes()
            if echoes < 0:
                errors += 1
                open_count -= 1
                selector.unregister(echoer.sock)
                continue
            if echoes:
                messages += echoes
                # One message in flight per connection: the next goes now.
                echoer.sock.send(frame)
    elapsed = time.monotonic() - started
    for echoer in echoers:
        try:
            echoer.sock.send(b"\x88\x82" + _MASK + bytes(a ^ b for a, b in zip(b"\x03\xe8", _MASK)))
        except OSError:
            pass
        echoer.sock.close()
    selector.close()
    return {"messages": messages, "seconds": round(elapsed, 3), "errors": errors}


def _run_part(arguments: tuple) -> dict:
    return run(*arguments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=32, help="message size in bytes")
    parser.add_argument("--processes", type=int, default=1,
                        help="client processes sharing the connections (if one CPU cannot keep up)")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="bound on connecting")
    options = parser.parse_args(argv)
    shares = [options.connections // options.processes + (1 if i < options.connections % options.processes else 0)
              for i in range(options.processes)]
    parts = [(options.host, options.port, options.path, share, options.seconds, options.size,
              options.timeout_s) for share in shares if share]
    if len(parts) == 1:
        results = [run(*parts[0])]
    else:
        with multiprocessing.Pool(len(parts)) as pool:
            results = pool.map(_run_part, parts)
    messages = sum(r["messages"] for r in results)
    seconds = max(r["seconds"] for r in results)
    report = {"connections": options.connections, "size": options.size,
              "messages": messages, "seconds": seconds,
              "messages_per_s": round(messages / seconds, 1) if seconds else 0.0,
              "errors": sum(r["errors"] for r in results)}
    print(json.dumps(report), flush=True)
    return 0 if not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
