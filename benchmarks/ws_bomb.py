"""Many WebSocket clients send a compression bomb at once; what it costs the worker.

Starts ``python -m selectserver tests.apps.ws_apps:echo`` (one worker), opens
CLIENTS connections that negotiate permessage-deflate, then has every one of
them send a message of BYTES zeros, compressed (about 1/1000), in FRAMES
frames, all at once.  Prints the close codes (1009 expected) and the rise of
the worker's peak RSS (VmHWM from /proc, against VmRSS before).  Load: run it
under the shared lock.

    python3 benchmarks/ws_bomb.py                       # 20 clients, 100 MB, one frame
    python3 benchmarks/ws_bomb.py --frames 100 -- --ws-max-size 1048576
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bomb_frames(size: int, frames: int) -> bytes:
    """``size`` zeros as one compressed message in ``frames`` masked frames."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = b"\0" * (1 << 20)
    payloads = []
    for _ in range(frames):
        left = size // frames
        pieces = []
        while left:
            pieces.append(compressor.compress(zeros[:min(left, len(zeros))]))
            left -= min(left, len(zeros))
        payloads.append(b"".join(pieces) + compressor.flush(zlib.Z_SYNC_FLUSH))
    payloads[-1] = payloads[-1][:-4]   # RFC 7692 §7.2.1: the tail is left out
    wire = []
    for index, payload in enumerate(payloads):
        first = (0x80 if index == frames - 1 else 0) | (0x42 if index == 0 else 0)
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", first, 0x80 | length)
        elif length < 65536:
            head = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", first, 0x80 | 127, length)
        key = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
        wire.append(head + mask + masked)
    return b"".join(wire)


def memory_mib(pid: int) -> dict:
    with open("/proc/%d/status" % pid) as file:
        text = file.read()
    return {name: int(re.search(name + r":\s+(\d+)", text).group(1)) // 1024
            for name in ("VmRSS", "VmHWM")}


def handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) +
                 b"\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert b" 101 " in head and b"permessage-deflate" in head, head
    return sock


def close_code(sock: socket.socket, wire: bytes, barrier: threading.Barrier, codes: list) -> None:
    barrier.wait()
    try:
        sock.sendall(wire)
    except OSError:
        pass   # closed on us mid-send: the close frame is already here
    sock.settimeout(60)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except OSError:
        pass
    at = received.find(b"\x88")
    codes.append(struct.unpack("!H", received[at + 2:at + 4])[0]
                 if at >= 0 and len(received) >= at + 4 else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--bytes", type=int, default=100 * 1000 * 1000)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("server_args", nargs="*", help="more selectserver options, after --")
    args = parser.parse_args()
    wire = bomb_frames(args.bytes, args.frames)
    print("each client: %d bytes of zeros, %d on the wire, %d frame(s)"
          % (args.bytes, len(wire), args.frames))
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "selectserver", "tests.apps.ws_apps:echo", "--port", "0",
         *args.server_args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port = worker = None
    while port is None or worker is None:
        line = server.stderr.readline().decode()
        if not line:
            raise SystemExit("the server did not start")
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        port = int(match.group(1)) if match else port
        match = re.search(r"Worker (\d+) serving", line)
        worker = int(match.group(1)) if match else worker
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
    try:
        socks = [handshake(port) for _ in range(args.clients)]
        before = memory_mib(worker)
        barrier = threading.Barrier(args.clients)
        codes: list = []
        threads = [threading.Thread(target=close_code, args=(sock, wire, barrier, codes))
                   for sock in socks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = memory_mib(worker)
        print("close codes:", sorted(codes, key=str))
        print("worker RSS before %d MiB, after %d MiB, peak %d MiB: peak rise %d MiB"
              % (before["VmRSS"], after["VmRSS"], after["VmHWM"],
                 after["VmHWM"] - before["VmRSS"]))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
