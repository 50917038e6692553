"""Step 1: a blocking HTTP server.

One socket listens; accept() waits for a client; recv() waits for its bytes;
sendall() waits until the kernel has taken the answer.  The server does one
thing at a time, so while it waits on one client, every other client waits
on it.  That is the lesson of this step (docs/tutorial/step1_blocking.md).

    python3 docs/tutorial/step1_blocking.py --port 8001
    curl -v http://127.0.0.1:8001/hello
"""

import argparse
import socket
import sys


def make_listener(host, port):
    """A TCP socket bound to (host, port) and listening; port 0 picks a free one."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Allow a restart while old connections of ours sit in TIME_WAIT.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)
    return listener


# region: read_head
def read_head(sock, buffer):
    """Receive until a blank line ends a request head.

    Returns (head, rest), or (None, b"") when the client closed first.
    """
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)          # blocks until bytes or EOF arrive
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest
# endregion: read_head


def parse_head(head):
    """The method, target, version and lower-cased fields of a request head."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return method, target, version, fields


def response(status, body, keep_alive=True):
    """The bytes of a whole response with a Content-Length."""
    head = "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % (status, len(body))
    if not keep_alive:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def app(method, target):
    """The application: what to answer to a request."""
    if target.startswith("/big?"):
        return b"x" * int(target[5:])
    return b"Hello from step 1: " + method.encode() + b" " + target.encode() + b"\n"


# region: serve_connection
def serve_connection(sock):
    """Answer requests on one connection until the client closes it."""
    buffer = b""
    while True:
        head, buffer = read_head(sock, buffer)
        if head is None:
            return
        method, target, version, fields = parse_head(head)
        # A body we do not use must still be read, or it would be taken
        # for the next request's head.
        length = int(fields.get("content-length", "0"))
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
        buffer = buffer[length:]
        # HTTP/1.1 keeps the connection open unless someone says "close".
        keep_alive = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        sock.sendall(response("200 OK", app(method, target), keep_alive))
        if not keep_alive:
            return
# endregion: serve_connection


# region: serve
def serve(listener):
    """Accept one client, serve it to the end, then the next one."""
    while True:
        sock, address = listener.accept()     # blocks until a client connects
        try:
            serve_connection(sock)            # nobody else is served meanwhile
        except (ConnectionError, ValueError):
            pass                              # a reset or a malformed head: drop it
        finally:
            sock.close()
# endregion: serve


# region: main
def main(serve, doc, port, options=(), argv=None):
    """Parse the command line, listen, print the address, serve until Ctrl+C.

    ``options`` are extra ``(flag, type, default)``; their values go to
    ``serve`` as keyword arguments.  Every step starts through here.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    for flag, type_, default in options:
        parser.add_argument(flag, type=type_, default=default)
    args = vars(parser.parse_args(argv))
    listener = make_listener(args.pop("host"), args.pop("port"))
    # Tests start us on port 0 and read the real port from this line.
    print("listening on http://%s:%d" % listener.getsockname(), flush=True)
    try:
        serve(listener, **args)
    except KeyboardInterrupt:
        pass
# endregion: main


if __name__ == "__main__":
    sys.exit(main(serve, __doc__, 8001))
