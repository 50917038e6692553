"""Misbehaving clients for the exercises (docs/tutorial/exercises.md).

    python3 docs/tutorial/clients.py slowloris HOST:PORT   # half a head, then silence
    python3 docs/tutorial/clients.py pipeline HOST:PORT N  # N requests in one send()
    python3 docs/tutorial/clients.py no-read HOST:PORT     # a big response, unread for 3 s

Each prints what it sent and what came back.  Every wait is bounded.
"""

import socket
import sys
import time

PATIENCE_S = 30.0


def connect(address):
    host, _, port = address.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=PATIENCE_S)


def slowloris(address):
    sock = connect(address)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: tutor")
    started = time.monotonic()
    print("sent half a request head; waiting", flush=True)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    print("after %.0f s the server answered %r and closed the connection"
          % (time.monotonic() - started, data.split(b"\r\n", 1)[0].decode()))


def pipeline(address, count="16"):
    sock = connect(address)
    requests = b"GET /json HTTP/1.1\r\nHost: tutorial\r\n\r\n" * int(count)
    sock.sendall(requests)
    print("sent %s requests (%d bytes) in one send()" % (count, len(requests)), flush=True)
    data = b""
    while data.count(b"HTTP/1.1 200 OK") < int(count):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    print("received %d responses" % data.count(b"HTTP/1.1 200 OK"))


def no_read(address, mebibytes="256", seconds="3"):
    """Ask for a big response, read nothing for a while, then read it all."""
    sock = connect(address)
    sock.sendall(b"GET /big?%s HTTP/1.1\r\nHost: tutorial\r\n\r\n" % mebibytes.encode())
    print("asked for %s MiB; reading nothing for %s s" % (mebibytes, seconds), flush=True)
    time.sleep(float(seconds))
    print("now reading", flush=True)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    received, length = len(body), int(mebibytes) << 20
    while received < length:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        received += len(chunk)
    print("%s; received %d MiB" % (head.split(b"\r\n", 1)[0].decode(), received >> 20))


if __name__ == "__main__":
    commands = {"slowloris": slowloris, "pipeline": pipeline, "no-read": no_read}
    if len(sys.argv) < 3 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
